"""The operator's ``triggers`` task: when to retrain the champion, and starting it.

A rule fires on the ``schedule`` (a cron time passed since the champion's promotion), on
``performance`` (the same rule broken in the last ``consecutive_windows`` judged windows) or on
``new_data`` (the fingerprint of the data source changed). Fresh firings (their dedupe key not in
the ledger yet) become one ``retrain_triggered`` event (+ alert) and, with a retrainer, one run of
``main`` through MLflow Projects, unless one is already running or the data is shorter than
``min_history``. See :mod:`mlflow_plugin.operator._tick` for the pass that runs it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow_plugin.errors import BadInput, ConfigError
from mlflow_plugin.operator._alerts import Alert
from mlflow_plugin.policy._cicd import PIPELINE_TAG
from mlflow_plugin.settings import TAG_PREFIX

if TYPE_CHECKING:
    from mlflow_plugin.monitoring import MonitorReport, Window
    from mlflow_plugin.operator._tick import Operator, TickContext
    from mlflow_plugin.policy import PerformanceRules

__all__ = ["Firing", "breached", "run_triggers"]

FINGERPRINT_TAG = TAG_PREFIX + "new_data_fingerprint"


@dataclass(frozen=True)
class Firing:
    """A trigger rule that fired: ``rule``, its dedupe ``key`` and the ``evidence`` (one line)."""

    rule: str
    key: str
    evidence: str


def _judged(report: MonitorReport, rules: PerformanceRules) -> list[Window]:
    return [w for w in report.complete if w.counts.get("matured", 0) >= rules.min_matured]


def breached(
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


def _pipeline(ctx: TickContext) -> Any:
    """The model's pipeline settings stored through the API's ``cicd`` (None: the policy
    file's). A stored document that no longer validates is reported, not guessed at."""
    raw = ctx.extra.get("model_tags", {}).get(PIPELINE_TAG)
    if not raw:
        return None
    from mlflow_plugin.policy._cicd import parse_pipeline

    return parse_pipeline(raw, source=f"{ctx.model}: tag {PIPELINE_TAG}")


def run_triggers(op: Operator, ctx: TickContext) -> None:
    """The ``triggers`` task (see the module docstring)."""
    pipeline = _pipeline(ctx)
    rules = pipeline.triggers if pipeline is not None else op.policy.triggers
    ctx.extra["triggers"] = rules
    ctx.extra["strategy"] = pipeline.strategy if pipeline is not None else None
    if rules is None or ctx.champion is None:
        return
    firings = _firings(op, ctx, rules)
    used = op._used_keys(ctx.model, "retrain_triggered")
    fresh = [f for f in firings if f.key not in used]
    if not fresh:
        return
    _retrain(op, ctx, fresh)


def _firings(op: Operator, ctx: TickContext, rules: Any) -> list[Firing]:
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
        bad = breached(ctx.report, rules)
        if bad is not None:
            windows, breaches = bad
            for rule in sorted(set.intersection(*(set(b) for b in breaches))):
                evidence = "; ".join(
                    f"window {w.index}: {b[rule]}" for w, b in zip(windows, breaches, strict=True)
                )
                out.append(Firing(rule, f"{rule}:v{version}:{windows[-1].key}", evidence))
    if rules.new_data:
        firing = _new_data(op, ctx, rules.new_data)
        if firing is not None:
            out.append(firing)
    return out


def _new_data(op: Operator, ctx: TickContext, source: str) -> Firing | None:
    fingerprint = _fingerprint(source)
    seen = ctx.extra.get("model_tags", {}).get(FINGERPRINT_TAG)
    if seen == fingerprint:
        return None
    op.controller.registry.set_model_tag(ctx.model, FINGERPRINT_TAG, fingerprint)
    if seen is None:  # first sight: remember it, nothing is "new" yet
        ctx.did(f"new_data: watching {source} ({fingerprint[:12]})")
        return None
    return Firing(
        "new_data",
        f"new_data:{fingerprint}",
        f"{source} changed ({seen[:12]} -> {fingerprint[:12]})",
    )


def _retrain(op: Operator, ctx: TickContext, fresh: list[Firing]) -> None:
    assert ctx.champion is not None
    rules = ", ".join(f.rule for f in fresh)
    evidence = "; ".join(f"{f.rule}: {f.evidence}" for f in fresh)
    keys = ",".join(f.key for f in fresh)
    run_id, blocked, skipped = "", "", ""
    parameters: dict[str, str] = {}
    if op.retrainer is not None:
        from mlflow_plugin.operator._retrain import main_parameters

        triggers = ctx.extra.get("triggers") or op.policy.triggers
        assert triggers is not None
        data = triggers.new_data if any(f.rule == "new_data" for f in fresh) else None
        parameters = main_parameters(
            ctx.champion, data=data or triggers.new_data, policy=op.policy_path
        )
        if ctx.extra.get("strategy"):
            parameters["strategy"] = ctx.extra["strategy"]
        skipped = _short_history(parameters, triggers.min_history)
        if not skipped:
            with op.controller.registry.lock(ctx.model, intent={"op": "retrain", "version": ""}):
                blocked = op.retrainer.in_progress(ctx.model) or ""
                if not blocked:
                    run_id = op.retrainer.create_run(ctx.model, rules, evidence)
    message = f"retraining triggered by {rules}: {evidence}"
    if blocked:
        message += f" (a retraining is already running: run {blocked})"
    elif skipped:
        message += f" (not started: {skipped})"
    extra = {"dedupe_keys": keys[:5000], "rules": rules, "retrain_run": run_id or blocked}
    event = op.controller.ledger.record(
        "retrain_triggered",
        ctx.model,
        version=ctx.champion.version,
        message=message[:1000],
        extra=extra,
    )
    ctx.did(f"retrain_triggered: {message}")
    op.alerter.send(
        Alert(
            ctx.model,
            ctx.champion.version,
            "retrain_triggered",
            f"{ctx.model}: {message}",
            {"event_run": event.run_id, "run": run_id or blocked},
        )
    )
    if run_id and op.retrainer is not None:
        launch = op.retrainer.launch(run_id, parameters)
        ctx.did(
            f"retraining run {launch.run_id}: {launch.status}"
            + (f", {launch.outcome}" if launch.outcome else "")
        )


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
    from mlflow_plugin.training._data import load_data

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
