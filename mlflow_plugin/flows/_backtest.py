"""The ``backtest`` step: refit a version's training recipe fold by fold and score each fold on
data it did not see.

With a time column the folds are rolling-origin: the rows are cut at ``folds`` points in time
(rows with the same time always fall on one side); fold ``i`` trains on every row before cut
``i``, with their follow-up censored at the cut (only what was known then), and scores the
rows up to the next cut. Without one, seeded k-fold cross-validation (the report says so).

The task scored is "event by ``horizon``", the horizon inside every fold's follow-up. Each
fold's test rows are weighted by the inverse probability of censoring, the censoring
distribution estimated on the fold's training rows (:func:`mlflow_plugin.gates.at_horizon`):
F1, precision and recall from the weighted confusion counts at the fold model's own decision
threshold (the F1-best threshold on its training rows), the IPCW Brier score of its
probability, the C-index of its risk score, and what a trivial predictor gets. A metric that
cannot be estimated on a fold is ``undefined`` there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mlflow_plugin._errors import ConfigError, DataError
from mlflow_plugin._settings import TAG_PREFIX
from mlflow_plugin._types import VersionInfo
from mlflow_plugin.flows._data import SurvivalData, load_data, prepare
from mlflow_plugin.flows._gating import (
    BACKTEST_GATES,
    StepVerdict,
    log_metrics,
    log_report,
    recipe_of,
    record_verdict,
    resolve_version,
    step_policy,
)
from mlflow_plugin.flows._params import BacktestParams, Columns, load_policy
from mlflow_plugin.flows._tracking import (
    CLOCK,
    VERSION_TAG,
    log_artifact_files,
    log_params_once,
    set_tags,
    step_run,
)

if TYPE_CHECKING:
    from mlflow_plugin.gates import Policy
    from mlflow_plugin.registry import Registry

__all__ = [
    "FOLD_METRICS",
    "FoldData",
    "FoldPlan",
    "Split",
    "backtest_in_run",
    "fold_data",
    "fold_horizon",
    "horizon_sets",
    "kfold",
    "plan_folds",
    "rolling_origin",
    "run_backtest",
    "splits_for",
]

FOLD_METRICS = ("f1", "precision", "recall", "brier", "c_index")
Split = tuple[np.ndarray, np.ndarray, str]


def run_backtest(params: BacktestParams, *, tracking_uri: str | None = None) -> StepVerdict:
    """``mlflow run -e backtest``: backtest one version's recipe in a run of its own."""
    from mlflow_plugin.registry import Registry

    # Bad input (policy, version, columns, data, folds, horizon) fails before the run starts.
    policy = load_policy(params.policy)
    registry = Registry(tracking_uri)
    version = resolve_version(registry, params.model_name, params.version)
    recipe = _recipe(version)
    time_col = params.time_col or recipe.get("time_col") or None
    features = recipe.get("features") or None
    columns = Columns(
        recipe["duration_col"],
        recipe["event_col"],
        time_col,
        tuple(features) if features else None,
    )
    with CLOCK("data"):
        data = prepare(load_data(params.data), columns, missing=params.missing)
        plan = plan_folds(
            version, data, policy, params.horizon, params.folds, params.seed, params.time_scale
        )
    with step_run("backtest", params.model_name, tags={VERSION_TAG: version.version}):
        return backtest_in_run(
            registry,
            version,
            data,
            policy,
            horizon=params.horizon,
            folds=params.folds,
            seed=params.seed,
            data_name=params.data,
            policy_path=params.policy,
            time_scale=params.time_scale,
            plan=plan,
        )


@dataclass(frozen=True)
class FoldPlan:
    """The folds of a backtest and their horizon, fixed before its run starts.

    Attributes:
        splits: ``(train, test, window)`` positions per fold.
        method: how the folds were made, for the report.
        parts: each fold's rows.
        horizon: the horizon of every fold.
        horizon_choice: how it was chosen.
    """

    splits: list[Split]
    method: str
    parts: list[FoldData]
    horizon: float
    horizon_choice: str


def plan_folds(
    version: VersionInfo,
    data: SurvivalData,
    policy: Policy,
    horizon: float | None,
    folds: int,
    seed: int,
    time_scale: float | None,
) -> FoldPlan:
    """The folds of ``version``'s backtest on ``data`` and their horizon.

    Raises:
        ConfigError: the version has no training recipe.
        DataError: too few rows or distinct times for the folds, or an explicit horizon
            (``horizon``, else the policy's) outside the follow-up of a fold.
    """
    recipe = _recipe(version)
    scale = float(time_scale or recipe.get("time_scale") or 1.0)
    splits, method = splits_for(data, folds, seed)
    parts = fold_data(data, splits, scale)
    recipe_h = recipe.get("horizon")
    used_h, how = fold_horizon(
        parts,
        data,
        horizon if horizon is not None else policy.horizon,
        float(recipe_h) if recipe_h else None,
    )
    return FoldPlan(splits, method, parts, used_h, how)


