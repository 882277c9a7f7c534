"""Scoring one model on the evaluation rows for ``validate``: load it, predict, run the sanity
gates and compute the metrics.

Scoring reads only the pyfunc output contract (``risk`` and the ``p_<lo>_<hi>`` ...
``p_gt_<t>`` columns, see :mod:`mlflow_plugin.training._model`), so any model that honours it can
be validated, and a model that breaks it fails the ``loads`` gate instead of crashing the step.
The Brier scores are IPCW estimates (scikit-survival) at the horizon; survival between grid
times is interpolated linearly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlflow_plugin.training._data import SurvivalData
from mlflow_plugin.training._tracking import CLOCK
from mlflow_plugin.types import VersionInfo

if TYPE_CHECKING:
    from mlflow_plugin.metrics import SanityResult, UndefinedMetric
    from mlflow_plugin.policy import Policy


@dataclass
class Scored:
    """One model's predictions on the evaluation data, checked and scored.

    Attributes:
        sanity: the ``loads``, ``finite`` and ``probability_rows`` outcomes.
        metrics: ``c_index``, ``brier``, ``integrated_brier``: a number or why it is undefined.
        survival: predicted P(no event yet) at each grid time, shape ``(n, len(grid))``.
        grid: the model's bucket ends.
    """

    sanity: list[SanityResult] = field(default_factory=list)
    metrics: dict[str, float | UndefinedMetric] = field(default_factory=dict)
    survival: np.ndarray | None = None
    grid: np.ndarray | None = None
    risk: np.ndarray | None = None
    p_event: np.ndarray | None = None
    horizon: float | None = None

    @property
    def sane(self) -> bool:
        return all(s.passed for s in self.sanity)


@dataclass(frozen=True)
class _Censoring:
    """Durations and events of the rows the censoring distribution is estimated on."""

    durations: np.ndarray
    events: np.ndarray
    note: str = ""


def score_version(
    uri: str,
    data: SurvivalData,
    policy: Policy,
    horizon: float | None,
    censoring: _Censoring | None = None,
    info: VersionInfo | None = None,
) -> Scored:
    """Load ``uri`` with ``mlflow.pyfunc``, predict on ``data`` and score the predictions
    (``info``: the version's record, when ``uri`` names it and the caller has it)."""
    from mlflow_plugin.metrics import SanityResult
    from mlflow_plugin.training._model_cache import load_model

    with CLOCK("model loading"):
        try:  # from the local cache when it has the version (docs/ARCHITECTURE.md)
            model = load_model(uri, info)
        except Exception as exc:  # noqa: BLE001 - any failure to load is the gate's verdict
            return Scored([SanityResult("loads", False, 1, f"{uri} does not load: {_line(exc)}")])
    with CLOCK("gates"):
        try:
            predictions = model.predict(_model_input(model, data))
        except Exception as exc:  # noqa: BLE001
            return Scored([SanityResult("loads", False, 1, f"{uri} cannot predict: {_line(exc)}")])
        return score_predictions(predictions, data, policy, horizon, censoring)


def _model_input(model: Any, data: SurvivalData) -> pd.DataFrame:
    """The columns the model's signature asks for (every column when it names none, or when
    one is missing: MLflow's schema enforcement then says which)."""
    frame = data.inputs
    schema = model.metadata.get_input_schema()
    names = schema.input_names() if schema is not None and schema.has_input_names() else []
    if names and all(n in frame.columns for n in names):
        return frame[list(names)]
    return frame


def _line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:300] + "...") if len(text) > 300 else (text or type(exc).__name__)


