"""Reports people look at: calibration and survival-curve plots, backtest table and plot.

Figures are plain :class:`matplotlib.figure.Figure` objects rendered by the Agg canvas (no
pyplot, no display, no global state), logged with ``mlflow.log_figure``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "backtest_figure",
    "backtest_text",
    "calibration_figure",
    "km_event_probability",
    "log_figure",
    "survival_figure",
]


def _figure(width: float = 6.0, height: float = 4.5) -> tuple[Figure, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # render with Agg explicitly, whatever pyplot's backend is
    return fig, fig.add_subplot()


def log_figure(fig: Figure, name: str) -> None:
    from mlflow_plugin.training._tracking import log_artifact_files

    log_artifact_files({name: fig})


def km_event_probability(durations: np.ndarray, events: np.ndarray, horizon: float) -> float:
    """Kaplan-Meier estimate of P(event by ``horizon``)."""
    from lifelines import KaplanMeierFitter

    kmf = KaplanMeierFitter().fit(durations, events)
    return float(1.0 - kmf.survival_function_at_times(horizon).iloc[0])


def calibration_figure(
    p_event: np.ndarray, durations: np.ndarray, events: np.ndarray, horizon: float, title: str
) -> Figure:
    """Predicted vs observed (Kaplan-Meier) probability of the event by ``horizon``, per
    quantile group of the prediction; a calibrated model lies on the diagonal."""
    n = len(p_event)
    groups = max(2, min(10, n // 10))  # deciles from 100 rows on
    order = np.argsort(p_event, kind="stable")
    predicted, observed, sizes = [], [], []
    for idx in np.array_split(order, groups):
        if len(idx) == 0:
            continue
        predicted.append(float(np.mean(p_event[idx])))
        observed.append(km_event_probability(durations[idx], events[idx], horizon))
        sizes.append(len(idx))
    fig, ax = _figure()
    top = max(1e-6, max(predicted + observed)) * 1.1
    ax.plot([0, top], [0, top], color="0.6", linestyle="--", label="perfect calibration")
    ax.plot(
        predicted, observed, marker="o", label=f"{len(sizes)} groups of ~{n // len(sizes)} rows"
    )
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel(f"predicted P(event by {horizon:g})")
    ax.set_ylabel(f"observed P(event by {horizon:g}) (Kaplan-Meier)")
    ax.set_title(title)
    ax.legend(loc="upper left")
    return fig


def survival_figure(
    survival: np.ndarray, grid: np.ndarray, durations: np.ndarray, events: np.ndarray, title: str
) -> Figure:
    """Mean predicted survival on the model's grid against the Kaplan-Meier curve of the data."""
    from lifelines import KaplanMeierFitter

    kmf = KaplanMeierFitter().fit(durations, events)
    fig, ax = _figure()
    sf = kmf.survival_function_
    ci = kmf.confidence_interval_survival_function_
    ax.step(sf.index, sf.iloc[:, 0], where="post", color="C0", label="Kaplan-Meier (data)")
    ax.fill_between(ci.index, ci.iloc[:, 0], ci.iloc[:, 1], step="post", color="C0", alpha=0.15)
    times = np.concatenate([[0.0], grid])
    mean = np.concatenate([[1.0], np.nanmean(survival, axis=0)])
    ax.plot(times, mean, marker="o", color="C1", label="mean predicted survival")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("time")
    ax.set_ylabel("P(no event yet)")
    ax.set_title(title)
    ax.legend(loc="lower left")
    return fig


