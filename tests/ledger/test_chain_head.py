"""The chain's head from the newest entries alone agrees with the full check (pure)."""

from __future__ import annotations

from mlflow_plugin.ledger._chain import (
    GENESIS,
    HASH_TAG,
    PREV_HASH_TAG,
    SEQ_TAG,
    ChainEntry,
    event_hash,
    head,
    verify,
)


def chain(n: int, *, start_ms: int = 1_000) -> list[ChainEntry]:
    entries, prev = [], GENESIS
    for seq in range(1, n + 1):
        tags = {"mlflow_plugin.event": "deployment", SEQ_TAG: str(seq), PREV_HASH_TAG: prev}
        run_id, ms = f"run{seq:03d}", start_ms + 1000 * seq
        tags[HASH_TAG] = event_hash(run_id, ms, tags)
        entries.append(ChainEntry(run_id, ms, tags))
        prev = tags[HASH_TAG]
    return entries


def test_head_of_the_newest_entries_is_the_full_checks_head():
    entries = chain(40)
    full = verify("m", entries)
    assert full.ok and full.head_seq == 40
    for window in (1, 3, 40):
        newest = sorted(entries, key=lambda e: -e.start_ms)[:window]
        found = head("m", newest)
        assert (found.head_seq, found.head_hash) == (full.head_seq, full.head_hash)


def test_a_fork_at_the_head_picks_what_the_full_check_picks():
    entries = chain(5)
    rival_tags = {**entries[-1].tags, "mlflow_plugin.reason": "second writer"}
    rival_tags[HASH_TAG] = event_hash("run999", entries[-1].start_ms - 5, rival_tags)
    forked = [*entries, ChainEntry("run999", entries[-1].start_ms - 5, rival_tags)]
    full = verify("m", forked)
    assert not full.ok and any("fork at seq 5" in p for p in full.problems)
    found = head("m", sorted(forked, key=lambda e: -e.start_ms)[:3])
    assert (found.head_seq, found.head_hash) == (5, full.head_hash) == (5, rival_tags[HASH_TAG])


def test_deleted_and_unchained_entries_are_not_a_head():
    entries = chain(3)
    deleted = ChainEntry("gone", 99_999, {**entries[-1].tags, SEQ_TAG: "9"}, deleted=True)
    legacy = ChainEntry("old", 99_998, {"mlflow_plugin.event": "deployment"})
    found = head("m", [deleted, legacy, *entries[-2:]])
    assert (found.head_seq, found.head_hash) == (3, entries[-1].tags[HASH_TAG])
    assert head("m", [legacy]).head_seq == 0