def score_predictions(
    predictions: Any,
    data: SurvivalData,
    policy: Policy,
    horizon: float | None,
    censoring: _Censoring | None = None,
) -> Scored:
    """Sanity gates and metrics for a model's predictions on ``data`` (censoring weights from
    ``censoring``, the evaluation rows when None)."""
    from mlflow_plugin.metrics import SanityResult, check_finite, check_probability_rows
    from mlflow_plugin.training._model import bucket_edges

    if not isinstance(predictions, pd.DataFrame) or "risk" not in predictions.columns:
        kind = type(predictions).__name__
        return Scored(
            [SanityResult("loads", False, 1, f"predict returned {kind} without a 'risk' column")]
        )
    if len(predictions) != len(data):
        detail = f"predict returned {len(predictions)} rows for {len(data)} inputs"
        return Scored([SanityResult("loads", False, 1, detail)])
    try:
        names, grid = bucket_edges(list(predictions.columns))
        values = predictions[["risk", *names]].to_numpy(dtype=float)
    except (ValueError, TypeError) as exc:
        return Scored([SanityResult("loads", False, 1, f"predictions break the contract: {exc}")])
    probs = values[:, 1:]
    sanity = [
        SanityResult("loads", True, 0, f"loaded and predicted {len(values)} rows"),
        check_finite(values),
        check_probability_rows(probs, atol=policy.sanity.probability_atol),
    ]
    # S(t_j) = 1 - P(event by t_j); a lone p_gt_<t> column is S(t) itself.
    survival = 1.0 - np.cumsum(probs[:, :-1], axis=1) if probs.shape[1] > 1 else probs[:, :1]
    scored = Scored(sanity, {}, survival, grid, risk=values[:, 0])
    h = _horizon(scored, data, policy, horizon)
    scored.horizon = h
    cens = censoring or _Censoring(data.durations, data.events)
    scored.metrics, scored.p_event = _metrics(values[:, 0], survival, grid, data, h, cens)
    return scored


def _horizon(scored: Scored, data: SurvivalData, policy: Policy, horizon: float | None) -> float:
    """The explicit horizon, else the model's own lowered into the rows' follow-up."""
    from mlflow_plugin.metrics import auto_horizon

    if horizon is not None:
        return horizon
    if policy.horizon is not None:
        return policy.horizon
    assert scored.grid is not None
    own = float(scored.grid[-1])
    try:
        return min(own, auto_horizon(data.durations, [data.durations]))
    except ValueError:
        return own


def survival_at(survival: np.ndarray, grid: np.ndarray, horizon: float) -> np.ndarray:
    """P(no event by ``horizon``) per row, interpolated linearly between grid times (S(0) = 1).

    Raises:
        ValueError: ``horizon`` lies beyond the model's grid.
    """
    if horizon > grid[-1] * (1 + 1e-9):
        raise ValueError(
            f"horizon {horizon:g} lies beyond the model's time grid (ends at {grid[-1]:g})"
        )
    times = np.concatenate([[0.0], grid])
    curve = np.column_stack([np.ones(len(survival)), survival])
    j = int(np.clip(np.searchsorted(times, horizon, side="left"), 1, len(times) - 1))
    w = (horizon - times[j - 1]) / (times[j] - times[j - 1])
    return np.asarray(curve[:, j - 1] + w * (curve[:, j] - curve[:, j - 1]))


def _metrics(
    risk: np.ndarray,
    survival: np.ndarray,
    grid: np.ndarray,
    data: SurvivalData,
    horizon: float,
    censoring: _Censoring,
) -> tuple[dict[str, float | UndefinedMetric], np.ndarray | None]:
    """The metrics, and P(event by the horizon) per row (None when the horizon is off-grid)."""
    from mlflow_plugin import metrics

    d, e = data.durations, data.events
    out: dict[str, float | UndefinedMetric] = {}

    def attempt(name: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            out[name] = float(fn(*args, **kwargs))
        except metrics.UndefinedMetric as exc:
            out[name] = exc
        except ValueError as exc:  # e.g. NaN predictions: no value, and the report says why
            out[name] = metrics.UndefinedMetric(name, str(exc))

    attempt("c_index", metrics.c_index_score, d, e, risk)
    p_event = None
    try:
        p_event = 1.0 - np.clip(survival_at(survival, grid, horizon), 0.0, 1.0)
        at = metrics.at_horizon(
            d, e, horizon, train_durations=censoring.durations, train_events=censoring.events
        )
        out["brier"] = at.brier(p_event)
        out["brier_baseline"] = at.baselines()["brier"]
    except metrics.UndefinedMetric as exc:
        out["brier"] = metrics.UndefinedMetric("brier", exc.reason)
    except ValueError as exc:
        out["brier"] = metrics.UndefinedMetric("brier", str(exc))
    end = min(float(d.max()), float(censoring.durations.max()))
    inside = (grid >= d.min()) & (grid < end)
    if inside.sum() >= 2:
        attempt(
            "integrated_brier",
            metrics.integrated_brier_loss,
            np.minimum(d, end),
            e & (d <= end),
            np.clip(survival[:, inside], 0.0, 1.0),
            grid[inside],
            train_durations=censoring.durations,
            train_events=censoring.events,
        )
    else:
        out["integrated_brier"] = metrics.UndefinedMetric(
            "integrated_brier", "fewer than two grid times lie within the follow-up of the data"
        )
    return out, p_event
