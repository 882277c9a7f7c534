"""Rollouts on the real server: the operator's ``tick`` drives them from prediction-log rows
(written here directly; end-to-end traffic through ``serve`` replicas is in tests/serving), and
the ``rollout`` verbs as a user types them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlflow_plugin.cli import main
from mlflow_plugin.controller import Controller

from helpers import make_versions

HOSTILE = 'it\'s "q" \\ ünï'
POLICY = """
gates: {f1: {threshold: 0.4}}
rollout: {min_requests: 20, inconclusive_limit: 0, failure_limit: 0}
"""


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture()
def traffic(tmp_path: Path):
    """Write prediction-log rows: ``traffic(model, version, route, n, at=..., errors=...)``."""
    from sqlalchemy import MetaData, create_engine

    from mlflow_plugin.serving._prediction_log import prediction_table

    uri = f"sqlite:///{tmp_path / 'predictions.db'}"
    engine = create_engine(uri)
    table = prediction_table(MetaData())
    table.metadata.create_all(engine)

    def write(model: str, version: str, route: str, n: int, *, at: float, errors: int = 0) -> None:
        rows = [
            {
                "request_id": uuid.uuid4().hex,
                "row_index": 0,
                "ts": datetime.fromtimestamp(at + i * 0.001, tz=UTC),
                "model_name": model,
                "model_version": version,
                "route": route,
                "fallback": False,
                "latency_ms": 5.0 + (i % 5),
                "error": "boom" if i < errors else None,
                "guardrail_flags": "",
            }
            for i in range(n)
        ]
        with engine.begin() as conn:
            conn.execute(table.insert(), rows)

    write.uri = uri  # type: ignore[attr-defined]
    (tmp_path / "policy.yaml").write_text(POLICY)
    write.policy = str(tmp_path / "policy.yaml")  # type: ignore[attr-defined]
    yield write
    engine.dispose()


def _pass(traffic, model: str, at: float) -> list[str]:
    """One operator pass in-process with only the tasks a rollout needs (fast)."""
    from mlflow_plugin.monitoring import OutcomeStore
    from mlflow_plugin.operator import Operator
    from mlflow_plugin.policy import Policy

    op = Operator(
        Controller.from_uri(),
        Policy.from_yaml(traffic.policy),
        store=OutcomeStore(traffic.uri),
        models=[model],
        clock=lambda: datetime.fromtimestamp(at, tz=UTC),
    )
    op.tasks = [(name, task) for name, task in op.tasks if name in ("reconcile", "rollout")]
    try:
        return op.tick()[model]
    finally:
        op.store.close()  # type: ignore[union-attr]


def _tick(traffic, model: str, at: float) -> list[str]:
    """``mlflow-plugin tick`` as cron runs it."""
    now = datetime.fromtimestamp(at, tz=UTC).isoformat()
    result = _run(
        "tick", "--model", model, "--predictions", traffic.uri, "--policy", traffic.policy,
        "--now", now, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)[model]


def _events(ctl: Controller, model: str) -> list[tuple[str, str]]:
    return [(e.event_type, e.version) for e in ctl.ledger.events(model)]


def test_canary_walks_to_champion_then_a_failing_canary_is_aborted(tracking_uri, traffic):
    """tick after tick, a healthy canary (hostile name) goes 25 % -> 50 % -> champion, pausing
    when a window has no canary traffic; a canary that raises on 40 % of its requests is
    aborted and the champion is untouched."""
    model = HOSTILE + uuid.uuid4().hex[:6]
    make_versions(tracking_uri, model, 3)
    ctl = Controller.from_uri(tracking_uri)
    ctl.promote(model, "1")
    assert _run("promote", model, "--version", "2", "--strategy", "canary",
                "--steps", "25,50", "--interval", "1m").exit_code == 0  # fmt: skip
    t = time.time()
    traffic(model, "2", "canary", 30, at=t + 1)
    traffic(model, "1", "champion", 60, at=t + 1)
    traffic(model, "1", "champion", 30, at=t + 200)  # no canary rows in the next window yet
    assert any("25% -> 50%" in line for line in _pass(traffic, model, t + 61))
    lines = _pass(traffic, model, t + 122)  # the new window has no canary rows
    state = ctl.rollouts.state(model)  # inconclusive, limit 0: paused with the reason
    assert state.phase == "paused" and "canary v2 0," in state.reason, lines
    assert _run("rollout", "resume", model).exit_code == 0
    traffic(model, "2", "canary", 30, at=t + 130)
    traffic(model, "1", "champion", 40, at=t + 130)
    _pass(traffic, model, t + 250)
    assert ctl.registry.get_model(model).aliases["champion"] == "2"
    kinds = [k for k, _ in _events(ctl, model)]
    assert kinds == [
        "deployment",
        "rollout_started",
        "rollout_step",
        "rollout_paused",
        "rollout_step",  # resumed
        "deployment",
    ]
    assert ctl.ledger.events(model)[-1].strategy == "canary"
    # a failing canary
    ctl.promote(model, "3", strategy="canary", interval_s=60)
    t = time.time()
    traffic(model, "3", "canary", 50, at=t + 1, errors=20)
    traffic(model, "2", "champion", 100, at=t + 1)
    lines = _pass(traffic, model, t + 61)
    assert any("aborted" in line and "error rate" in line for line in lines), lines
    last = ctl.ledger.events(model)[-1]
    assert last.event_type == "rollout_aborted" and last.extra["mlflow_plugin.rollback"] == "true"
    info = ctl.registry.get_model(model)
    assert info.aliases["champion"] == "2" and "canary" not in info.aliases
    assert ctl.verify_ledger(model).ok


def test_no_traffic_pauses_and_blue_green_switches_back(tracking_uri, traffic, model_name):
    """No rows is inconclusive and pauses with the reason; a blue-green preview that passes
    becomes champion in one step, and a failing post-promotion watch switches back."""
    make_versions(tracking_uri, model_name, 2)
    ctl = Controller.from_uri(tracking_uri)
    ctl.promote(model_name, "1")
    ctl.promote(model_name, "2", strategy="blue_green", interval_s=60, keep_previous_s=3600)
    t = time.time()
    lines = _tick(traffic, model_name, t + 61)
    state = ctl.rollouts.state(model_name)
    assert state.phase == "paused" and "not enough traffic" in state.reason, lines
    assert _run("rollout", "resume", model_name).exit_code == 0
    t = time.time()
    traffic(model_name, "2", "preview", 40, at=t + 1)
    traffic(model_name, "1", "champion", 40, at=t + 1)
    _tick(traffic, model_name, t + 61)
    state = ctl.rollouts.state(model_name)
    assert state.phase == "watching" and state.previous == "1"
    assert ctl.registry.get_model(model_name).aliases["champion"] == "2"
    # after the switch: v2 fails where v1 did not
    traffic(model_name, "1", "champion", 40, at=t + 30)
    traffic(model_name, "2", "champion", 40, at=t + 62, errors=15)
    _tick(traffic, model_name, t + 125)
    assert ctl.registry.get_model(model_name).aliases["champion"] == "1"
    kinds = [k for k, _ in _events(ctl, model_name)]
    assert kinds[-3:] == ["deployment", "rollout_aborted", "rollback"]
    assert "post-promotion analysis" in ctl.ledger.events(model_name)[-1].message


def test_rollout_verbs_and_exit_codes(tracking_uri, model_name):
    """status JSON + table, pause/abort need --reason, promote during a rollout is exit 2, bad
    durations and misplaced options are exit 2 with one line, rollout promote cuts over."""
    make_versions(tracking_uri, model_name, 3)
    _run("promote", model_name, "--version", "1")
    for bad in (
        ("--strategy", "canary", "--interval", "soon"),
        ("--strategy", "canary", "--steps", "50,20"),
        ("--strategy", "blue_green", "--steps", "10"),
        ("--watch", "-5m"),
    ):
        result = _run("promote", model_name, "--version", "2", *bad)
        assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert _run("promote", model_name, "--version", "2", "--strategy", "canary").exit_code == 0
    status = _run("rollout", "status", model_name)
    assert status.exit_code == 0 and '"weight": 10.0' in status.output and "phase" in status.output
    state = json.loads(_run("status", model_name, "--json").output)["rollout"]
    assert (state["strategy"], state["version"], state["alias"]) == ("canary", "2", {"canary": "2"})
    assert _run("rollout", "pause", model_name).exit_code == 2  # --reason missing
    assert _run("rollout", "pause", model_name, "--reason", "look").exit_code == 0
    refused = _run("promote", model_name, "--version", "3")
    assert refused.exit_code == 2 and "rollout promote" in refused.output
    assert _run("rollout", "promote", model_name).exit_code == 0
    ctl = Controller.from_uri(tracking_uri)
    assert ctl.registry.get_model(model_name).aliases["champion"] == "2"
    none = _run("rollout", "abort", model_name, "--reason", "x")
    assert none.exit_code == 2 and "no rollout" in none.output
    assert _run("rollout", "status", model_name).exit_code == 0


def test_rollout_promote_switches_a_blue_green_preview(tracking_uri, model_name):
    """``rollout promote`` on a blue-green rollout, as typed: the champion moves to the preview
    in one step (deployment, strategy blue_green), the old champion is kept as previous for
    the watch; promote again ends the watch. The ledger holds exactly those events."""
    make_versions(tracking_uri, model_name, 2)
    _run("promote", model_name, "--version", "1")
    started = _run(
        "promote", model_name, "--version", "2", "--strategy", "blue_green", "--keep-previous", "1h"
    )
    assert started.exit_code == 0 and "blue_green rollout" in started.output, started.output
    ctl = Controller.from_uri(tracking_uri)
    assert ctl.registry.get_model(model_name).aliases["preview"] == "2"
    switched = _run("rollout", "promote", model_name, "--reason", "mirror agrees")
    assert switched.exit_code == 0, switched.output
    info = ctl.registry.get_model(model_name)
    assert info.aliases["champion"] == "2" and "preview" not in info.aliases
    state = json.loads(_run("rollout", "status", model_name, "--json").output)
    assert (state["phase"], state["previous"], state["strategy"]) == ("watching", "1", "blue_green")
    assert state["keep_previous_until"] - state["step_started_at"] == pytest.approx(3600, abs=5)
    assert _run("rollout", "promote", model_name).exit_code == 0
    assert ctl.rollouts.state(model_name) is None
    events = [(e.event_type, e.strategy, e.version) for e in ctl.ledger.events(model_name)]
    assert events == [
        ("deployment", "all_at_once", "1"),
        ("rollout_started", "blue_green", "2"),
        ("deployment", "blue_green", "2"),
        ("rollout_step", "blue_green", "2"),
    ]
    switch = ctl.ledger.events(model_name)[2]
    assert switch.from_version == "1" and "mirror agrees" in switch.message


def test_killed_start_is_repaired_by_reconcile(tracking_uri, model_name):
    """kill -9 after the canary alias and tags but before the rollout id: reconcile records the
    interrupted start and removes the half rollout; the champion never moved."""
    make_versions(tracking_uri, model_name, 2)
    ctl = Controller.from_uri(tracking_uri)
    ctl.promote(model_name, "1")
    env = {**os.environ, "MLFLOW_PLUGIN_FAILPOINT": "rollout.before_id"}
    exe = Path(sys.executable).with_name("mlflow-plugin")
    proc = subprocess.run(
        [str(exe), "promote", model_name, "--version", "2", "--strategy", "canary"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 137, proc.stderr
    info = ctl.registry.get_model(model_name)
    assert info.aliases.get("canary") == "2" and ctl.rollouts.state(model_name) is None
    written = ctl.reconcile(model_name)
    assert [e.event_type for e in written] == ["error", "config_change"]
    assert "half-written rollout" in written[1].message
    info = ctl.registry.get_model(model_name)
    assert "canary" not in info.aliases and info.aliases["champion"] == "1"
    assert not [k for k in info.tags if k.startswith("mlflow_plugin.rollout.")]
