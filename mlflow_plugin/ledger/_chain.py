"""The ledger's hash chain, as pure functions (no mlflow): how an event is hashed and how a
model's chain is checked. Used by the real ledger and the in-memory one alike.

Each event carries ``mlflow_plugin.seq`` (1, 2, 3 … per model), ``mlflow_plugin.prev_hash``
(the previous event's hash, 64 zeros for the first) and ``mlflow_plugin.hash``: SHA-256 over the
canonical JSON of the event's run id, start time and every ``mlflow_plugin.*`` tag but the hash
itself. Editing a tag, deleting or reordering events, or two writers appending at the same
place (a fork) all show up in :func:`verify`. See docs/ARCHITECTURE.md, "The ledger".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mlflow_plugin.settings import TAG_PREFIX

__all__ = [
    "GENESIS",
    "HASH_TAG",
    "MODEL_DIGEST_TAG",
    "PREV_HASH_TAG",
    "SEQ_TAG",
    "ChainEntry",
    "ChainReport",
    "event_hash",
    "head",
    "model_digest",
    "verify",
]

SEQ_TAG = TAG_PREFIX + "seq"
PREV_HASH_TAG = TAG_PREFIX + "prev_hash"
HASH_TAG = TAG_PREFIX + "hash"
MODEL_DIGEST_TAG = TAG_PREFIX + "model_digest"
GENESIS = "0" * 64


def model_digest(model: str) -> str:
    """A filter-safe key for a model name (hex only: no quoting inside MLflow filter strings)."""
    return hashlib.sha256(model.encode("utf-8")).hexdigest()[:40]


def event_hash(run_id: str, start_ms: int, tags: Mapping[str, str]) -> str:
    """SHA-256 of an event's canonical fields (``tags`` must already hold seq and prev_hash)."""
    body = {k: v for k, v in tags.items() if k.startswith(TAG_PREFIX) and k != HASH_TAG}
    canonical = json.dumps(
        {"run_id": run_id, "start_ms": int(start_ms), "tags": body},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainEntry:
    """One event run as the chain check sees it (``deleted``: the run is in MLflow's trash)."""

    run_id: str
    start_ms: int
    tags: Mapping[str, str]
    deleted: bool = False


@dataclass(frozen=True)
class ChainReport:
    """The result of checking one model's ledger: ``ok`` when no problem was found."""

    model: str
    ok: bool
    events: int
    problems: list[str] = field(default_factory=list)
    head_seq: int = 0
    head_hash: str = GENESIS
    unchained: int = 0

    def summary(self) -> str:
        if self.ok:
            legacy = f" ({self.unchained} older events before the chain)" if self.unchained else ""
            return f"{self.model}: ledger chain intact, {self.events} events{legacy}"
        return f"{self.model}: ledger chain BROKEN: " + "; ".join(self.problems)


def _seq(tags: Mapping[str, str]) -> int | None:
    text = tags.get(SEQ_TAG, "")
    return int(text) if text.isascii() and text.isdigit() else None


def verify(model: str, entries: Iterable[ChainEntry]) -> ChainReport:
    """Check the chain of ``model``'s events (any order; deleted runs included if known)."""
    problems: list[str] = []
    chained: list[ChainEntry] = []
    unchained: list[ChainEntry] = []
    for entry in entries:
        if entry.deleted:
            problems.append(
                f"event run {entry.run_id} (seq {entry.tags.get(SEQ_TAG, '?')}) was deleted"
            )
            continue
        (chained if _seq(entry.tags) is not None else unchained).append(entry)
    chained.sort(key=lambda e: (_seq(e.tags) or 0, e.start_ms, e.run_id))
    first_chained_ms = min((e.start_ms for e in chained), default=None)
    legacy = 0
    for entry in unchained:
        if first_chained_ms is not None and entry.start_ms > first_chained_ms:
            problems.append(
                f"event run {entry.run_id} has no seq (chain tags removed or never set)"
            )
        else:
            legacy += 1
    by_seq: dict[int, list[ChainEntry]] = {}
    for entry in chained:
        by_seq.setdefault(_seq(entry.tags) or 0, []).append(entry)
    for seq, group in sorted(by_seq.items()):
        if len(group) > 1:
            runs = ", ".join(e.run_id for e in group)
            problems.append(f"fork at seq {seq}: {len(group)} events ({runs})")
    expected_seq, prev_hash, prev_ms = 1, GENESIS, None
    hashes = {e.tags.get(HASH_TAG, ""): e for e in chained}
    for seq in sorted(by_seq):
        group = by_seq[seq]
        if seq != expected_seq:
            if seq > expected_seq:
                missing = (
                    f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}-{seq - 1}"
                )
                problems.append(f"seq {missing} missing (deleted event?)")
            else:
                problems.append(f"seq {seq} out of order")
        for entry in group:
            recorded = entry.tags.get(HASH_TAG, "")
            if event_hash(entry.run_id, entry.start_ms, entry.tags) != recorded:
                problems.append(f"seq {seq} (run {entry.run_id}) was edited: hash does not match")
            if entry.tags.get(PREV_HASH_TAG, "") != prev_hash and len(group) == 1:
                if seq == expected_seq:
                    pointed = hashes.get(entry.tags.get(PREV_HASH_TAG, ""))
                    where = f"seq {pointed.tags.get(SEQ_TAG)}" if pointed else "an unknown event"
                    problems.append(f"seq {seq} does not follow seq {seq - 1} (points at {where})")
            if prev_ms is not None and entry.start_ms < prev_ms - 1000 * 60 * 10:
                problems.append(f"seq {seq} is older than seq {seq - 1} (reordered?)")
        # With a fork, follow the first branch; the fork itself is already reported.
        head = group[0]
        prev_hash, prev_ms = head.tags.get(HASH_TAG, ""), head.start_ms
        expected_seq = seq + 1
    head_seq = max(by_seq, default=0)
    return ChainReport(
        model=model,
        ok=not problems,
        events=len(chained) + legacy,
        problems=problems,
        head_seq=head_seq,
        head_hash=prev_hash if chained else GENESIS,
        unchained=legacy,
    )


def head(model: str, newest: Iterable[ChainEntry]) -> ChainReport:
    """The head of ``model``'s chain from its newest entries only (a bounded read): the
    ``head_seq`` and ``head_hash`` that :func:`verify` would report, nothing else checked
    (``ok`` says nothing about the older events; :func:`verify` checks them all)."""
    chained = [e for e in newest if not e.deleted and _seq(e.tags) is not None]
    if not chained:
        return ChainReport(model=model, ok=True, events=0)
    top = max(_seq(e.tags) or 0 for e in chained)
    # The same pick as verify's on a fork: the first by start time, then run id.
    first = min((e for e in chained if _seq(e.tags) == top), key=lambda e: (e.start_ms, e.run_id))
    return ChainReport(
        model=model,
        ok=True,
        events=len(chained),
        head_seq=top,
        head_hash=first.tags.get(HASH_TAG, ""),
    )