def _recipe(version: VersionInfo) -> dict[str, Any]:
    recipe = recipe_of(version)
    if not recipe.get("model_kind") or not recipe.get("duration_col"):
        raise ConfigError(
            f"{version.name} version {version.version} has no training recipe "
            f"(tag {TAG_PREFIX}recipe): only versions trained by mlflow_plugin can be backtested"
        )
    return recipe


def _fmt(value: Any) -> str:
    if isinstance(value, np.datetime64):
        return str(np.datetime_as_string(value, unit="s"))
    return f"{float(value):g}"


def rolling_origin(times: np.ndarray, folds: int) -> list[Split]:
    """``folds`` rolling-origin splits of rows ordered by ``times``: ``(train, test, window)``.

    Every training row is strictly earlier than every row of its test window.

    Raises:
        DataError: there are too few distinct times for two folds.
    """
    n = len(times)
    ordered = np.sort(times, kind="stable")
    cuts: list[Any] = []
    for i in range(1, folds + 1):
        cut = ordered[min(n - 1, int(n * i / (folds + 1)))]
        if not cuts or cut > cuts[-1]:
            cuts.append(cut)
    splits: list[Split] = []
    for j, cut in enumerate(cuts):
        upper = cuts[j + 1] if j + 1 < len(cuts) else None
        train = np.flatnonzero(times < cut)
        test_mask = times >= cut if upper is None else (times >= cut) & (times < upper)
        test = np.flatnonzero(test_mask)
        if len(train) and len(test):
            window = f"[{_fmt(cut)}, {_fmt(upper) if upper is not None else 'end'})"
            splits.append((train, test, window))
    if len(splits) < 2:
        raise DataError(
            f"the time column has too few distinct values for a rolling-origin backtest "
            f"({len(np.unique(times))} distinct, {folds} folds)"
        )
    return splits


def kfold(n: int, folds: int, seed: int) -> list[Split]:
    """Seeded, shuffled k-fold splits."""
    from sklearn.model_selection import KFold

    if n < 2 * folds:
        raise DataError(f"{n} rows are too few for {folds} folds")
    return [
        (train, test, f"random 1/{folds}")
        for train, test in KFold(folds, shuffle=True, random_state=seed).split(np.arange(n))
    ]


def splits_for(data: SurvivalData, folds: int, seed: int) -> tuple[list[Split], str]:
    """The backtest's folds for ``data`` and a sentence saying how they were made.

    Raises:
        DataError: too few rows or distinct times for ``folds``.
    """
    time_col = data.columns.time
    if time_col is not None:
        splits = rolling_origin(data.frame[time_col].to_numpy(), folds)
        return splits, (
            f"rolling origin over {time_col!r}, {len(splits)} folds (each trains on the past)"
        )
    splits = kfold(len(data), folds, seed)
    return splits, (
        f"no time column: seeded k-fold cross-validation ({folds} folds, seed {seed}); "
        "folds are not ordered in time"
    )


@dataclass(frozen=True)
class FoldData:
    """One fold's rows.

    Attributes:
        fit: the training rows as known at the cut (rolling origin: follow-up censored at the
            cut); the fold model is fitted on these.
        train: the same rows as followed up today: the censoring distribution of the IPCW
            weights is estimated on them (the evaluation is made today).
        test: the rows scored.
        window: which rows the fold scores, for the report.
    """

    fit: SurvivalData
    train: SurvivalData
    test: SurvivalData
    window: str


def fold_data(data: SurvivalData, splits: list[Split], time_scale: float = 1.0) -> list[FoldData]:
    """Each split's rows; with a time column, training follow-up censored at the cut."""
    out = []
    time_col = data.columns.time
    for train_idx, test_idx, window in splits:
        train, test = data.subset(train_idx), data.subset(test_idx)
        fit = train
        if time_col is not None:
            fit = train.censored_at(data.frame[time_col].to_numpy()[test_idx].min(), time_scale)
        out.append(FoldData(fit, train, test, window))
    return out


def horizon_sets(folds: list[FoldData]) -> list[np.ndarray]:
    """The durations a horizon must lie inside: every fold's test rows and its training rows
    as known at the cut (beyond those a fold model would extrapolate)."""
    return [f.test.durations for f in folds] + [f.fit.durations for f in folds]


