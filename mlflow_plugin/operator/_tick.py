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
                 run of ``main`` through MLflow Projects

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

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow_plugin._errors import BadInput, ConfigError, MlflowPluginError
from mlflow_plugin._settings import TAG_PREFIX
from mlflow_plugin._types import CHAMPION, FALLBACK
from mlflow_plugin.gates._pipeline import PIPELINE_TAG
from mlflow_plugin.operator._alerts import Alert, Alerter
from mlflow_plugin.operator._rollout import rollout_task
from mlflow_plugin.retention import retention_task

if TYPE_CHECKING:
    from mlflow_plugin._types import Event, VersionInfo
    from mlflow_plugin.controller import Controller
    from mlflow_plugin.gates import PerformanceRules, Policy
    from mlflow_plugin.monitoring import MonitoringRuns, MonitorReport, OutcomeStore, Window
    from mlflow_plugin.operator._retrain import Retrainer

__all__ = ["HEARTBEAT_TAG", "Firing", "Operator", "TickContext", "TickTask", "utc_now"]

_log = logging.getLogger("mlflow_plugin.operator")
DEDUPE_TAG = TAG_PREFIX + "dedupe_keys"
FINGERPRINT_TAG = TAG_PREFIX + "new_data_fingerprint"
#: Registered-model tag: the time of the operator's last pass over the model (ISO-8601, UTC).
HEARTBEAT_TAG = TAG_PREFIX + "operator_heartbeat"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Firing:
    """A trigger rule that fired: ``rule``, its dedupe ``key`` and the ``evidence`` (one line)."""

    rule: str
    key: str
    evidence: str


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
        from mlflow_plugin._errors import RegistryUnavailable

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
        bad = _breached(ctx.report, rules)
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

    def _pipeline(self, ctx: TickContext) -> Any:
        """The model's pipeline settings stored through the API's ``cicd`` (None: the policy
        file's). A stored document that no longer validates is reported, not guessed at."""
        raw = ctx.extra.get("model_tags", {}).get(PIPELINE_TAG)
        if not raw:
            return None
        from mlflow_plugin.gates._pipeline import parse_pipeline

        return parse_pipeline(raw, source=f"{ctx.model}: tag {PIPELINE_TAG}")

    def triggers(self, ctx: TickContext) -> None:
        pipeline = self._pipeline(ctx)
        rules = pipeline.triggers if pipeline is not None else self.policy.triggers
        ctx.extra["triggers"] = rules
        ctx.extra["strategy"] = pipeline.strategy if pipeline is not None else None
        if rules is None or ctx.champion is None:
            return
        firings = self._firings(ctx, rules)
        used = self._used_keys(ctx.model, "retrain_triggered")
        fresh = [f for f in firings if f.key not in used]
        if not fresh:
            return
        self._retrain(ctx, fresh)

    # -- triggers ------------------------------------------------------------------------
    def _firings(self, ctx: TickContext, rules: Any) -> list[Firing]:
        out: list[Firing] = []
        if rules.schedule:
            from croniter import croniter

            due = croniter(rules.schedule, ctx.now).get_prev(datetime)
            promoted = datetime.fromtimestamp(ctx.promoted_ms / 1000, tz=UTC)
            if due > promoted:
                out.append(
                    Firing(
                        "schedule",
                        f"schedule:{due.isoformat()}",
                        f"scheduled at {due:%Y-%m-%d %H:%M} UTC ({rules.schedule})",
                    )
                )
        if ctx.report is not None and ctx.champion is not None and rules.active:
            version = ctx.champion.version
            bad = _breached(ctx.report, rules)
            if bad is not None:
                windows, breaches = bad
                for rule in sorted(set.intersection(*(set(b) for b in breaches))):
                    evidence = "; ".join(
                        f"window {w.index}: {b[rule]}"
                        for w, b in zip(windows, breaches, strict=True)
                    )
                    out.append(Firing(rule, f"{rule}:v{version}:{windows[-1].key}", evidence))
        if rules.new_data:
            firing = self._new_data(ctx, rules.new_data)
            if firing is not None:
                out.append(firing)
        return out

    def _new_data(self, ctx: TickContext, source: str) -> Firing | None:
        fingerprint = _fingerprint(source)
        seen = ctx.extra.get("model_tags", {}).get(FINGERPRINT_TAG)
        if seen == fingerprint:
            return None
        self.controller.registry.set_model_tag(ctx.model, FINGERPRINT_TAG, fingerprint)
        if seen is None:  # first sight: remember it, nothing is "new" yet
            ctx.did(f"new_data: watching {source} ({fingerprint[:12]})")
            return None
        return Firing(
            "new_data",
            f"new_data:{fingerprint}",
            f"{source} changed ({seen[:12]} -> {fingerprint[:12]})",
        )

    def _retrain(self, ctx: TickContext, fresh: list[Firing]) -> None:
        assert ctx.champion is not None
        rules = ", ".join(f.rule for f in fresh)
        evidence = "; ".join(f"{f.rule}: {f.evidence}" for f in fresh)
        keys = ",".join(f.key for f in fresh)
        run_id, blocked, skipped = "", "", ""
        parameters: dict[str, str] = {}
        if self.retrainer is not None:
            from mlflow_plugin.operator._retrain import main_parameters

            triggers = ctx.extra.get("triggers") or self.policy.triggers
            assert triggers is not None
            data = triggers.new_data if any(f.rule == "new_data" for f in fresh) else None
            parameters = main_parameters(
                ctx.champion, data=data or triggers.new_data, policy=self.policy_path
            )
            if ctx.extra.get("strategy"):
                parameters["strategy"] = ctx.extra["strategy"]
            skipped = _short_history(parameters, triggers.min_history)
            if not skipped:
                with self.controller.registry.lock(
                    ctx.model, intent={"op": "retrain", "version": ""}
                ):
                    blocked = self.retrainer.in_progress(ctx.model) or ""
                    if not blocked:
                        run_id = self.retrainer.create_run(ctx.model, rules, evidence)
        message = f"retraining triggered by {rules}: {evidence}"
        if blocked:
            message += f" (a retraining is already running: run {blocked})"
        elif skipped:
            message += f" (not started: {skipped})"
        extra = {"dedupe_keys": keys[:5000], "rules": rules, "retrain_run": run_id or blocked}
        event = self.controller.ledger.record(
            "retrain_triggered",
            ctx.model,
            version=ctx.champion.version,
            message=message[:1000],
            extra=extra,
        )
        ctx.did(f"retrain_triggered: {message}")
        self.alerter.send(
            Alert(
                ctx.model,
                ctx.champion.version,
                "retrain_triggered",
                f"{ctx.model}: {message}",
                {"event_run": event.run_id, "run": run_id or blocked},
            )
        )
        if run_id and self.retrainer is not None:
            launch = self.retrainer.launch(run_id, parameters)
            ctx.did(
                f"retraining run {launch.run_id}: {launch.status}"
                + (f", {launch.outcome}" if launch.outcome else "")
            )

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


