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
    import mlflow

    mlflow.log_figure(fig, name)


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
    groups = max(2, min(10, n // 25))
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


def backtest_figure(folds: Sequence[dict[str, Any]], metrics: Sequence[str], title: str) -> Figure:
    """One line per metric across the folds."""
    fig, ax = _figure()
    xs = [f["fold"] for f in folds]
    for name in metrics:
        ys = [f["metrics"].get(name, np.nan) for f in folds]
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xticks(xs)
    ax.set_xlabel("fold")
    ax.set_ylabel("value")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="best")
    return fig


def backtest_text(
    *,
    model: str,
    version: str,
    method: str,
    horizon: float,
    folds: Sequence[dict[str, Any]],
    overall: dict[str, float],
    metrics: Sequence[str],
    verdict: str,
) -> str:
    """The plain-text report: method, one row per fold, the pooled values and the verdict."""
    lines = [
        f"Backtest of {model} version {version}",
        f"method:  {method}",
        f"horizon: event within {horizon:g} (rows censored earlier have no label and are skipped)",
        "",
    ]
    header = ["fold", "train", "test", "window", *metrics]
    rows = []
    for fold in folds:
        cells = [str(fold["fold"]), str(fold["n_train"]), str(fold["n_test"]), fold["window"]]
        cells += [_cell(fold["metrics"].get(m)) for m in metrics]
        rows.append(cells if not fold.get("error") else [*cells[:4], f"failed: {fold['error']}"])
    rows.append(
        [
            "all",
            "",
            str(sum(f["n_test"] for f in folds)),
            "pooled",
            *[_cell(overall.get(m)) for m in metrics],
        ]
    )
    widths = [max(len(r[i]) for r in [header, *rows] if i < len(r)) for i in range(len(header))]
    for row in [header, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
    lines += ["", verdict, ""]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.4f}"
