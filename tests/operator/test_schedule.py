"""Schedule, new-data and dedupe rules of ``tick`` against the real server, with an injected
clock and a tiny MLflow project standing in for ``main`` (the real one runs in
test_closed_loop.py)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import pytest

from mlflow_plugin.controller import Controller
from mlflow_plugin.operator import HEARTBEAT_TAG, Operator, OperatorBusy, OperatorLease, Retrainer
from mlflow_plugin.policy import Policy
from mlflow_plugin.testing import count_http_calls

from helpers import make_versions

pytestmark = pytest.mark.integration

RECIPE = {
    "model_kind": "coxph",
    "duration_col": "week",
    "event_col": "arrest",
    "time_col": None,
    "features": None,
    "penalizer": 0.1,
    "holdout": 0.2,
    "horizon": 52.0,
    "buckets": 4,
    "seed": 0,
}


@pytest.fixture()
def tiny_project(tmp_path: Path) -> str:
    """An MLflow project whose ``main`` records its parameters and exits at once."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "MLproject").write_text(
        "name: tiny\nentry_points:\n  main:\n    parameters:\n      data: {type: string}\n"
        '    command: "python -c \'import mlflow; mlflow.set_tag(\\"seen_data\\", \\"{data}\\")\'"\n'
    )
    return str(project)


@pytest.fixture()
def champion(tracking_uri: str, model_name: str, tmp_path: Path) -> Path:
    """A champion with a training recipe; returns the watched data file."""
    data = tmp_path / "new.csv"
    data.write_text("week,arrest\n1,0\n")
    tags = {
        "mlflow_plugin.validation": "passed",
        "mlflow_plugin.backtest": "passed",
        "mlflow_plugin.recipe": json.dumps(RECIPE),
        "mlflow_plugin.data": "rossi",
        "mlflow_plugin.horizon": "52",
    }
    (version,) = make_versions(tracking_uri, model_name, 1, tags)
    Controller.from_uri(tracking_uri).promote(model_name, version)
    return data


def _operator(uri: str, model: str, policy: Policy, project: str, at: str) -> Operator:
    when = datetime.fromisoformat(at).replace(tzinfo=UTC)
    retrainer = Retrainer(uri, project_uri=project, experiment=f"retrain-{model}")
    return Operator(
        Controller.from_uri(uri), policy, retrainer=retrainer, models=[model], clock=lambda: when
    )


def _main_runs(model: str) -> list:
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(f"retrain-{model}")
    return client.search_runs([exp.experiment_id]) if exp else []


def test_month_start_schedule_and_new_data_overlap_into_one_run(
    tracking_uri, model_name, champion, tiny_project
):
    """Nothing before the 1st; at 02:05 on the 1st schedule and new data fire together: one
    retrain_triggered event naming both, one run; the same pass again fires nothing."""
    policy = Policy.from_dict(
        {
            "gates": {"c_index": {"threshold": 0.5}},
            "triggers": {"schedule": "0 2 1 * *", "new_data": str(champion)},
        }
    )
    now = datetime.now(UTC)
    first = datetime(
        now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC
    )  # next month start
    before = (first.replace(hour=1, minute=59)).isoformat()
    at = first.replace(hour=2, minute=5).isoformat()

    actions = _operator(tracking_uri, model_name, policy, tiny_project, before[:16]).tick()[
        model_name
    ]
    assert any("new_data: watching" in a for a in actions)
    assert _main_runs(model_name) == []
    tags = Controller.from_uri(tracking_uri).registry.get_model(model_name).tags
    assert tags[HEARTBEAT_TAG] == datetime.fromisoformat(before).isoformat(timespec="seconds")

    champion.write_text("week,arrest\n1,0\n2,1\n")  # new rows arrive
    actions = _operator(tracking_uri, model_name, policy, tiny_project, at[:16]).tick()[model_name]
    ledger = Controller.from_uri(tracking_uri).ledger
    (event,) = ledger.events(model_name, "retrain_triggered")
    assert event.extra["mlflow_plugin.rules"] == "schedule, new_data"
    assert f"scheduled at {first:%Y-%m-%d} 02:00 UTC" in event.message
    runs = _main_runs(model_name)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["mlflow_plugin.trigger"] == "schedule, new_data"
    assert runs[0].data.tags["seen_data"] == str(champion)  # retrained on the new data
    assert any("FINISHED" in a for a in actions)

    _operator(tracking_uri, model_name, policy, tiny_project, at[:16]).tick()
    assert len(ledger.events(model_name, "retrain_triggered")) == 1
    assert len(_main_runs(model_name)) == 1


