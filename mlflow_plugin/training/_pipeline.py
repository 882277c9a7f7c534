"""The ``main`` entry point: train -> validate -> backtest -> promote, in one process, as nested
child runs of one parent run.

One process means one interpreter start, one import of mlflow/lifelines/scikit-learn, one read
of the data and one registry client for the four steps (``benchmarks/bench_pipeline.py``
measures what that saves). Each step stays runnable on its own (``mlflow run -e <step>``) and
its run is tagged the same way either way.

The data and the policy are checked before anything is registered. A candidate that fails a
gate is not promoted: the champion is untouched, a ``rejected`` event records the reasons, and
the parent run says ``mlflow_plugin.outcome=rejected``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mlflow_plugin.errors import ConfigError, DataError, GateFailed
from mlflow_plugin.policy import load_policy
from mlflow_plugin.settings import TAG_PREFIX
from mlflow_plugin.training._gating import StepVerdict, log_metrics
from mlflow_plugin.training._params import TrainParams
from mlflow_plugin.training._promote import OUTCOME_TAG, promote_in_run
from mlflow_plugin.training._tracking import (
    CLOCK,
    VERSION_TAG,
    deferred_step_run,
    log_params_once,
    set_tags,
    step_run,
    warm_imports,
)
from mlflow_plugin.types import check_strategy

if TYPE_CHECKING:
    from mlflow_plugin.controller import Controller
    from mlflow_plugin.policy import Policy
    from mlflow_plugin.training._data import SurvivalData

__all__ = ["PipelineParams", "PipelineResult", "run_pipeline"]

REASONS_TAG = TAG_PREFIX + "reasons"
TIMINGS_TAG = TAG_PREFIX + "timings"


@dataclass(frozen=True)
class PipelineParams:
    """``main``'s parameters: the training ones plus the gate and promotion ones.

    Attributes:
        train: data, model and holdout (see :class:`TrainParams`).
        folds: backtest folds.
        policy: gate policy file (None: ``flows/policy.yaml`` if present, else defaults).
        strategy: deployment strategy recorded on promotion.
    """

    train: TrainParams
    folds: int = 4
    policy: str | None = None
    strategy: str = "all_at_once"

    def __post_init__(self) -> None:
        check_strategy(self.strategy)
        if not 2 <= self.folds <= 50:
            raise ConfigError(f"folds: must be between 2 and 50, got {self.folds!r}")


@dataclass(frozen=True)
class PipelineResult:
    """What ``main`` did.

    Attributes:
        outcome: ``promoted``, ``unchanged`` (already champion) or ``rejected``.
        model: the registered model.
        version: the candidate version.
        run_id: the parent run.
        reasons: why it was rejected (one line per failed gate), empty otherwise.
        validation: the validate step's verdict.
        backtest: the backtest step's verdict.
        timings: seconds per category (import, data, training, gates, registry, ...).
    """

    outcome: str
    model: str
    version: str
    run_id: str
    reasons: list[str]
    validation: StepVerdict
    backtest: StepVerdict
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def promoted(self) -> bool:
        return self.outcome == "promoted"


def run_pipeline(params: PipelineParams, *, tracking_uri: str | None = None) -> PipelineResult:
    """Run ``main``: every step in this process, each a child run of one parent run.

    Raises:
        BadInput: bad data, parameters or policy (before any model is registered).
    """
    return _run_pipeline(params, tracking_uri)


def _run_pipeline(params: PipelineParams, tracking_uri: str | None) -> PipelineResult:
    CLOCK.reset()  # one pipeline's figures (the demo runs two in one process)
    with CLOCK("import"):
        from mlflow_plugin.controller import Controller
        from mlflow_plugin.ledger._ledger import Ledger
        from mlflow_plugin.registry._adapter import Registry
        from mlflow_plugin.training._backtest import backtest_in_run
        from mlflow_plugin.training._data import load_data, prepare, split_holdout
        from mlflow_plugin.training._train import train_in_run
        from mlflow_plugin.training._validate import validate_in_run
    warm_imports()
    tp = params.train
    model = tp.model_name
    with CLOCK("data"):
        policy = load_policy(params.policy)  # a bad policy fails before anything is written
    with CLOCK("registry"):
        registry = Registry(tracking_uri)
        ledger = Ledger(registry.uri)
        # A server that is down fails here, in seconds, as RegistryUnavailable (exit 4).
        ledger.experiment_id()
        controller = Controller(registry, ledger)
    # Bad data, too few distinct times for the folds, a horizon outside the follow-up: fail
    # before the run starts.
    with CLOCK("data"):
        dataset = load_data(tp.data)
        data = prepare(dataset, tp.columns, missing=tp.missing)
        train, holdout = split_holdout(data, tp.holdout, tp.seed)
        horizon = _horizon(tp, policy, data, train, holdout, params.folds)
    with step_run("main", model) as parent:
        log_params_once(
            {
                **tp.recipe(),
                "model_name": model,
                "data": tp.data,
                "folds": params.folds,
                "policy": params.policy or "default",
                "strategy": params.strategy,
                "horizon": tp.horizon or "auto",
                "time_col": tp.columns.time or "none",
                "features": ",".join(tp.columns.features or ("all",)),
            }
        )
        with step_run("train", model, nested=True):
            trained = train_in_run(
                dataclasses.replace(tp, horizon=horizon), dataset, train, holdout, registry
            )
        version = trained.version
        set_tags({VERSION_TAG: version.version})
        try:
            evaluation = holdout if holdout is not None else train
            with step_run("validate", model, nested=True, tags={VERSION_TAG: version.version}):
                validation = validate_in_run(
                    registry,
                    version,
                    evaluation,
                    policy,
                    horizon=tp.horizon,
                    data_name=f"{tp.data} ({'holdout' if holdout is not None else 'training rows'})",
                    policy_path=params.policy,
                    in_sample=holdout is None,
                    train_rows=train,
                )
            with step_run("backtest", model, nested=True, tags={VERSION_TAG: version.version}):
                backtest = backtest_in_run(
                    registry,
                    version,
                    data,
                    policy,
                    horizon=tp.horizon,
                    folds=params.folds,
                    seed=tp.seed,
                    data_name=tp.data,
                    policy_path=params.policy,
                    time_scale=tp.time_scale,
                )
        except Exception as exc:
            # The candidate stays un-promoted; say so in the ledger, not only in a failed run.
            with CLOCK("registry"):
                controller.reject(
                    model,
                    version.version,
                    ["gates=error"],
                    f"gates could not be evaluated: {' '.join(str(exc).split())[:300]}",
                )
            raise
        reasons = validation.reasons() + backtest.reasons()
        # Nothing to upload and no run id needed while it runs: created when it ends, with
        # its tags in the create call (docs/ARCHITECTURE.md, "HTTP round trips").
        with deferred_step_run("promote", model, tags={VERSION_TAG: version.version}):
            outcome = _promote(
                controller,
                model,
                version.version,
                params.strategy,
                [validation, backtest],
                parent.info.run_id,
            )
        log_metrics(
            {
                **validation.metrics,
                **{k: v for k, v in backtest.metrics.items() if k in ("f1", "precision", "recall")},
                "backtest_brier": backtest.metrics.get("brier"),
            }
        )
        set_tags(
            {
                OUTCOME_TAG: outcome,
                REASONS_TAG: "; ".join(reasons)[:5000] or None,
                "mlflow.note.content": _summary(
                    model, version.version, outcome, reasons, validation, backtest
                ),
            }
        )
        timings = CLOCK.summary()
        set_tags({TIMINGS_TAG: json.dumps(timings)})  # in the run's batch, not an upload
    result = PipelineResult(
        outcome, model, version.version, parent.info.run_id, reasons, validation, backtest, timings
    )
    print(
        f"main: {model} version {version.version} {outcome}" + "".join(f"\n  {r}" for r in reasons)
    )
    print(f"timings: {json.dumps(timings)}")
    return result


def _horizon(
    tp: TrainParams,
    policy: Policy,
    data: SurvivalData,
    train: SurvivalData,
    holdout: SurvivalData | None,
    folds: int,
) -> float:
    """The horizon of all three steps, fixed before anything is registered: the explicit one
    (parameter, else policy) checked against the follow-up of the holdout and of every
    backtest fold, else chosen inside it (docs/ARCHITECTURE.md, "Statistics of the gates").

    Raises:
        DataError: too few distinct times for the folds, or a horizon outside the follow-up.
    """
    from mlflow_plugin.metrics import auto_horizon, check_horizon
    from mlflow_plugin.training._folds import fold_data, horizon_sets, splits_for

    splits, _ = splits_for(data, folds, tp.seed)
    evaluated = horizon_sets(fold_data(data, splits, tp.time_scale))
    if holdout is not None:
        evaluated.insert(0, holdout.durations)
    explicit = tp.horizon if tp.horizon is not None else policy.horizon
    try:
        if explicit is not None:
            return check_horizon(explicit, evaluated)
        return auto_horizon(train.durations, evaluated)
    except ValueError as exc:
        raise DataError(f"{exc} (the holdout and every backtest fold)") from None


def _promote(
    controller: Controller,
    model: str,
    version: str,
    strategy: str,
    verdicts: list[StepVerdict],
    parent_run: str,
) -> str:
    """Promote when every gate passed; otherwise record the rejection with its reasons."""
    reasons = [line for v in verdicts for line in v.reasons()]
    if reasons:
        failed = [f"{v.step}:{name}" for v in verdicts for name in v.report.failed_gates]
        message = "rejected by main: " + "; ".join(reasons)
        with CLOCK("registry"):
            event = controller.reject(model, version, failed, message[:1000])
        set_tags(
            {
                OUTCOME_TAG: "rejected",
                TAG_PREFIX + "reason": message[:5000],
                VERSION_TAG: version,
                TAG_PREFIX + "event_run": event.run_id,
            }
        )
        print(f"promote {model}: version {version} rejected")
        return "rejected"
    try:
        done = promote_in_run(
            controller,
            model,
            version,
            strategy,
            reason=f"all gates passed (pipeline run {parent_run})",
        )
    except GateFailed:  # the tags changed under us; the controller recorded the rejection
        return "rejected"
    return done.outcome


def _summary(
    model: str, version: str, outcome: str, reasons: list[str], *verdicts: StepVerdict
) -> str:
    """The parent run's note (Markdown): the outcome, then each step's gate table."""
    lines = [f"## {model} version {version}: **{outcome}**", ""]
    lines += [f"- {r}" for r in reasons]
    for verdict in verdicts:
        lines += [
            "",
            f"### {verdict.step} (run `{verdict.run_id}`)",
            "",
            verdict.report.to_markdown(),
        ]
    return "\n".join(lines)
