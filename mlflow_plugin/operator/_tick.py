"""One pass of the closed loop over every managed model: :meth:`Operator.tick`.

A pass runs the operator's **tasks** in order for each model; each task is a function of a
:class:`TickContext` and may add actions to it. The default list::

    reconcile    record registry-UI changes, repair the stage mirror (the controller)
    monitor      match predictions to outcomes, window metrics, log the monitoring run
    degradation  rollback_if breached -> ``degraded`` (+ alert); the fallback does better on
                 the same windows -> the controller's ``rollback``
    rollout      a canary / blue-green / watch analysis when due, and the step, pause, abort,
                 cutover or rollback it leads to (:mod:`._rollout`)
    triggers     schedule / performance / new data -> ``retrain_triggered`` (+ alert) and one
                 run of ``main`` through MLflow Projects (:mod:`._triggers`)

    retention    the policy's ``retention`` rules (archive, then delete), at most once a day
                 per model and process, only when the policy can delete
    heartbeat    the model tag ``mlflow_plugin.operator_heartbeat`` = this pass's time (ISO-8601
                 UTC), which ``mlflow-plugin doctor`` checks; a cron ``tick`` holds no lease

Later work plugs in by inserting into :attr:`Operator.tasks`:
``operator.tasks.insert(i, (name, step_fn))``.

Every decision is a ledger event; each firing carries a dedupe key (rule + window, or the
scheduled time, or the data fingerprint), and a key already in the ledger never fires again,
so re-running a pass, or ingesting the same outcomes twice, changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mlflow_plugin.errors import MlflowPluginError
from mlflow_plugin.operator._alerts import Alert, Alerter
from mlflow_plugin.operator._rollout_task import rollout_task
from mlflow_plugin.operator._triggers import Firing, breached, run_triggers
from mlflow_plugin.retention import retention_task
from mlflow_plugin.settings import TAG_PREFIX
from mlflow_plugin.types import CHAMPION, FALLBACK

if TYPE_CHECKING:
    from mlflow_plugin.controller import Controller
    from mlflow_plugin.monitoring import MonitoringRuns, MonitorReport, OutcomeStore, Window
    from mlflow_plugin.operator._retrain import Retrainer
    from mlflow_plugin.policy import PerformanceRules, Policy
    from mlflow_plugin.types import Event, VersionInfo

__all__ = ["HEARTBEAT_TAG", "Firing", "Operator", "TickContext", "TickTask", "utc_now"]

_log = logging.getLogger("mlflow_plugin.operator")
DEDUPE_TAG = TAG_PREFIX + "dedupe_keys"
#: Registered-model tag: the time of the operator's last pass over the model (ISO-8601, UTC).
HEARTBEAT_TAG = TAG_PREFIX + "operator_heartbeat"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class TickContext:
    """What one model's pass knows; tasks read it and append to ``actions``."""

    model: str
    now: datetime
    champion: VersionInfo | None = None
    promoted_ms: int = 0
    report: MonitorReport | None = None
    actions: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def did(self, line: str) -> None:
        self.actions.append(line)
        _log.info("%s: %s", self.model, line)


TickTask = Callable[[TickContext], None]


