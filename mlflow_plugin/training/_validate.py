"""The ``validate`` step: load a version from the registry, run the sanity gates, score it (and
the champion) on the same data, apply the policy, record the verdict on the version.

Scoring reads only the pyfunc output contract (``risk`` and the ``p_<lo>_<hi>`` ...
``p_gt_<t>`` columns, see :mod:`mlflow_plugin.training._model`), so any model that honours it can
be validated, and a model that breaks it fails the ``loads`` gate instead of crashing the step.

The Brier scores are IPCW estimates (scikit-survival) at the horizon: the ``horizon`` parameter,
else the policy's (either must lie inside the evaluation rows' follow-up: bad input otherwise),
else the candidate's own horizon lowered into that follow-up; survival between grid times is
interpolated linearly. The censoring distribution is estimated on the rows the candidate was
fitted on (its ``training_rows.npz`` artifact; the evaluation rows, with a note, for a version
without one).

The champion is scored only on the evaluation rows it was not trained on (its training-row
fingerprint). Candidate minus champion on those rows comes with a paired-bootstrap interval
(``c_index_vs_champion``, ``..._ci_low``, ``..._ci_high``, the same for ``brier``); the policy's
``champion_test`` decides with it. Too few unseen rows make the comparison ``undefined``. A
champion that cannot be scored on these rows (it needs columns they lack, say) is not compared
against; the run's ``mlflow_plugin.champion_note`` tag says why.

The parts: :mod:`._scoring` (one model's sanity gates and metrics), :mod:`._training_rows` (the
training-row record), :mod:`._comparison` (candidate against champion).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from mlflow_plugin.errors import ConfigError, DataError
from mlflow_plugin.settings import TAG_PREFIX
from mlflow_plugin.training._comparison import _compare, _comparison_markdown
from mlflow_plugin.training._data import SurvivalData
from mlflow_plugin.training._gating import (
    VALIDATE_GATES,
    StepVerdict,
    log_metrics,
    log_report,
    recipe_of,
    record_verdict,
    step_inputs,
    step_policy,
)
from mlflow_plugin.training._params import Columns, ValidateParams
from mlflow_plugin.training._scoring import Scored, score_version, survival_at
from mlflow_plugin.training._tracking import CLOCK, VERSION_TAG, log_params_once, set_tags, step_run
from mlflow_plugin.training._training_rows import _censoring, _unseen
from mlflow_plugin.types import CHAMPION, VersionInfo

if TYPE_CHECKING:
    from mlflow_plugin.policy import Policy
    from mlflow_plugin.registry._adapter import Registry

__all__ = ["check_explicit_horizon", "run_validate", "validate_in_run"]


def run_validate(params: ValidateParams, *, tracking_uri: str | None = None) -> StepVerdict:
    """``mlflow run -e validate``: validate one version in a run of its own."""
    # Bad input (policy, version, columns, data, horizon) fails before the run starts.
    policy, registry, version, data = step_inputs(
        params, tracking_uri, functools.partial(_columns, params)
    )
    check_explicit_horizon(params.horizon, policy, data)
    with step_run("validate", params.model_name, tags={VERSION_TAG: version.version}):
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


def check_explicit_horizon(
    horizon: float | None, policy: Policy, data: SurvivalData
) -> float | None:
    """The explicit horizon (``horizon``, else the policy's), checked against the follow-up of
    the evaluation rows; None when neither gives one.

    Raises:
        DataError: it lies outside that follow-up (the message names the range).
    """
    from mlflow_plugin.metrics import check_horizon

    explicit = horizon if horizon is not None else policy.horizon
    if explicit is None:
        return None
    try:
        return check_horizon(explicit, [data.durations])
    except ValueError as exc:
        raise DataError(f"{exc} (the validation rows)") from None


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
    train_rows: SurvivalData | None = None,
) -> StepVerdict:
    """Validate ``version`` on ``data`` in the active run and tag the version with the verdict.

    ``train_rows`` are the rows the version was fitted on, when the caller has them (``main``);
    else they come from the version's ``training_rows.npz``.

    Raises:
        DataError: an explicit horizon (parameter or policy) outside the rows' follow-up.
    """
    import mlflow

    from mlflow_plugin.evaluation._evaluate import evaluate_policy

    run_id = mlflow.active_run().info.run_id  # type: ignore[union-attr]
    name = version.name
    explicit = check_explicit_horizon(horizon, policy, data)
    censoring = _censoring(version, data, train_rows)
    candidate = score_version(
        f"models:/{name}/{version.version}", data, policy, explicit, censoring, version
    )
    used_horizon = candidate.horizon
    with CLOCK("registry"):  # the champion's record in one call (its alias, not the model)
        champion_info = registry.version_by_alias(name, CHAMPION)
    champion_version = champion_info.version if champion_info is not None else None
    champion: Scored | None = None
    champion_metrics: dict[str, Any] | None = None
    comparisons: dict[str, Any] = {}
    notes = [censoring.note] if censoring.note else []
    n_unseen = 0
    if champion_version and champion_version != version.version:
        # The same rows and the same horizon, so the two sets of metrics compare.
        assert champion_info is not None
        champion = score_version(
            f"models:/{name}/{champion_version}",
            data,
            policy,
            used_horizon,
            censoring,
            champion_info,
        )
        if not champion.sane:
            notes.append(
                f"champion version {champion_version} could not be scored on this data: "
                + "; ".join(s.detail for s in champion.sanity if not s.passed)
            )
            champion = None
        elif candidate.sane:
            unseen, note = _unseen(champion_info, data)
            if note:
                notes.append(note)
            n_unseen = len(unseen)
            champion_metrics, comparisons = _compare(
                candidate, champion, data, unseen, censoring, policy
            )
    with CLOCK("gates"):
        report = evaluate_policy(
            step_policy(policy, VALIDATE_GATES),
            candidate.metrics,
            champion_metrics,
            sanity=candidate.sanity,
            comparisons=comparisons or None,
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
    if champion_metrics is not None:
        log_metrics(champion_metrics, prefix="champion_")
    compared = {
        k: v for c in comparisons.values() if hasattr(c, "metrics") for k, v in c.metrics().items()
    }
    if champion_metrics is not None:
        compared["champion_rows"] = float(n_unseen)
    metrics.update(log_metrics(compared))
    note = "; ".join(notes)
    set_tags(
        {
            VERSION_TAG: version.version,
            TAG_PREFIX + "champion_version": champion_version or "",
            TAG_PREFIX + "horizon": f"{used_horizon:g}" if used_horizon else "",
            TAG_PREFIX + "champion_note": note[:5000] or None,
            TAG_PREFIX + "champion_test": policy.champion_test.method,
            TAG_PREFIX + "in_sample": "true" if in_sample else None,
        }
    )
    title = f"Validation of {name} version {version.version}: " + (
        "passed" if report.passed else "failed"
    )
    log_report(report, title, extra=_comparison_markdown(comparisons, policy, notes))
    if candidate.sane and used_horizon is not None:
        _log_plots(candidate, data, used_horizon, f"{name} v{version.version}")
    record_verdict(registry, version, "validate", report.passed, run_id)
    verdict = StepVerdict("validate", version.version, report, metrics, run_id)
    print(
        f"validate {name} version {version.version}: {'passed' if report.passed else 'failed'}"
        + "".join(f"\n  {r}" for r in verdict.reasons())
        + "".join(
            f"\n  {c.describe()} ({c.metric})"
            for c in comparisons.values()
            if hasattr(c, "describe")
        )
    )
    return verdict


def _log_plots(scored: Scored, data: SurvivalData, horizon: float, label: str) -> None:
    from mlflow_plugin.training import _reports

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
