"""The ``backtest`` step: refit a version's training recipe fold by fold and score each fold on
data it did not see.

With a time column the folds are rolling-origin: the rows are cut at ``folds`` points in time;
fold ``i`` trains on every row before cut ``i`` and scores the rows up to the next cut, so no
row from the future is ever trained on. Without one, seeded k-fold cross-validation (the report
says so). The task scored is "event within ``horizon``": F1, precision and recall at the fold
model's own decision threshold (chosen on its training rows), the Brier score of its
probability, and the C-index of its risk score.
"""

from __future__ import annotations

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
from mlflow_plugin.flows._tracking import CLOCK, VERSION_TAG, log_params_once, set_tags, step_run

if TYPE_CHECKING:
    from mlflow_plugin.gates import Policy
    from mlflow_plugin.registry import Registry

__all__ = [
    "FOLD_METRICS",
    "Split",
    "backtest_in_run",
    "kfold",
    "rolling_origin",
    "run_backtest",
    "splits_for",
]

FOLD_METRICS = ("f1", "precision", "recall", "brier", "c_index")
Split = tuple[np.ndarray, np.ndarray, str]


def run_backtest(params: BacktestParams, *, tracking_uri: str | None = None) -> StepVerdict:
    """``mlflow run -e backtest``: backtest one version's recipe in a run of its own."""
    from mlflow_plugin.registry import Registry

    policy = load_policy(params.policy)
    registry = Registry(tracking_uri)
    version = resolve_version(registry, params.model_name, params.version)
    recipe = _recipe(version)
    with step_run("backtest", params.model_name, tags={VERSION_TAG: version.version}):
        time_col = params.time_col or recipe.get("time_col") or None
        features = recipe.get("features") or None
        columns = Columns(
            recipe["duration_col"],
            recipe["event_col"],
            time_col,
            tuple(features) if features else None,
        )
        with CLOCK("data"):
            data = prepare(load_data(params.data), columns)
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
        )


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
) -> StepVerdict:
    """Backtest ``version``'s recipe on ``data`` in the active run; tag the version."""
    import mlflow

    from mlflow_plugin.evaluation import evaluate_policy
    from mlflow_plugin.flows import _reports
    from mlflow_plugin.flows._model import default_horizon

    run_id = mlflow.active_run().info.run_id  # type: ignore[union-attr]
    recipe = _recipe(version)
    horizon = horizon or policy.horizon or recipe.get("horizon") or default_horizon(data.durations)
    time_col = data.columns.time
    splits, method = splits_for(data, folds, seed)
    fold_rows, pooled = [], _Pooled()
    for i, (train_idx, test_idx, window) in enumerate(splits, start=1):
        row = _fold(
            i, recipe, data.subset(train_idx), data.subset(test_idx), float(horizon), pooled
        )
        row["window"] = window
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
            TAG_PREFIX + "horizon": f"{float(horizon):g}",
            TAG_PREFIX + "backtest_method": method,
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
            horizon=float(horizon),
            folds=fold_rows,
            overall=overall,
            metrics=FOLD_METRICS,
            verdict=verdict_line,
        )
        mlflow.log_text(text, "backtest_report.txt")
        fig = _reports.backtest_figure(
            fold_rows, FOLD_METRICS, f"Backtest per fold: {version.name} v{version.version}"
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
    """Every fold's test rows together: F1, precision, recall and Brier overall are computed on
    the pooled rows (each fold's decisions at its own threshold); C-index is the folds' mean, as
    risk scores of different models do not compare across folds."""

    def __init__(self) -> None:
        self.labels: list[np.ndarray] = []
        self.probability: list[np.ndarray] = []
        self.decisions: list[np.ndarray] = []
        self.c_index: list[float] = []

    def add(self, labels: np.ndarray, probability: np.ndarray, threshold: float) -> None:
        self.labels.append(labels)
        self.probability.append(probability)
        self.decisions.append((probability >= threshold).astype(float))

    def metrics(self) -> dict[str, Any]:
        from mlflow_plugin import gates

        if not self.labels:
            why = gates.UndefinedMetric("backtest", "no fold could be trained and scored")
            return dict.fromkeys(FOLD_METRICS, why)
        y = np.concatenate(self.labels)
        decided = np.concatenate(self.decisions)
        out = _classification(y, np.concatenate(self.probability), decided)
        out["c_index"] = float(np.mean(self.c_index)) if self.c_index else None
        return out


def _classification(y: np.ndarray, probability: np.ndarray, decided: np.ndarray) -> dict[str, Any]:
    """F1/precision/recall of the 0/1 decisions, Brier of the probabilities."""
    from mlflow_plugin import gates

    out: dict[str, Any] = {}
    for name, fn in (
        ("f1", gates.f1_score),
        ("precision", gates.precision_score),
        ("recall", gates.recall_score),
    ):
        out[name] = _attempt(name, fn, y, decided, threshold=0.5)
    out["brier"] = _attempt("brier", gates.brier_loss, y, probability)
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
    index: int,
    recipe: dict[str, Any],
    train: SurvivalData,
    test: SurvivalData,
    horizon: float,
    pooled: _Pooled,
) -> dict[str, Any]:
    from mlflow_plugin import gates
    from mlflow_plugin.flows._model import event_labels, fit_model

    row: dict[str, Any] = {"fold": index, "n_train": len(train), "n_test": len(test), "metrics": {}}
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
    with CLOCK("gates"):
        labels, known = event_labels(test.durations, test.events, horizon)
        if known.any():
            probability = model.event_probability(test.frame.loc[known])
            pooled.add(labels[known], probability, model.decision_threshold)
            decided = (probability >= model.decision_threshold).astype(float)
            row["metrics"] = _classification(labels[known], probability, decided)
        risk = model.predict(None, test.X)["risk"].to_numpy()
        c_index = _attempt("c_index", gates.c_index_score, test.durations, test.events, risk)
        row["metrics"]["c_index"] = c_index
        if isinstance(c_index, float):
            pooled.c_index.append(c_index)
        row["metrics"] = {k: v for k, v in row["metrics"].items() if isinstance(v, float)}
    return row