def _judged(report: MonitorReport, rules: PerformanceRules) -> list[Window]:
    return [w for w in report.complete if w.counts.get("matured", 0) >= rules.min_matured]


def _breached(
    report: MonitorReport, rules: PerformanceRules
) -> tuple[list[Window], list[dict[str, str]]] | None:
    """The last ``consecutive_windows`` judged windows and their breaches, if every one breaks
    a rule (the same rule need not break in each; triggers intersect them per rule)."""
    judged = _judged(report, rules)
    n = rules.consecutive_windows
    if len(judged) < n:
        return None
    last = judged[-n:]
    breaches = [rules.breaches(w.metrics, report.baseline) for w in last]
    return (last, breaches) if all(breaches) else None


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


def _fingerprint(source: str) -> str:
    """SHA-256 of a local file's bytes; for a URI MLflow can download, of the downloaded copy."""
    path = source.removeprefix("file://")
    if "://" in path:
        import tempfile

        from mlflow.artifacts import download_artifacts

        with tempfile.TemporaryDirectory() as tmp:
            path = download_artifacts(artifact_uri=source, dst_path=tmp)
            return _fingerprint(path)
    if not os.path.isfile(path):
        raise ConfigError(f"triggers.new_data: {source!r} is not a file")
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _short_history(parameters: dict[str, str], min_history: float | None) -> str:
    """Why the data is too short for ``min_history`` (seconds), or '' when it is long enough.

    The span is measured on the recipe's time column: dates/times as such, numbers as days.
    """
    if min_history is None:
        return ""
    time_col = parameters.get("time_col", "none")
    if time_col in ("", "none"):
        return "min_history needs a time column; the recipe has none"
    from mlflow_plugin.flows._data import load_data

    try:
        frame = load_data(parameters["data"]).frame
    except BadInput as exc:
        return f"min_history: {exc}"
    if time_col not in frame.columns:
        return f"min_history: the data has no column {time_col!r}"
    import pandas as pd

    values = frame[time_col].dropna()
    if pd.api.types.is_numeric_dtype(values):
        span = (float(values.max()) - float(values.min())) * 86400.0
    else:
        stamps = pd.to_datetime(values, utc=True, errors="coerce").dropna()
        span = (stamps.max() - stamps.min()).total_seconds() if len(stamps) else 0.0
    if span < min_history:
        return f"the data spans {span / 86400:.0f} days, min_history is {min_history / 86400:.0f}"
    return ""