def backtest_figure(
    folds: Sequence[dict[str, Any]],
    metrics: Sequence[str],
    title: str,
    *,
    thresholds: dict[str, float] | None = None,
    pooled: dict[str, Any] | None = None,
) -> Figure:
    """One line per metric across the folds, the pooled value at "all" (a larger marker) and
    each gated metric's threshold as a dashed line of the same colour."""
    fig, ax = _figure(7.0, 4.5)
    xs = [f["fold"] for f in folds]
    x_all = (max(xs) if xs else 0) + 1
    for k, name in enumerate(metrics):
        color = f"C{k}"
        ys = [f["metrics"].get(name, np.nan) for f in folds]
        ax.plot(xs, ys, marker="o", color=color, label=name)
        value = (pooled or {}).get(name)
        if isinstance(value, float) and np.isfinite(value):
            ax.plot([x_all], [value], marker="D", markersize=9, color=color, linestyle="none")
        if thresholds and name in thresholds:
            ax.axhline(thresholds[name], color=color, linestyle="--", linewidth=1, alpha=0.7)
    ax.set_xticks([*xs, x_all], [*map(str, xs), "pooled"])
    ax.set_xlabel("fold (dashed: gate thresholds)")
    ax.set_ylabel("value")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="best", fontsize="small")
    return fig


def backtest_text(
    *,
    model: str,
    version: str,
    method: str,
    horizon: float,
    folds: Sequence[dict[str, Any]],
    overall: dict[str, Any],
    metrics: Sequence[str],
    verdict: str,
    horizon_choice: str = "",
    notes: Sequence[str] = (),
) -> str:
    """The plain-text report: method, horizon, one row per fold (rows used and censored before
    the horizon, Kaplan-Meier event share, decision threshold, metrics), the pooled values,
    the trivial predictor's values, why any metric is undefined, and the verdict."""
    lines = [
        f"Backtest of {model} version {version}",
        f"method:    {method}",
        f"horizon:   event by {horizon:g}" + (f" ({horizon_choice})" if horizon_choice else ""),
        "weights:   inverse probability of censoring (Kaplan-Meier of each fold's training rows);",
        "           rows censored before the horizon have no label and count for nothing",
        "threshold: each fold model predicts 'event' when P(event by horizon) >= its threshold,",
        "           the F1-best threshold on its own training rows (censoring-weighted)",
        *[f"note:      {n}" for n in notes],
        "",
    ]
    header = ["fold", "train", "test", "used", "cens", "km", "thr", "window", *metrics]
    rows = []
    for fold in folds:
        m = fold["metrics"]
        cells = [
            str(fold["fold"]),
            str(fold["n_train"]),
            str(fold["n_test"]),
            _int(m.get("rows_used")),
            _int(m.get("rows_censored")),
            _cell(m.get("km_event_share")),
            _cell(fold.get("threshold")),
            fold["window"],
        ]
        cells += [_cell(m.get(name)) for name in metrics]
        rows.append(cells if not fold.get("error") else [*cells[:8], f"failed: {fold['error']}"])
    rows.append(
        [
            "all",
            "",
            str(sum(f["n_test"] for f in folds)),
            _int(overall.get("rows_used")),
            _int(overall.get("rows_censored")),
            _cell(overall.get("km_event_share")),
            "",
            "pooled",
            *[_cell(overall.get(name)) for name in metrics],
        ]
    )
    rows.append(
        ["trivial", "", "", "", "", "", "", "baseline"]
        + [_cell(overall.get(f"{name}_baseline")) for name in metrics]
    )
    widths = [max(len(r[i]) for r in [header, *rows] if i < len(r)) for i in range(len(header))]
    for row in [header, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
    lines += [
        "",
        "trivial baseline: f1/precision/recall of predicting every row positive, brier of "
        "predicting the Kaplan-Meier event share for every row",
    ]
    for fold in folds:
        for name, why in (fold.get("undefined") or {}).items():
            if name in metrics:
                lines.append(f"fold {fold['fold']}: {name} undefined ({why})")
    for name in metrics:
        value = overall.get(name)
        if value is not None and not isinstance(value, int | float):
            lines.append(f"pooled: {name} undefined ({getattr(value, 'reason', value)})")
    lines += ["", verdict, ""]
    return "\n".join(lines)


def _int(value: Any) -> str:
    return "-" if not isinstance(value, int | float) else str(int(value))


def _cell(value: Any) -> str:
    if value is None or not isinstance(value, int | float) or not np.isfinite(value):
        return "-"
    return f"{value:.4f}"
