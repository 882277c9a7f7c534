"""The ``backtest`` step: refit a version's training recipe fold by fold and score each fold on
data it did not see.

With a time column the folds are rolling-origin: the rows are cut at ``folds`` points in time
(rows with the same time always fall on one side); fold ``i`` trains on every row before cut
``i``, with their follow-up censored at the cut (only what was known then), and scores the
rows up to the next cut. Without one, seeded k-fold cross-validation (the report says so).

The task scored is "event by ``horizon``", the horizon inside every fold's follow-up. Each
fold's test rows are weighted by the inverse probability of censoring, the censoring
distribution estimated on the fold's training rows (:func:`mlflow_plugin.metrics.at_horizon`):
F1, precision and recall from the weighted confusion counts at the fold model's own decision
threshold (the F1-best threshold on its training rows), the IPCW Brier score of its
probability, the C-index of its risk score, and what a trivial predictor gets. A metric that
cannot be estimated on a fold is ``undefined`` there.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from mlflow_plugin.settings import TAG_PREFIX
from mlflow_plugin.training._data import SurvivalData
from mlflow_plugin.training._folds import FoldData, FoldPlan, backtest_recipe, plan_folds
from mlflow_plugin.training._gating import (
    BACKTEST_GATES,
    StepVerdict,
    log_metrics,
    log_report,
    record_verdict,
    step_inputs,
    step_policy,
)
from mlflow_plugin.training._params import BacktestParams, Columns
from mlflow_plugin.training._tracking import (
    CLOCK,
    VERSION_TAG,
    log_artifact_files,
    log_params_once,
    set_tags,
    step_run,
)
from mlflow_plugin.types import VersionInfo

if TYPE_CHECKING:
    from mlflow_plugin.policy import Policy
    from mlflow_plugin.registry._adapter import Registry

__all__ = ["FOLD_METRICS", "backtest_in_run", "run_backtest"]

FOLD_METRICS = ("f1", "precision", "recall", "brier", "c_index")


def run_backtest(params: BacktestParams, *, tracking_uri: str | None = None) -> StepVerdict:
    """``mlflow run -e backtest``: backtest one version's recipe in a run of its own."""
    # Bad input (policy, version, columns, data, folds, horizon) fails before the run starts.
    policy, registry, version, data = step_inputs(
        params, tracking_uri, functools.partial(_columns, params)
    )
    with CLOCK("data"):
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


def _columns(params: BacktestParams, version: VersionInfo) -> Columns:
    recipe = backtest_recipe(version)
    time_col = params.time_col or recipe.get("time_col") or None
    features = recipe.get("features") or None
    return Columns(
        recipe["duration_col"],
        recipe["event_col"],
        time_col,
        tuple(features) if features else None,
    )


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

    from mlflow_plugin.evaluation._evaluate import evaluate_policy
    from mlflow_plugin.training import _reports

    run_id = mlflow.active_run().info.run_id  # type: ignore[union-attr]
    recipe = backtest_recipe(version)
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
        from mlflow_plugin import metrics

        out: dict[str, Any] = {}
        if self.labels:
            at = metrics.AtHorizon(
                self.horizon,
                np.concatenate(self.labels),
                np.concatenate(self.weights),
                metrics.km_event_share(
                    np.concatenate(self.durations), np.concatenate(self.events), self.horizon
                ),
            )
            out = _scores(at, np.concatenate(self.probability), np.concatenate(self.decisions))
        else:
            why = metrics.UndefinedMetric("backtest", "no fold could be trained and scored")
            out = dict.fromkeys(("f1", "precision", "recall", "brier"), why)
        out["c_index"] = (
            float(np.mean(self.c_index))
            if self.c_index
            else metrics.UndefinedMetric("c_index", "no fold has a C-index")
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
    from mlflow_plugin import metrics

    try:
        return float(fn(*args, **kwargs))
    except metrics.UndefinedMetric as exc:
        return exc
    except ValueError as exc:
        return metrics.UndefinedMetric(name, str(exc))


def _fold(
    index: int, recipe: dict[str, Any], part: FoldData, horizon: float, pooled: _Pooled
) -> dict[str, Any]:
    from mlflow_plugin import metrics
    from mlflow_plugin.training._model import fit_model

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
            at = metrics.at_horizon(
                test.durations,
                test.events,
                horizon,
                train_durations=part.train.durations,
                train_events=part.train.events,
            )
        except metrics.UndefinedMetric as exc:
            for name in ("f1", "precision", "recall", "brier"):
                values[name] = metrics.UndefinedMetric(name, exc.reason)
        else:
            probability = np.clip(model.event_probability(test.frame), 0.0, 1.0)
            pooled.add(at, test, probability, model.decision_threshold)
            values = _scores(at, probability, probability >= model.decision_threshold)
        risk = model.predict(None, test.X)["risk"].to_numpy()
        c_index = _attempt("c_index", metrics.c_index_score, test.durations, test.events, risk)
        values["c_index"] = c_index
        if isinstance(c_index, float):
            pooled.c_index.append(c_index)
        row["metrics"] = {k: v for k, v in values.items() if isinstance(v, float)}
        row["undefined"] = {
            k: v.reason for k, v in values.items() if isinstance(v, metrics.UndefinedMetric)
        }
    return row
