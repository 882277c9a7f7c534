"""The ``validate`` step: load a version from the registry, run the sanity gates, score it (and
the champion) on the same data, apply the policy, record the verdict on the version.

Scoring reads only the pyfunc output contract (``risk`` and the ``p_<lo>_<hi>`` ...
``p_gt_<t>`` columns, see :mod:`mlflow_plugin.flows._model`), so any model that honours it can
be validated, and a model that breaks it fails the ``loads`` gate instead of crashing the step.

The Brier scores are IPCW estimates (scikit-survival) at the horizon: the ``horizon`` parameter,
else the policy's, else the end of the candidate's own time grid; survival between grid times is
interpolated linearly. The censoring distribution is estimated on the evaluation rows. A champion
that cannot be scored on these rows (it needs columns they lack, say) is not compared against;
the run's ``mlflow_plugin.champion_note`` tag says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlflow_plugin._errors import ConfigError
from mlflow_plugin._settings import TAG_PREFIX
from mlflow_plugin._types import CHAMPION, VersionInfo
from mlflow_plugin.flows._data import SurvivalData, load_data, prepare
from mlflow_plugin.flows._gating import (
    VALIDATE_GATES,
    StepVerdict,
    log_metrics,
    log_report,
    recipe_of,
    record_verdict,
    resolve_version,
    step_policy,
)
from mlflow_plugin.flows._params import Columns, ValidateParams, load_policy
from mlflow_plugin.flows._tracking import CLOCK, VERSION_TAG, log_params_once, set_tags, step_run

if TYPE_CHECKING:
    from mlflow_plugin.gates import Policy, SanityResult, UndefinedMetric
    from mlflow_plugin.registry import Registry

__all__ = ["Scored", "run_validate", "score_predictions", "survival_at", "validate_in_run"]


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

    @property
    def sane(self) -> bool:
        return all(s.passed for s in self.sanity)


def run_validate(params: ValidateParams, *, tracking_uri: str | None = None) -> StepVerdict:
    """``mlflow run -e validate``: validate one version in a run of its own."""
    from mlflow_plugin.registry import Registry

    policy = load_policy(params.policy)  # a bad policy fails before anything is written
    registry = Registry(tracking_uri)
    version = resolve_version(registry, params.model_name, params.version)
    with step_run("validate", params.model_name, tags={VERSION_TAG: version.version}):
        columns = _columns(params, version)
        with CLOCK("data"):
            data = prepare(load_data(params.data), columns)
        return validate_in_run(
            registry,
            version,
            data,
            policy,
            horizon=params.horizon,
            data_name=params.data,
            policy_path=params.policy,
        )


def _columns(params: ValidateParams, version: VersionInfo) -> Columns:
    recipe = recipe_of(version)
    duration = params.duration_col or recipe.get("duration_col")
    event = params.event_col or recipe.get("event_col")
    if not duration or not event:
        raise ConfigError(
            f"{version.name} version {version.version} was not trained by mlflow_plugin; "
            "pass duration_col and event_col"
        )
    features = recipe.get("features") or None
    return Columns(duration, event, None, tuple(features) if features else None)


def validate_in_run(
    registry: Registry,
    version: VersionInfo,
    data: SurvivalData,
    policy: Policy,
    *,
    horizon: float | None = None,
    data_name: str = "",
    policy_path: str | None = None,
    in_sample: bool = False,
) -> StepVerdict:
    """Validate ``version`` on ``data`` in the active run and tag the version with the verdict."""
    import mlflow

    from mlflow_plugin.evaluation import evaluate_policy

    run_id = mlflow.active_run().info.run_id  # type: ignore[union-attr]
    name = version.name
    candidate = score_version(f"models:/{name}/{version.version}", data, policy, horizon)
    used_horizon = _horizon(candidate, policy, horizon)
    with CLOCK("registry"):
        champion_version = registry.get_model(name).aliases.get(CHAMPION)
    champion: Scored | None = None
    note = ""
    if champion_version and champion_version != version.version:
        # The same rows and the same horizon, so the two sets of metrics compare.
        champion = score_version(f"models:/{name}/{champion_version}", data, policy, used_horizon)
        if not champion.sane:
            note = (
                f"champion version {champion_version} could not be scored on this data: "
                + "; ".join(s.detail for s in champion.sanity if not s.passed)
            )
            champion = None
    with CLOCK("gates"):
        report = evaluate_policy(
            step_policy(policy, VALIDATE_GATES),
            candidate.metrics,
            None if champion is None else champion.metrics,
            sanity=candidate.sanity,
        )
    log_params_once(
        {
            "model_name": name,
            "version": version.version,
            "data": data_name,
            "policy": policy_path or "default",
        }
    )
    metrics = log_metrics(candidate.metrics)
    if champion is not None:
        log_metrics(champion.metrics, prefix="champion_")
    set_tags(
        {
            VERSION_TAG: version.version,
            TAG_PREFIX + "champion_version": champion_version or "",
            TAG_PREFIX + "horizon": f"{used_horizon:g}" if used_horizon else "",
            TAG_PREFIX + "champion_note": note or None,
            TAG_PREFIX + "in_sample": "true" if in_sample else None,
        }
    )
    title = f"Validation of {name} version {version.version}: " + (
        "passed" if report.passed else "failed"
    )
    log_report(report, title)
    if candidate.sane and used_horizon is not None:
        _log_plots(candidate, data, used_horizon, f"{name} v{version.version}")
    record_verdict(registry, version, "validate", report.passed, run_id)
    verdict = StepVerdict("validate", version.version, report, metrics, run_id)
    print(
        f"validate {name} version {version.version}: {'passed' if report.passed else 'failed'}"
        + "".join(f"\n  {r}" for r in verdict.reasons())
    )
    return verdict


def _horizon(scored: Scored, policy: Policy, horizon: float | None) -> float | None:
    if horizon is not None:
        return horizon
    if policy.horizon is not None:
        return policy.horizon
    return None if scored.grid is None else float(scored.grid[-1])


def score_version(uri: str, data: SurvivalData, policy: Policy, horizon: float | None) -> Scored:
    """Load ``uri`` with ``mlflow.pyfunc``, predict on ``data`` and score the predictions."""
    import mlflow.pyfunc

    from mlflow_plugin.gates import SanityResult

    with CLOCK("model loading"):
        try:
            model = mlflow.pyfunc.load_model(uri)
        except Exception as exc:  # noqa: BLE001 - any failure to load is the gate's verdict
            return Scored([SanityResult("loads", False, 1, f"{uri} does not load: {_line(exc)}")])
    with CLOCK("gates"):
        try:
            predictions = model.predict(_model_input(model, data))
        except Exception as exc:  # noqa: BLE001
            return Scored([SanityResult("loads", False, 1, f"{uri} cannot predict: {_line(exc)}")])
        return score_predictions(predictions, data, policy, horizon)


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
    predictions: Any, data: SurvivalData, policy: Policy, horizon: float | None
) -> Scored:
    """Sanity gates and metrics for a model's predictions on ``data``."""
    from mlflow_plugin.flows._model import bucket_edges
    from mlflow_plugin.gates import SanityResult, check_finite, check_probability_rows

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
    scored = Scored(sanity, {}, survival, grid)
    h = _horizon(scored, policy, horizon)
    assert h is not None
    scored.metrics = _metrics(values[:, 0], survival, grid, data, h)
    return scored


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
    risk: np.ndarray, survival: np.ndarray, grid: np.ndarray, data: SurvivalData, horizon: float
) -> dict[str, float | UndefinedMetric]:
    from mlflow_plugin import gates

    d, e = data.durations, data.events
    out: dict[str, float | UndefinedMetric] = {}

    def attempt(name: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            out[name] = float(fn(*args, **kwargs))
        except gates.UndefinedMetric as exc:
            out[name] = exc
        except ValueError as exc:  # e.g. NaN predictions: no value, and the report says why
            out[name] = gates.UndefinedMetric(name, str(exc))

    attempt("c_index", gates.c_index_score, d, e, risk)
    try:
        s_h = np.clip(survival_at(survival, grid, horizon), 0.0, 1.0)
        attempt(
            "brier",
            gates.survival_brier_loss,
            d,
            e,
            s_h,
            horizon,
            train_durations=d,
            train_events=e,
        )
    except ValueError as exc:
        out["brier"] = gates.UndefinedMetric("brier", str(exc))
    inside = (grid >= d.min()) & (grid < d.max())
    if inside.sum() >= 2:
        attempt(
            "integrated_brier",
            gates.integrated_brier_loss,
            d,
            e,
            np.clip(survival[:, inside], 0.0, 1.0),
            grid[inside],
            train_durations=d,
            train_events=e,
        )
    else:
        out["integrated_brier"] = gates.UndefinedMetric(
            "integrated_brier", "fewer than two grid times lie within the follow-up of the data"
        )
    return out


def _log_plots(scored: Scored, data: SurvivalData, horizon: float, label: str) -> None:
    from mlflow_plugin.flows import _reports

    assert scored.survival is not None and scored.grid is not None
    with CLOCK("reports"):
        try:
            s_h = np.clip(survival_at(scored.survival, scored.grid, horizon), 0.0, 1.0)
        except ValueError:
            s_h = None
        if s_h is not None:
            fig = _reports.calibration_figure(
                1.0 - s_h,
                data.durations,
                data.events,
                horizon,
                f"Calibration at {horizon:g}: {label}",
            )
            _reports.log_figure(fig, "calibration.png")
        fig = _reports.survival_figure(
            scored.survival,
            scored.grid,
            data.durations,
            data.events,
            f"Predicted vs Kaplan-Meier survival: {label}",
        )
        _reports.log_figure(fig, "survival_curves.png")
