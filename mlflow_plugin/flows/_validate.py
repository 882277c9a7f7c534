"""The ``validate`` step: load a version from the registry, run the sanity gates, score it (and
the champion) on the same data, apply the policy, record the verdict on the version.

Scoring reads only the pyfunc output contract (``risk`` and the ``p_<lo>_<hi>`` ...
``p_gt_<t>`` columns, see :mod:`mlflow_plugin.flows._model`), so any model that honours it can
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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlflow_plugin._errors import ConfigError, DataError
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

__all__ = [
    "MIN_UNSEEN_ROWS",
    "Scored",
    "check_explicit_horizon",
    "run_validate",
    "score_predictions",
    "survival_at",
    "validate_in_run",
]

#: Fewer evaluation rows the champion never saw than this: the comparison is undefined.
MIN_UNSEEN_ROWS = 20


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


def run_validate(params: ValidateParams, *, tracking_uri: str | None = None) -> StepVerdict:
    """``mlflow run -e validate``: validate one version in a run of its own."""
    from mlflow_plugin.registry import Registry

    # Bad input (policy, version, columns, data, horizon) fails before the run starts.
    policy = load_policy(params.policy)
    registry = Registry(tracking_uri)
    version = resolve_version(registry, params.model_name, params.version)
    columns = _columns(params, version)
    with CLOCK("data"):
        data = prepare(load_data(params.data), columns, missing=params.missing)
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


@dataclass(frozen=True)
class _Censoring:
    """Durations and events of the rows the censoring distribution is estimated on."""

    durations: np.ndarray
    events: np.ndarray
    note: str = ""


def _fingerprint(version: VersionInfo) -> dict[str, np.ndarray] | None:
    """The version's ``training_rows.npz`` (hashes, durations, events, columns), if it has one:
    from its files (the cached copy, no request), else from its training run (versions
    registered before the fingerprint moved into the model)."""
    import contextlib
    import os

    import mlflow

    from mlflow_plugin.flows._model_cache import cached_copy
    from mlflow_plugin.flows._train import (
        FINGERPRINT_ARTIFACT,
        FINGERPRINT_IN_MODEL,
        TRAINING_RUN_TAG,
    )
    from mlflow_plugin.registry import Registry

    with CLOCK("registry"):
        try:
            registry = Registry()
            local = cached_copy(registry, version.name, version.version, version)
            path: Any = local / FINGERPRINT_IN_MODEL if local is not None else None
            if path is None:  # the cache is off: the one file from the version's files
                with contextlib.suppress(Exception):
                    path = mlflow.artifacts.download_artifacts(
                        artifact_uri=registry.artifact_uri(version.name, version.version)
                        + "/"
                        + FINGERPRINT_IN_MODEL,
                        tracking_uri=registry.uri,
                    )
            if path is None or not os.path.isfile(path):
                run_id = version.tags.get(TRAINING_RUN_TAG) or version.run_id
                if not run_id:
                    return None
                path = mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=FINGERPRINT_ARTIFACT
                )
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        except Exception:  # noqa: BLE001 - no fingerprint (an older or foreign version)
            return None


def _censoring(
    version: VersionInfo, data: SurvivalData, train_rows: SurvivalData | None
) -> _Censoring:
    if train_rows is not None:
        return _Censoring(train_rows.durations, train_rows.events)
    fp = _fingerprint(version)
    if fp is not None and "durations" in fp:
        return _Censoring(fp["durations"].astype(float), fp["events"].astype(bool))
    return _Censoring(
        data.durations,
        data.events,
        f"version {version.version} has no training-row record: the censoring distribution "
        "is estimated on the evaluation rows",
    )


def _unseen(version: VersionInfo, data: SurvivalData) -> tuple[np.ndarray, str]:
    """Positions of the evaluation rows ``version`` was not trained on, and a note."""
    from mlflow_plugin.flows._data import row_hashes

    everything = np.arange(len(data))
    fp = _fingerprint(version)
    if fp is None or "hashes" not in fp:
        return everything, (
            f"champion version {version.version} has no training-row fingerprint: "
            "it is compared on every evaluation row"
        )
    columns = [str(c) for c in fp["columns"]]
    source = data.raw if data.raw is not None else data.frame
    try:
        hashes = row_hashes(source, columns)
    except KeyError:  # the rows lack a column it was trained on: none of them is its row
        return everything, ""
    seen = np.isin(hashes, fp["hashes"])
    return np.flatnonzero(~seen), (
        f"{int(seen.sum())} of {len(data)} evaluation rows were in champion version "
        f"{version.version}'s training data and are left out of the comparison"
        if seen.any()
        else ""
    )


def check_explicit_horizon(
    horizon: float | None, policy: Policy, data: SurvivalData
) -> float | None:
    """The explicit horizon (``horizon``, else the policy's), checked against the follow-up of
    the evaluation rows; None when neither gives one.

    Raises:
        DataError: it lies outside that follow-up (the message names the range).
    """
    from mlflow_plugin.gates import check_horizon

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

    from mlflow_plugin.evaluation import evaluate_policy

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


def _compare(
    candidate: Scored,
    champion: Scored,
    data: SurvivalData,
    unseen: np.ndarray,
    censoring: _Censoring,
    policy: Policy,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The champion's metrics on the unseen rows and candidate minus champion there."""
    from mlflow_plugin import gates

    keys = ("c_index", "brier")
    if len(unseen) < MIN_UNSEEN_ROWS:
        why = (
            f"only {len(unseen)} evaluation rows were not in the champion's training data "
            f"(at least {MIN_UNSEEN_ROWS} are needed)"
        )
        return {}, {k: gates.UndefinedMetric(f"{k}_vs_champion", why) for k in keys}
    assert candidate.risk is not None and champion.risk is not None
    d, e = data.durations[unseen], data.events[unseen]
    champion_metrics: dict[str, Any] = {}
    try:
        champion_metrics["c_index"] = gates.c_index_score(d, e, champion.risk[unseen])
    except ValueError as exc:
        champion_metrics["c_index"] = gates.UndefinedMetric("c_index", str(exc))
    terms: tuple[np.ndarray, np.ndarray] | None = None
    brier_why = ""
    h = candidate.horizon
    if h is not None and candidate.p_event is not None and champion.p_event is not None:
        try:
            at = gates.at_horizon(
                d, e, h, train_durations=censoring.durations, train_events=censoring.events
            )
            terms = (
                at.brier_terms(candidate.p_event[unseen]),
                at.brier_terms(champion.p_event[unseen]),
            )
            champion_metrics["brier"] = float(np.mean(terms[1]))
        except ValueError as exc:
            brier_why = getattr(exc, "reason", str(exc))
    test = policy.champion_test
    with CLOCK("gates"):
        comparisons: dict[str, Any] = dict(
            gates.paired_bootstrap(
                d,
                e,
                candidate.risk[unseen],
                champion.risk[unseen],
                candidate_brier_terms=None if terms is None else terms[0],
                champion_brier_terms=None if terms is None else terms[1],
                confidence=test.confidence,
                resamples=test.resamples,
                seed=test.seed,
            )
        )
    if terms is None:
        comparisons["brier"] = gates.UndefinedMetric(
            "brier_vs_champion", brier_why or "the Brier score has no value on these rows"
        )
    return champion_metrics, comparisons


def _comparison_markdown(comparisons: dict[str, Any], policy: Policy, notes: list[str]) -> str:
    """The candidate-minus-champion table under the gate table."""
    if not comparisons and not notes:
        return ""
    test = policy.champion_test
    lines = []
    if comparisons:
        rule = test.method.replace("_", "-") + (
            f", margin {test.margin:g}" if test.method != "point" else ""
        )
        lines += [
            f"**Candidate − champion** (paired bootstrap, {test.resamples} resamples, "
            f"seed {test.seed}; champion test: {rule})",
            "",
            "| metric | Δ | CI low | CI high | rows |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, c in comparisons.items():
            if hasattr(c, "delta"):
                lines.append(
                    f"| {name} | {c.delta:+.4f} | {c.ci_low:+.4f} | {c.ci_high:+.4f} | {c.n_rows} |"
                )
            else:
                lines.append(f"| {name} | undefined: {c.reason} | | | |")
    lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines)


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
    from mlflow_plugin.flows._model_cache import load_model
    from mlflow_plugin.gates import SanityResult

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
    scored = Scored(sanity, {}, survival, grid, risk=values[:, 0])
    h = _horizon(scored, data, policy, horizon)
    scored.horizon = h
    cens = censoring or _Censoring(data.durations, data.events)
    scored.metrics, scored.p_event = _metrics(values[:, 0], survival, grid, data, h, cens)
    return scored


def _horizon(scored: Scored, data: SurvivalData, policy: Policy, horizon: float | None) -> float:
    """The explicit horizon, else the model's own lowered into the rows' follow-up."""
    from mlflow_plugin.gates import auto_horizon

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
    p_event = None
    try:
        p_event = 1.0 - np.clip(survival_at(survival, grid, horizon), 0.0, 1.0)
        at = gates.at_horizon(
            d, e, horizon, train_durations=censoring.durations, train_events=censoring.events
        )
        out["brier"] = at.brier(p_event)
        out["brier_baseline"] = at.baselines()["brier"]
    except gates.UndefinedMetric as exc:
        out["brier"] = gates.UndefinedMetric("brier", exc.reason)
    except ValueError as exc:
        out["brier"] = gates.UndefinedMetric("brier", str(exc))
    end = min(float(d.max()), float(censoring.durations.max()))
    inside = (grid >= d.min()) & (grid < end)
    if inside.sum() >= 2:
        attempt(
            "integrated_brier",
            gates.integrated_brier_loss,
            np.minimum(d, end),
            e & (d <= end),
            np.clip(survival[:, inside], 0.0, 1.0),
            grid[inside],
            train_durations=censoring.durations,
            train_events=censoring.events,
        )
    else:
        out["integrated_brier"] = gates.UndefinedMetric(
            "integrated_brier", "fewer than two grid times lie within the follow-up of the data"
        )
    return out, p_event


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