class Operator:
    """The closed loop.

    Args:
        controller: promotion, rollback, reconcile, and the ledger.
        policy: the policy (``triggers``, ``rollback_if``, ``alerts`` sections).
        store: outcomes and the prediction log (None: no monitoring).
        runs: monitoring runs (None: windows are computed, not logged).
        retrainer: starts ``main`` (None: triggers are recorded, nothing is started).
        window: length of a monitoring window.
        models: the models to manage (None: every model with a champion in the ledger).
        clock: "now" (injectable for tests and replays).
        policy_path: passed to the retraining run.
    """

    def __init__(
        self,
        controller: Controller,
        policy: Policy,
        *,
        store: OutcomeStore | None = None,
        runs: MonitoringRuns | None = None,
        retrainer: Retrainer | None = None,
        window: timedelta = timedelta(days=7),
        models: list[str] | None = None,
        clock: Callable[[], datetime] = utc_now,
        policy_path: str | None = None,
    ) -> None:
        self.controller = controller
        self.policy = policy
        self.store = store
        self.runs = runs
        self.retrainer = retrainer
        self.window = window
        self.models = models
        self.clock = clock
        self.policy_path = policy_path
        self.alerter = Alerter(controller.ledger, policy.alerts)
        self.tasks: list[tuple[str, TickTask]] = [
            ("reconcile", self.reconcile),
            ("monitor", self.monitor),
            ("degradation", self.degradation),
            ("rollout", rollout_task(self)),
            ("triggers", self.triggers),
            ("retention", retention_task(controller, policy)),
            ("heartbeat", self.heartbeat),
        ]

    # -- the pass ------------------------------------------------------------------------
    def managed_models(self) -> list[str]:
        if self.models:
            return list(self.models)
        names = {e.model for e in self.controller.ledger.events() if e.model}
        return sorted(names)

    def tick(self) -> dict[str, list[str]]:
        """One pass over every model: model -> what was done (one line per action).

        A task that fails for one model is logged and recorded in its actions; the other
        tasks and models still run. A tracking server that cannot be reached stops the pass.
        """
        from mlflow_plugin.errors import RegistryUnavailable

        now = self.clock()
        out: dict[str, list[str]] = {}
        for model in self.managed_models():
            ctx = TickContext(model, now)
            for name, task in self.tasks:
                try:
                    task(ctx)
                except RegistryUnavailable:
                    raise
                except MlflowPluginError as exc:
                    ctx.did(f"{name}: {exc}")
            out[model] = ctx.actions
        return out

    # -- tasks ---------------------------------------------------------------------------
    def heartbeat(self, ctx: TickContext) -> None:
        stamp = ctx.now.astimezone(UTC).isoformat(timespec="seconds")
        self.controller.registry.set_model_tag(ctx.model, HEARTBEAT_TAG, stamp)

    def reconcile(self, ctx: TickContext) -> None:
        for event in self.controller.reconcile(ctx.model):
            ctx.did(f"reconcile: {event.event_type} v{event.version} ({event.message})")
        info = self.controller.registry.get_model(ctx.model)
        champion = info.aliases.get(CHAMPION)
        if champion:
            ctx.champion = self.controller.registry.get_version(ctx.model, champion)
            ctx.promoted_ms = self._promoted_ms(ctx.model, ctx.champion)
            ctx.extra["fallback"] = info.aliases.get(FALLBACK)
            ctx.extra["model_tags"] = info.tags

    def monitor(self, ctx: TickContext) -> None:
        if ctx.champion is None or self.store is None:
            return
        from mlflow_plugin.monitoring import monitor_version

        report = monitor_version(
            self.store,
            self.runs,
            ctx.champion,
            promoted_ms=ctx.promoted_ms,
            now=ctx.now,
            length=self.window,
        )
        ctx.report = report
        if self.runs is not None and report.windows and report.run_id:
            rules = [
                (n, r)
                for n, r in (
                    ("triggers", self.policy.triggers),
                    ("rollback_if", self.policy.rollback_if),
                )
                if r is not None
            ]
            self.runs.log_plot(
                report.run_id,
                f"{ctx.model} v{ctx.champion.version}: realised performance per window",
                report.windows,
                report.baseline,
                rules,
            )
        done = [w for w in report.complete if w.counts.get("matured")]
        if done:
            last = done[-1]
            ctx.did(
                f"monitor v{ctx.champion.version}: window {last.index} "
                + ", ".join(f"{k}={v:.4f}" for k, v in last.metrics.items() if v is not None)
                + f" ({last.counts['matured']} matured)"
            )

    def degradation(self, ctx: TickContext) -> None:
        rules = self.policy.rollback_if
        if rules is None or not rules.active or ctx.report is None or ctx.champion is None:
            return
        bad = breached(ctx.report, rules)
        if bad is None:
            return
        windows, breaches = bad
        version = ctx.champion.version
        key = f"degraded:v{version}:{windows[-1].key}"
        if key in self._used_keys(ctx.model, "degraded"):
            return
        evidence = "; ".join(
            f"window {w.index}: {', '.join(b.values())}"
            for w, b in zip(windows, breaches, strict=True)
        )
        event = self.controller.ledger.record(
            "degraded",
            ctx.model,
            version=version,
            from_version=version,
            message=f"champion v{version} degraded: {evidence}"[:1000],
            extra={"dedupe_keys": key, "rules": ",".join(sorted({r for b in breaches for r in b}))},
        )
        ctx.did(f"degraded: v{version}: {evidence}")
        if self.runs is not None and ctx.report.run_id:
            self.runs.set_state(ctx.report.run_id, "degraded")
        self.alerter.send(
            Alert(
                ctx.model,
                version,
                "degraded",
                f"{ctx.model} v{version} degraded: {evidence}",
                {"event_run": event.run_id, "windows": [w.as_dict() for w in windows]},
            )
        )
        self._maybe_roll_back(ctx, windows, breaches)

    def _maybe_roll_back(
        self, ctx: TickContext, windows: list[Window], breaches: list[dict[str, str]]
    ) -> None:
        assert ctx.champion is not None and ctx.report is not None
        fallback = ctx.extra.get("fallback")
        if not fallback or fallback == ctx.champion.version or self.store is None:
            ctx.did("no rollback: no fallback version to compare with")
            return
        from mlflow_plugin.operator._shadow import score_fallback

        rules = self.policy.rollback_if
        assert rules is not None
        compared = score_fallback(
            self.store, self.controller.registry, ctx.champion, fallback, windows, self.runs
        )
        if compared is None:
            ctx.did(f"no rollback: v{fallback} could not be scored on the logged inputs")
            return
        better, lines = _fallback_better(windows, compared, breaches, rules, ctx.report.baseline)
        if not better:
            ctx.did(
                f"no rollback: v{fallback} is not better on the same windows ({'; '.join(lines)})"
            )
            return
        reason = (
            f"automatic rollback: v{ctx.champion.version} degraded and v{fallback} does better "
            f"on the same windows: {'; '.join(lines)}"
        )
        outcome = self.controller.rollback(ctx.model, reason=reason[:1000], to_version=fallback)
        ctx.did(f"rollback: {outcome.message}")
        if self.runs is not None and ctx.report.run_id:
            self.runs.set_state(ctx.report.run_id, "rolled_back")
        self.alerter.send(Alert(ctx.model, fallback, "rollback", f"{ctx.model}: {reason}"))

    def triggers(self, ctx: TickContext) -> None:
        run_triggers(self, ctx)

    # -- helpers -------------------------------------------------------------------------
    def _used_keys(self, model: str, event_type: str) -> set[str]:
        keys: set[str] = set()
        for event in self.controller.ledger.events(model, event_type):
            keys.update(k for k in event.extra.get(DEDUPE_TAG, "").split(",") if k)
        return keys

    def _promoted_ms(self, model: str, version: VersionInfo) -> int:
        events: list[Event] = self.controller.champion_events(model)
        for event in reversed(events):
            if event.version == version.version:
                return event.timestamp_ms
        return version.created_ms


def _fallback_better(
    windows: list[Window],
    compared: list[dict[str, float | None]],
    breaches: list[dict[str, str]],
    rules: PerformanceRules,
    baseline: dict[str, float],
) -> tuple[bool, list[str]]:
    """Better = on every breached metric of every window the fallback's value is better, and
    the fallback itself breaks no rule there."""
    metric_of = {
        "brier_increase": "brier",
        "precision_below": "precision",
        "recall_below": "recall",
        "c_index_below": "c_index",
    }
    lines, better = [], True
    for w, theirs, broken in zip(windows, compared, breaches, strict=True):
        for rule in broken:
            metric = metric_of[rule]
            ours, alt = w.metrics.get(metric), theirs.get(metric)
            if ours is None or alt is None:
                better = False
                lines.append(f"window {w.index} {metric}: fallback undefined")
                continue
            improves = alt < ours if metric == "brier" else alt > ours
            better &= improves
            lines.append(f"window {w.index} {metric} {ours:.4f} -> {alt:.4f}")
        if rules.breaches(theirs, baseline):
            better = False
            lines.append(
                f"window {w.index}: fallback also breaks {', '.join(rules.breaches(theirs, baseline))}"
            )
    return better, lines