def fold_horizon(
    folds: list[FoldData],
    data: SurvivalData,
    horizon: float | None,
    recipe_horizon: float | None,
) -> tuple[float, str]:
    """The horizon of every fold and how it was chosen.

    An explicit ``horizon`` must lie inside the follow-up of every fold (test rows, and
    training rows as known at the cut); the automatic one is placed there
    (docs/ARCHITECTURE.md, "Statistics of the gates").

    Raises:
        DataError: the explicit horizon is outside that range (the message names it).
    """
    from mlflow_plugin.gates import auto_horizon, check_horizon

    evaluated = horizon_sets(folds)
    if horizon is not None:
        try:
            return check_horizon(horizon, evaluated), "given"
        except ValueError as exc:
            raise DataError(f"{exc} (every backtest fold)") from None
    try:
        auto = auto_horizon(data.durations, evaluated)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    if recipe_horizon is not None and recipe_horizon < auto:
        return float(recipe_horizon), "the version's own horizon (inside every fold's follow-up)"
    return auto, "automatic: inside the follow-up of every fold"


def backtest_in_run(
    registry: Registry,
    version: VersionInfo,
    data: SurvivalData,
    policy: Policy,
    *,
    horizon: float | None = None,
    folds: int = 4,
    seed: int = 0,
    data_name: str = "",
    policy_path: str | None = None,
    time_scale: float | None = None,
    plan: FoldPlan | None = None,
) -> StepVerdict:
    """Backtest ``version``'s recipe on ``data`` in the active run; tag the version.

    ``horizon`` is the explicit one (parameter or policy); None chooses it inside every fold's
    follow-up, no later than the version's own. ``plan``: the folds, when the caller already
    made them (:func:`plan_folds`, to refuse bad input before the run starts).
    """
    import mlflow

    from mlflow_plugin.evaluation import evaluate_policy
    from mlflow_plugin.flows import _reports

    run_id = mlflow.active_run().info.run_id  # type: ignore[union-attr]
    recipe = _recipe(version)
    time_col = data.columns.time
    if plan is None:
        plan = plan_folds(version, data, policy, horizon, folds, seed, time_scale)
    splits, method, parts = plan.splits, plan.method, plan.parts
    used_h, how = plan.horizon, plan.horizon_choice
    shortfall = ""
    if len(splits) < folds:
        shortfall = (
            f"only {len(splits)} of the {folds} requested folds could be made "
            f"(too few distinct values of {time_col!r})"
        )
        print(f"backtest: {shortfall}")
    fold_rows, pooled = [], _Pooled(used_h)
    for i, part in enumerate(parts, start=1):
        row = _fold(i, recipe, part, used_h, pooled)
        row["window"] = part.window
        fold_rows.append(row)
        log_metrics(row["metrics"], step=i)
    overall = pooled.metrics()
    with CLOCK("gates"):
        report = evaluate_policy(step_policy(policy, BACKTEST_GATES), overall)
    log_params_once(
        {
            "model_name": version.name,
            "version": version.version,
            "data": data_name,
            "time_col": time_col or "none",
            "folds": folds,
            "seed": seed,
            "policy": policy_path or "default",
        }
    )
    metrics = log_metrics(overall, prefix="overall_")
    set_tags(
        {
            VERSION_TAG: version.version,
            TAG_PREFIX + "horizon": f"{float(used_h):g}",
            TAG_PREFIX + "horizon_choice": how,
            TAG_PREFIX + "backtest_method": method,
            TAG_PREFIX + "folds_note": shortfall or None,
        }
    )
    verdict_line = (
        "gates passed" if report.passed else "gates failed: " + ", ".join(report.failed_gates)
    )
    log_report(report, f"Backtest of {version.name} version {version.version}: {verdict_line}")
    with CLOCK("reports"):
        text = _reports.backtest_text(
            model=version.name,
            version=version.version,
            method=method,
            horizon=float(used_h),
            horizon_choice=how,
            folds=fold_rows,
            overall=overall,
            metrics=FOLD_METRICS,
            verdict=verdict_line,
            notes=[shortfall] if shortfall else [],
        )
        log_artifact_files({"backtest_report.txt": text})
        gated = {s.name: s.threshold for s in step_policy(policy, BACKTEST_GATES).gates}
        fig = _reports.backtest_figure(
            fold_rows,
            FOLD_METRICS,
            f"Backtest per fold: {version.name} v{version.version} (horizon {used_h:g})",
            thresholds=gated,
            pooled=overall,
        )
        _reports.log_figure(fig, "backtest_metrics.png")
    record_verdict(registry, version, "backtest", report.passed, run_id)
    verdict = StepVerdict(
        "backtest",
        version.version,
        report,
        {k.removeprefix("overall_"): v for k, v in metrics.items()},
        run_id,
    )
    print(f"backtest {version.name} version {version.version}: {verdict_line}")
    return verdict


