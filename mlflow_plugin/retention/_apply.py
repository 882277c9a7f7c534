"""Applying retention to one model (docs/ARCHITECTURE.md, "Retention and doctor").

Order, so that a run killed anywhere never leaves a version deleted without its archive:

1. plan (read-only); a dry run stops here;
2. archive every version to delete and verify it (idempotent: a verified archive is reused);
3. under the model's lock: plan again (a promotion may have happened meanwhile), record one
   ``retention`` event listing the archives, the versions about to be deleted and the bytes
   they free;
4. delete those versions, then the artifacts no surviving version uses.

A run killed after step 3 is completed by the next run (same plan, archives reused); its event
names the unfinished one in ``mlflow_plugin.resumes``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlflow_plugin._internal.failpoint import failpoint
from mlflow_plugin.controller import Controller
from mlflow_plugin.policy import MinMetric, Policy, RetentionPolicy
from mlflow_plugin.retention._archive import (
    ArchiveRecord,
    _scope,
    archive_version,
    artifact_bytes,
    delete_artifacts,
)
from mlflow_plugin.retention._plan import (
    CHAMPION_EVENTS,
    Decision,
    VersionFacts,
    plan_retention,
    recent_champions,
)
from mlflow_plugin.settings import TAG_PREFIX, actor
from mlflow_plugin.types import CHAMPION, Event, VersionInfo, check_model_name

__all__ = [
    "MAX_DELETIONS_PER_RUN",
    "RetentionReport",
    "apply_retention",
    "recorded_archive_uri",
    "retention_task",
]


def _complete_interrupted(controller: Controller, model: str, lock: Any) -> None:
    """Let the controller record what a dead holder of the lock was doing (as any operation
    does before its own work)."""
    controller._recover(model, lock)


#: Deletions per run (one ledger event holds them all); the rest waits for the next run.
MAX_DELETIONS_PER_RUN = 50
_GATE_RUN_TAGS = (TAG_PREFIX + "gate_report", TAG_PREFIX + "backtest_report")


@dataclass
class RetentionReport:
    """What one retention run decided and did."""

    model: str
    dry_run: bool
    decisions: list[Decision]
    sizes: dict[str, int] = field(default_factory=dict)
    archived: dict[str, ArchiveRecord] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    bytes_reclaimed: int = 0
    event: Event | None = None

    @property
    def to_delete(self) -> list[str]:
        return [d.version for d in self.decisions if d.action == "delete"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "dry_run": self.dry_run,
            "versions": [
                {
                    "version": d.version,
                    "action": d.action,
                    "reason": d.reason,
                    "protected": d.protected,
                    "bytes": self.sizes.get(d.version),
                }
                for d in self.decisions
            ],
            "archived": {
                v: {"uri": r.uri, "tree_sha256": r.tree_sha256} for v, r in self.archived.items()
            },
            "deleted": self.deleted,
            "bytes_reclaimed": self.bytes_reclaimed,
            "event_run_id": self.event.run_id if self.event else None,
        }


def apply_retention(
    controller: Controller,
    model: str,
    policy: Policy | RetentionPolicy,
    *,
    dry_run: bool = False,
    now_ms: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> RetentionReport:
    """Archive and delete the versions of ``model`` the policy's ``retention`` rules select.

    The operator calls this on its schedule; ``mlflow-plugin retention`` is the same call.

    Args:
        controller: gives the registry (a real :class:`~mlflow_plugin.registry._adapter.Registry`:
            archives need its artifact access) and the ledger.
        policy: a policy, or its ``retention`` section.
        dry_run: decide and report, change nothing.
        now_ms: the time ages and the protect window are measured at (default: now).
        progress: called with one line per archived or deleted version.

    Raises:
        ArchiveError: an archive could not be written or verified (nothing was deleted).
        ConfigError: the policy deletes but has no ``archive_uri``.
    """
    rules = policy.retention if isinstance(policy, Policy) else policy
    check_model_name(model)
    note = progress or (lambda _line: None)
    # The real adapter: archives need its artifact access (download_uri, delete_version).
    registry: Any = controller.registry
    ledger = controller.ledger
    now = int(time.time() * 1000) if now_ms is None else now_ms
    versions, decisions = _plan(controller, model, rules, now)
    report = RetentionReport(model, dry_run, decisions)
    doomed = [versions[v] for v in report.to_delete][:MAX_DELETIONS_PER_RUN]
    for v in doomed:
        uri = registry.artifact_uri(model, v.version)
        report.sizes[v.version] = artifact_bytes(uri, registry.uri, _scope(registry, uri))
    if dry_run or not doomed:
        return report
    assert rules.archive_uri is not None  # the policy loader requires it when rules delete
    for v in doomed:
        report.archived[v.version] = archive_version(registry, v, rules.archive_uri)
        note(f"archived {model} version {v.version} -> {report.archived[v.version].uri}")
    failpoint("retention.after_archive")
    with registry.lock(model, intent={"op": "retention", "actor": actor()}) as lock:
        _complete_interrupted(controller, model, lock)
        # Promotions may have happened while we archived: only what is still to delete goes.
        versions, decisions = _plan(
            controller, model, rules, int(time.time() * 1000) if now_ms is None else now_ms
        )
        still = {d.version for d in decisions if d.action == "delete"}
        doomed = [v for v in doomed if v.version in still]
        report.decisions = decisions
        if not doomed:
            return report
        reclaim = _reclaimable(registry, doomed, versions)
        expected = sum(report.archived[v].bytes for v in reclaim.values())
        champion = registry.get_model(model).aliases.get(CHAMPION, "")
        report.event = ledger.record(
            "retention",
            model,
            version="",
            from_version=champion,
            message=(
                f"archived and deleted {len(doomed)} version(s): "
                f"{', '.join(v.version for v in doomed)}; {expected} bytes reclaimed"
            ),
            extra=_event_tags(
                rules.archive_uri, report, doomed, expected, _unfinished(ledger, model, versions)
            ),
        )
        failpoint("retention.after_record")
        for i, v in enumerate(doomed):
            registry.delete_version(model, v.version)
            report.deleted.append(v.version)
            note(f"deleted {model} version {v.version}")
            if i == 0:
                failpoint("retention.after_first_delete")
        for uri, owner in reclaim.items():
            delete_artifacts(uri, registry.uri, _scope(registry, uri))
            report.bytes_reclaimed += report.archived[owner].bytes
    return report


def _plan(
    controller: Controller, model: str, rules: RetentionPolicy, now_ms: int
) -> tuple[dict[str, VersionInfo], list[Decision]]:
    registry = controller.registry
    info = registry.get_model(model)
    versions = {v.version: v for v in registry.list_versions(model)}
    aliases: dict[str, list[str]] = {}
    for alias, version in info.aliases.items():
        aliases.setdefault(version, []).append(alias)
    recent = recent_champions(
        controller.ledger.events(model, event_types=CHAMPION_EVENTS), rules.protect_window_s, now_ms
    )
    metric_names = {m for r in rules.rules if isinstance(r, MinMetric) for m, _ in r.bounds}
    facts = [
        VersionFacts(
            version=v.version,
            created_ms=v.created_ms,
            aliases=tuple(aliases.get(v.version, ())),
            metrics=_metrics(registry, v, metric_names) if metric_names else {},
        )
        for v in versions.values()
    ]
    return versions, plan_retention(rules, facts, recent, now_ms)


def _metrics(registry: Any, version: VersionInfo, names: set[str]) -> dict[str, float]:
    """The version's metrics: from its validation and backtest runs (linked by tags), then
    from the run that logged it; the first run that has a metric wins."""
    from mlflow_plugin.errors import NotFound
    from mlflow_plugin.mlflow_io._client import wrap_mlflow_errors

    found: dict[str, float] = {}
    run_ids = [version.tags.get(t) for t in _GATE_RUN_TAGS] + [version.run_id]
    for run_id in filter(None, run_ids):
        try:
            with wrap_mlflow_errors(f"run {run_id}", registry.uri):
                metrics = registry.client.get_run(run_id).data.metrics
        except NotFound:
            continue
        for name in names - set(found):
            if name in metrics:
                found[name] = float(metrics[name])
    return found


def _reclaimable(
    registry: Any, doomed: list[VersionInfo], versions: dict[str, VersionInfo]
) -> dict[str, str]:
    """Artifact locations nothing else uses once ``doomed`` are gone -> one doomed version that
    stored them. Shared means: a version of any model registered from the same source, or a
    remaining version of this model whose files are at the same location."""
    doomed_keys = {(v.name, v.version) for v in doomed}
    survivors = [v for v in versions.values() if (v.name, v.version) not in doomed_keys]
    kept_at = {registry.artifact_uri(v.name, v.version) for v in survivors}
    out: dict[str, str] = {}
    for v in doomed:
        if not v.source:
            continue
        users = registry.versions_with_source(v.source)
        location = registry.artifact_uri(v.name, v.version)
        if location not in kept_at and all((u.name, u.version) in doomed_keys for u in users):
            out.setdefault(location, v.version)
    return out


def _unfinished(ledger: Any, model: str, versions: dict[str, VersionInfo]) -> str:
    """The run id of an earlier retention event whose deletions did not all happen."""
    for event in reversed(ledger.events(model, "retention")):
        listed = event.extra.get(TAG_PREFIX + "deleted", "")
        if any(v in versions for v in listed.split(",") if v):
            return event.run_id
    return ""


def recorded_archive_uri(ledger: Any, model: str, version: str) -> str | None:
    """The ``archive_uri`` of the latest ``retention`` event that archived ``version`` of
    ``model`` (what ``retention-restore`` reads when no location is given), None if none did."""
    for event in reversed(ledger.events(model, "retention")):
        try:
            archived = json.loads(event.extra.get(TAG_PREFIX + "archived") or "{}")
        except ValueError:
            continue
        uri = event.extra.get(TAG_PREFIX + "archive_uri")
        if isinstance(archived, dict) and version in archived and uri:
            return str(uri)
    return None


def _event_tags(
    archive_uri: str,
    report: RetentionReport,
    doomed: list[VersionInfo],
    reclaimed: int,
    resumes: str,
) -> dict[str, str]:
    tags = {
        "archive_uri": archive_uri,
        "archived": json.dumps(
            {v.version: report.archived[v.version].tree_sha256 for v in doomed}, sort_keys=True
        ),
        "deleted": ",".join(v.version for v in doomed),
        "bytes_reclaimed": str(reclaimed),
    }
    if resumes:
        tags["resumes"] = resumes
    return tags


def retention_task(
    controller: Controller, policy: Policy | RetentionPolicy, *, every_s: float = 86400.0
) -> Callable[[Any], None]:
    """A task for the operator's pass: ``ctx`` has ``model`` and ``did(line)``.

    Runs :func:`apply_retention` for a model at most once per ``every_s`` seconds (per
    process), and only when the policy can delete at all.
    """
    rules = policy.retention if isinstance(policy, Policy) else policy
    last: dict[str, float] = {}

    def task(ctx: Any) -> None:
        if not rules.can_delete or time.monotonic() - last.get(ctx.model, -every_s) < every_s:
            return
        last[ctx.model] = time.monotonic()
        report = apply_retention(controller, ctx.model, rules)
        if report.deleted:
            ctx.did(
                f"retention: archived and deleted {', '.join(report.deleted)} "
                f"({report.bytes_reclaimed} bytes reclaimed)"
            )

    return task
