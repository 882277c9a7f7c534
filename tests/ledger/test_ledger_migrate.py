"""``verify-ledger MODEL --migrate``: events written before the hash chain existed (no digest,
seq or hash tags) are sealed into the chain, on the real server (docs/ARCHITECTURE.md, "The
ledger")."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from mlflow_plugin.cli import main
from mlflow_plugin.controller import Controller
from mlflow_plugin.ledger._ledger import Ledger

from helpers import make_versions

pytestmark = pytest.mark.integration


def _legacy_event(uri: str, model: str, event: str, version: str, frm: str, ts: int) -> str:
    """An event run as the ledger wrote them before the chain: model tag, no digest/seq/hash."""
    client = MlflowClient(uri)
    exp_id = Ledger(uri).experiment_id()
    run = client.create_run(
        exp_id,
        start_time=ts,
        tags={
            "mlflow_plugin.event": event,
            "mlflow_plugin.model": model,
            "mlflow_plugin.version": version,
            "mlflow_plugin.from_version": frm,
            "mlflow_plugin.actor": "old-release",
            "mlflow_plugin.reason": f"legacy {event} v{version}",
        },
    )
    client.set_terminated(run.info.run_id, "FINISHED", end_time=ts)
    return run.info.run_id


def _tags(uri: str, run_ids: list[str]) -> list[dict[str, str]]:
    client = MlflowClient(uri)
    return [dict(client.get_run(r).data.tags) for r in run_ids]


def verify(*args: str):
    return CliRunner().invoke(main, ["verify-ledger", *args])


@pytest.mark.parametrize("suffix", ["", ' it\'s "q" \\ back'])
def test_legacy_events_are_sealed_then_seen_by_events_verify_and_rollback(
    tracking_uri, model_name, suffix
):
    name = model_name + suffix
    make_versions(tracking_uri, name, 3)
    ctl = Controller.from_uri(tracking_uri)
    now = int(time.time() * 1000) - 60_000
    runs = [
        _legacy_event(tracking_uri, name, "deployment", "1", "", now),
        _legacy_event(tracking_uri, name, "deployment", "2", "1", now + 1000),
    ]
    ctl.registry.set_alias(name, "champion", "2")
    assert ctl.ledger.events(name) == []  # invisible before the migration

    dry = verify(name, "--migrate", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would migrate 2 events" in dry.output and dry.output.count("would tag ") == 2
    assert all("mlflow_plugin.seq" not in t for t in _tags(tracking_uri, runs))

    done = verify(name, "--migrate")
    assert done.exit_code == 0, done.output
    assert "migrated 2 events" in done.output and "chain intact, 2 events" in done.output
    tags = _tags(tracking_uri, runs)
    assert [t["mlflow_plugin.seq"] for t in tags] == ["1", "2"]
    assert tags[1]["mlflow_plugin.prev_hash"] == tags[0]["mlflow_plugin.hash"]
    assert [(e.version, e.from_version) for e in ctl.champion_events(name)] == [
        ("1", ""),
        ("2", "1"),
    ]
    assert ctl.last_known_good(name) == "1"

    again = verify(name, "--migrate", "--json")  # idempotent: nothing written the second time
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["migration"]["writes"] == []
    assert _tags(tracking_uri, runs) == tags

    out = ctl.rollback(name, reason="bad v2")
    assert (out.event.version, out.event.from_version) == ("1", "2")
    assert out.event.extra["mlflow_plugin.seq"] == "3"
    assert ctl.verify_ledger(name).ok


def test_legacy_events_before_an_existing_chain_need_force(tracking_uri, model_name):
    """Chained events already exist: the older events are sealed as the chain's prefix and the
    chain re-linked behind them, only with --force (it rewrites a verified chain)."""
    make_versions(tracking_uri, model_name, 3)
    ctl = Controller.from_uri(tracking_uri)
    legacy = _legacy_event(
        tracking_uri, model_name, "deployment", "1", "", int(time.time() * 1000) - 60_000
    )
    ctl.registry.set_alias(model_name, "champion", "1")
    ctl.promote(model_name, "2")
    ctl.promote(model_name, "3")
    before = ctl.ledger.events(model_name)
    assert [e.version for e in before] == ["2", "3"]

    dry = verify(model_name, "--migrate", "--dry-run")  # shows the re-link, needs no --force
    assert dry.exit_code == 0 and "re-linking 2 chained events" in dry.output, dry.output
    refused = verify(model_name, "--migrate")
    assert refused.exit_code == 2 and "--force" in refused.output
    assert "mlflow_plugin.seq" not in _tags(tracking_uri, [legacy])[0]

    done = verify(model_name, "--migrate", "--force")
    assert done.exit_code == 0, done.output
    assert "re-linking 2 chained events" in done.output and "chain intact, 3 events" in done.output
    events = ctl.ledger.events(model_name)
    assert [(e.version, e.extra["mlflow_plugin.seq"]) for e in events] == [
        ("1", "1"),
        ("2", "2"),
        ("3", "3"),
    ]
    assert events[1].extra["mlflow_plugin.seq_before_migration"] == "1"
    assert verify(model_name, "--migrate", "--force").output.startswith(
        f"{model_name}: nothing to migrate"
    )
    assert ctl.rollback(model_name, reason="bad v3").event.version == "2"
    assert ctl.verify_ledger(model_name).ok


def test_migrate_flags_need_migrate(tracking_uri, model_name):
    make_versions(tracking_uri, model_name, 1)
    result = verify(model_name, "--dry-run")
    assert result.exit_code == 2 and "--migrate" in result.output