def test_a_running_retraining_blocks_a_second(tracking_uri, model_name, champion, tiny_project):
    """A retraining still RUNNING: the new firing is recorded as blocked, no second run."""
    policy = Policy.from_dict(
        {"gates": {"c_index": {"threshold": 0.5}}, "triggers": {"schedule": "* * * * *"}}
    )
    op = _operator(tracking_uri, model_name, policy, tiny_project, "2099-01-01T00:00")
    running = op.retrainer.create_run(model_name, "manual", "a long retraining")  # type: ignore[union-attr]
    op.tick()
    (event,) = op.controller.ledger.events(model_name, "retrain_triggered")
    assert f"already running: run {running}" in event.message
    assert event.extra["mlflow_plugin.retrain_run"] == running
    assert [r.info.run_id for r in _main_runs(model_name)] == [running]


def test_one_operator_per_model(tracking_uri, model_name, champion):
    """A second lease on the same model is refused, naming the holder; released, it is free."""
    registry = Controller.from_uri(tracking_uri).registry
    with OperatorLease(registry, [model_name], ttl=60) as held:
        other = OperatorLease(registry, [model_name], ttl=60)
        other.owner = "operator@elsewhere:1"
        with pytest.raises(OperatorBusy, match=held.owner):
            other.acquire()
        with count_http_calls() as renewal:
            held.renew()
        # Renewing a lease it holds reads the model once, under the lock (not before it too).
        assert renewal.by_endpoint["GET registered-models/get"] == 1, renewal.summary()
        # ... and that read still refuses when another operator took the model meanwhile.
        taken = json.dumps({"owner": "operator@elsewhere:1", "expires": time.time() + 60})
        registry.set_model_tag(model_name, "mlflow_plugin.operator_lease", taken)
        with pytest.raises(OperatorBusy, match="operator@elsewhere:1"):
            held.renew()
        registry.delete_model_tag(model_name, "mlflow_plugin.operator_lease")
        held.held = []  # not ours any more: nothing to release
    OperatorLease(registry, [model_name], ttl=60, kind="tick").acquire().release()
    # A holder on this host (and PID namespace) that died (kill -9) does not block until its
    # lease expires.
    import socket

    from mlflow_plugin._internal.holder import PID_NAMESPACE

    dead = json.dumps(
        {"owner": f"operator@{socket.gethostname()}:999999", "expires": 4e9, "pidns": PID_NAMESPACE}
    )
    registry.set_model_tag(model_name, "mlflow_plugin.operator_lease", dead)
    OperatorLease(registry, [model_name], ttl=60).acquire().release()


def test_operator_process_runs_and_refuses_a_second(tracking_uri, model_name, champion, tmp_path):
    """`mlflow-plugin operator` says what it manages; a second one on the same model exits 1
    naming the first; after Ctrl-C (SQLite) or SIGTERM (PostgreSQL) the model is free again.

    The operator starts with SIGINT ignored, as a shell's background job (and a pytest-xdist
    worker's child) does: it must still stop on both signals."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    cmd = [
        sys.executable,
        "-m",
        "mlflow_plugin.cli",
        "operator",
        "--model",
        model_name,
        "--interval",
        "1",
        "--predictions",
        f"sqlite:///{tmp_path / 'p.db'}",
        "--project",
        str(Path(__file__).parents[2]),
    ]
    # stderr goes to a file, not a pipe: a pipe nobody drains fills up with a pass's log lines
    # on a slow machine and blocks the operator inside a write, so it could not stop.
    log_path = tmp_path / "operator.log"
    with open(log_path, "w") as log_file:
        first = subprocess.Popen(
            cmd,
            env=env,
            stderr=log_file,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    try:
        deadline = time.monotonic() + 120
        while f"managing {model_name}" not in log_path.read_text():
            assert first.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        assert "already managed by operator@" in second.stderr and "Traceback" not in second.stderr
    finally:
        postgres = "postgresql" in os.environ.get("PYTEST_CURRENT_TEST", "")
        stop = signal.SIGTERM if postgres else signal.SIGINT
        first.send_signal(stop)
        try:
            first.wait(120)
        except subprocess.TimeoutExpired:
            first.kill()
            pytest.fail(f"operator did not stop on {stop.name}:\n" + log_path.read_text()[-4000:])
    assert "operator stopping" in log_path.read_text()
    registry = Controller.from_uri(tracking_uri).registry
    deadline = time.monotonic() + 30
    while "mlflow_plugin.operator_lease" in registry.get_model(model_name).tags:
        assert time.monotonic() < deadline
        time.sleep(0.2)