class _Pooled:
    """Every fold's test rows together: F1, precision, recall and Brier overall come from the
    pooled rows with their own fold's censoring weights (each fold's decisions at its own
    threshold); the C-index is the folds' mean, as risk scores of different models do not
    compare across folds."""

    def __init__(self, horizon: float) -> None:
        self.horizon = horizon
        self.labels: list[np.ndarray] = []
        self.weights: list[np.ndarray] = []
        self.durations: list[np.ndarray] = []
        self.events: list[np.ndarray] = []
        self.probability: list[np.ndarray] = []
        self.decisions: list[np.ndarray] = []
        self.c_index: list[float] = []

    def add(self, at: Any, test: SurvivalData, probability: np.ndarray, threshold: float) -> None:
        self.labels.append(at.labels)
        self.weights.append(at.weights)
        self.durations.append(test.durations)
        self.events.append(test.events)
        self.probability.append(probability)
        self.decisions.append((probability >= threshold).astype(int))

    def metrics(self) -> dict[str, Any]:
        from mlflow_plugin import gates

        out: dict[str, Any] = {}
        if self.labels:
            at = gates.AtHorizon(
                self.horizon,
                np.concatenate(self.labels),
                np.concatenate(self.weights),
                gates.km_event_share(
                    np.concatenate(self.durations), np.concatenate(self.events), self.horizon
                ),
            )
            out = _scores(at, np.concatenate(self.probability), np.concatenate(self.decisions))
        else:
            why = gates.UndefinedMetric("backtest", "no fold could be trained and scored")
            out = dict.fromkeys(("f1", "precision", "recall", "brier"), why)
        out["c_index"] = (
            float(np.mean(self.c_index))
            if self.c_index
            else gates.UndefinedMetric("c_index", "no fold has a C-index")
        )
        return out


def _scores(at: Any, probability: np.ndarray, decided: np.ndarray) -> dict[str, Any]:
    """Weighted F1/precision/recall, IPCW Brier, the trivial baselines and the row counts."""
    out: dict[str, Any] = dict(at.classification(decided))
    out["brier"] = at.brier(probability)
    for name, value in at.baselines().items():
        out[f"{name}_baseline"] = value
    out["rows_used"] = float(at.n_used)
    out["rows_censored"] = float(at.n_censored)
    out["km_event_share"] = at.km_event_share
    return out


def _attempt(name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    from mlflow_plugin import gates

    try:
        return float(fn(*args, **kwargs))
    except gates.UndefinedMetric as exc:
        return exc
    except ValueError as exc:
        return gates.UndefinedMetric(name, str(exc))


def _fold(
    index: int, recipe: dict[str, Any], part: FoldData, horizon: float, pooled: _Pooled
) -> dict[str, Any]:
    from mlflow_plugin import gates
    from mlflow_plugin.flows._model import fit_model

    train, test = part.fit, part.test
    row: dict[str, Any] = {
        "fold": index,
        "n_train": len(train),
        "n_test": len(test),
        "metrics": {},
        "undefined": {},
    }
    with CLOCK("training"):
        try:
            model = fit_model(
                recipe["model_kind"],
                train.frame,
                train.features,
                train.durations,
                train.events,
                penalizer=float(recipe.get("penalizer", 0.0)),
                horizon=horizon,
                buckets=int(recipe.get("buckets", 4)),
            )
        except (ValueError, np.linalg.LinAlgError) as exc:
            row["error"] = " ".join(str(exc).split())[:200]
            return row
    row["threshold"] = model.decision_threshold
    with CLOCK("gates"):
        values: dict[str, Any] = {}
        try:
            at = gates.at_horizon(
                test.durations,
                test.events,
                horizon,
                train_durations=part.train.durations,
                train_events=part.train.events,
            )
        except gates.UndefinedMetric as exc:
            for name in ("f1", "precision", "recall", "brier"):
                values[name] = gates.UndefinedMetric(name, exc.reason)
        else:
            probability = np.clip(model.event_probability(test.frame), 0.0, 1.0)
            pooled.add(at, test, probability, model.decision_threshold)
            values = _scores(at, probability, probability >= model.decision_threshold)
        risk = model.predict(None, test.X)["risk"].to_numpy()
        c_index = _attempt("c_index", gates.c_index_score, test.durations, test.events, risk)
        values["c_index"] = c_index
        if isinstance(c_index, float):
            pooled.c_index.append(c_index)
        row["metrics"] = {k: v for k, v in values.items() if isinstance(v, float)}
        row["undefined"] = {
            k: v.reason for k, v in values.items() if isinstance(v, gates.UndefinedMetric)
        }
    return row
