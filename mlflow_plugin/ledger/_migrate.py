"""Sealing a model's events written before the hash chain existed into its chain
(``verify-ledger --migrate``; docs/ARCHITECTURE.md, "The ledger"), for :meth:`Ledger.migrate
<mlflow_plugin.ledger._ledger.Ledger.migrate>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlflow_plugin.errors import BadInput, IntegrityError
from mlflow_plugin.ledger._chain import (
    GENESIS,
    HASH_TAG,
    MODEL_DIGEST_TAG,
    PREV_HASH_TAG,
    SEQ_TAG,
    ChainEntry,
    event_hash,
    model_digest,
)
from mlflow_plugin.ledger._chain import verify as verify_entries
from mlflow_plugin.ledger._event_tags import TAGS
from mlflow_plugin.mlflow_io._client import run_tags, wrap_mlflow_errors
from mlflow_plugin.settings import TAG_PREFIX

if TYPE_CHECKING:
    from mlflow_plugin.ledger._ledger import Ledger

__all__ = ["MIGRATED_TAG", "SEQ_BEFORE_TAG", "Migration", "migrate"]

# Set by ``verify-ledger --migrate`` (part of the hash like every mlflow_plugin.* tag): an event
# sealed into the chain after the fact, and an already chained event re-linked behind them (its
# seq before the migration, so an interrupted migration is recomputed identically).
MIGRATED_TAG = TAG_PREFIX + "migrated"
SEQ_BEFORE_TAG = TAG_PREFIX + "seq_before_migration"


def migrate(ledger: Ledger, model: str, *, dry_run: bool = False, force: bool = False) -> Migration:
    """What :meth:`Ledger.migrate <mlflow_plugin.ledger._ledger.Ledger.migrate>` does (see there)."""
    runs = {run.info.run_id: run for run in ledger._model_runs(model)}
    for run in _legacy_runs(ledger, model):
        runs.setdefault(run.info.run_id, run)
    events = [run for run in runs.values() if TAGS["event"] in run.data.tags]

    def start(run: Any) -> int:
        return int(run.info.start_time or 0)

    def original_seq(run: Any) -> int:
        tags = run.data.tags
        text = tags.get(SEQ_BEFORE_TAG) or tags.get(SEQ_TAG, "0")
        return int(text) if text.isascii() and text.isdigit() else 0

    chained = sorted(
        (r for r in events if SEQ_TAG in r.data.tags and MIGRATED_TAG not in r.data.tags),
        key=lambda r: (original_seq(r), start(r), r.info.run_id),
    )
    prefix = sorted(
        (r for r in events if SEQ_TAG not in r.data.tags or MIGRATED_TAG in r.data.tags),
        key=lambda r: (start(r), r.info.run_id),
    )
    if chained:
        first_ms = start(chained[0])
        newer = [r.info.run_id for r in prefix if start(r) > first_ms]
        if newer:
            raise IntegrityError(
                f"{model}: event run(s) {', '.join(newer)} have no chain tags but are newer "
                "than the chain's first event (chain tags removed?); not migrated"
            )
    resuming = any(MIGRATED_TAG in r.data.tags or SEQ_BEFORE_TAG in r.data.tags for r in events)
    pending = [r for r in prefix if MIGRATED_TAG not in r.data.tags]
    plan = Migration(model, legacy=len(pending), sealed=len(prefix) - len(pending))
    if not pending and not resuming:
        return plan
    if not resuming:
        report = verify_entries(
            model,
            [ChainEntry(r.info.run_id, start(r), r.data.tags) for r in chained],
        )
        if not report.ok:
            raise IntegrityError(
                f"{model}: not migrated, the chain is broken: " + "; ".join(report.problems)
            )
    else:
        edited = [
            r.info.run_id
            for r in events
            if HASH_TAG in r.data.tags
            and event_hash(r.info.run_id, start(r), r.data.tags) != r.data.tags[HASH_TAG]
        ]
        if edited:
            raise IntegrityError(f"{model}: not migrated, event run(s) edited: {edited}")
    # The target state, computed from scratch (the same on every run).
    writes: list[tuple[str, dict[str, str]]] = []
    in_prefix = {r.info.run_id for r in prefix}
    prev_hash = GENESIS
    for seq, run in enumerate([*prefix, *chained], start=1):
        tags = dict(run.data.tags)
        want = {MODEL_DIGEST_TAG: model_digest(model), SEQ_TAG: str(seq)}
        if run.info.run_id in in_prefix:
            want[MIGRATED_TAG] = "true"
        elif str(seq) != tags.get(SEQ_TAG) or SEQ_BEFORE_TAG in tags:
            want[SEQ_BEFORE_TAG] = str(original_seq(run))
        want[PREV_HASH_TAG] = prev_hash
        tags.update(want)
        want[HASH_TAG] = tags[HASH_TAG] = event_hash(run.info.run_id, start(run), tags)
        prev_hash = want[HASH_TAG]
        changed = {k: v for k, v in want.items() if run.data.tags.get(k) != v}
        if changed:
            writes.append((run.info.run_id, changed))
            if run.info.run_id not in in_prefix:
                plan.relinked += 1
    plan.writes = [f"{run_id}: {', '.join(sorted(tags))}" for run_id, tags in writes]
    if plan.relinked and not force and not dry_run:
        raise BadInput(
            f"{model}: sealing {len(pending)} older event(s) before the chain re-links its "
            f"{len(chained)} chained event(s) (seq, prev_hash, hash rewritten); "
            "pass --force to do it"
        )
    if dry_run:
        return plan
    # Last event first: until the migration completes, the new prefix is not yet linked.
    for run_id, tags in reversed(writes):
        with wrap_mlflow_errors("migrate the ledger", ledger.uri):
            ledger.client.log_batch(run_id, tags=run_tags(ledger.client, tags))
    plan.done = True
    return plan


def _legacy_runs(ledger: Ledger, model: str) -> list[Any]:
    """Event runs of ``model`` written before the chain existed: found by the model tag
    (they have no digest tag), the name matched exactly here. The name is quoted with the
    quote character it does not contain (MLflow's filter parser has no escapes); a name
    with both is found among every event run."""
    if "'" not in model:
        clause = f"tags.`{TAGS['model']}` = '{model}'"
    elif '"' not in model:
        clause = f'tags.`{TAGS["model"]}` = "{model}"'
    else:
        clause = f"tags.`{TAGS['event']}` LIKE '%'"
    return [
        run
        for run in ledger._search([clause])
        if run.data.tags.get(TAGS["model"]) == model
        and TAGS["event"] in run.data.tags
        and MODEL_DIGEST_TAG not in run.data.tags
    ]


@dataclass
class Migration:
    """What :meth:`Ledger.migrate` found and did: ``legacy`` events not yet in the chain,
    ``sealed`` already migrated, ``relinked`` chained events re-linked behind them, ``writes``
    one line per run written (or to be written, with ``done`` False on a dry run)."""

    model: str
    legacy: int = 0
    sealed: int = 0
    relinked: int = 0
    writes: list[str] = field(default_factory=list)
    done: bool = False

    def summary(self) -> str:
        if not self.writes:
            return f"{self.model}: nothing to migrate ({self.sealed} events migrated earlier)"
        verb = "migrated" if self.done else "would migrate"
        relinked = f", re-linking {self.relinked} chained events" if self.relinked else ""
        return (
            f"{self.model}: {verb} {self.legacy} events written before the chain{relinked} "
            f"({len(self.writes)} runs {'tagged' if self.done else 'to tag'})"
        )
