"""Every MLproject entry point end to end: ``mlflow run . -e NAME --env-manager local`` from the
repository root against the real server (a few subprocesses; the logic is tested in-process)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, NamedTuple

import mlflow
import pytest
from conftest import EXPERIMENT

from mlflow_plugin.ledger._ledger import Ledger
from mlflow_plugin.registry._adapter import Registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
_RUN_ID = re.compile(r"Run \(ID '([0-9a-f]+)'\)")


class Started(NamedTuple):
    """A started ``mlflow run`` and the files its output goes to."""

    proc: subprocess.Popen[str]
    stdout: IO[str]
    stderr: IO[str]


def start_mlflow_run(uri: str, entry: str, **params: object) -> Started:
    """Start ``mlflow run . -e entry -P k=v ...`` in the repository root (output to temporary
    files, read by :func:`finish_mlflow_run`)."""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_EXPERIMENT_NAME": EXPERIMENT,
        "MLFLOW_PLUGIN_ACTOR": "pytest",
        # the entry point's `python` must be this environment's interpreter
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("MLFLOW_EXPERIMENT_ID", None)  # mlflow.set_experiment() exports it in this process
    cmd = [sys.executable, "-m", "mlflow", "run", ".", "-e", entry, "--env-manager", "local"]
    for key, value in params.items():
        cmd += ["-P", f"{key}={value}"]
    # files, not pipes: a process started next to others never blocks on a full pipe
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    return Started(
        subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err, text=True), out, err
    )


def finish_mlflow_run(started: Started) -> tuple[subprocess.CompletedProcess[str], str]:
    """Wait for a :func:`start_mlflow_run` process; returns it as a completed process and the
    run id it reported."""
    proc = started.proc
    try:
        proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    texts = []
    for stream in (started.stdout, started.stderr):
        stream.seek(0)
        texts.append(stream.read())
        stream.close()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, texts[0], texts[1])
    found = _RUN_ID.findall(done.stdout + done.stderr)
    return done, found[-1] if found else ""


def mlflow_run(
    uri: str, entry: str, **params: object
) -> tuple[subprocess.CompletedProcess[str], str]:
    """``mlflow run . -e entry -P k=v ...`` in the repository root; returns the process and
    the run id it reported."""
    return finish_mlflow_run(start_mlflow_run(uri, entry, **params))


def _ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_every_entry_point(flows_uri, model_name):
    """train -> validate + backtest (at once) -> promote -> main -> rollback, each as its own
    `mlflow run`, each run tagged with its step and model."""
    client = mlflow.MlflowClient()
    registry = Registry(flows_uri)

    proc, train_run = mlflow_run(flows_uri, "train", model_name=model_name, penalizer=0)
    _ok(proc)
    assert registry.get_model(model_name).aliases == {"challenger": "1"}

    # validate and backtest judge the challenger independently (each sets its own version
    # tags): both processes at once, as two CI jobs would run them.
    validating = start_mlflow_run(flows_uri, "validate", model_name=model_name, data="rossi")
    backtesting = start_mlflow_run(flows_uri, "backtest", model_name=model_name)
    try:
        proc, validate_run = finish_mlflow_run(validating)
    except BaseException:  # a timeout: the backtest must not outlive the test
        backtesting.proc.kill()
        backtesting.proc.wait()
        raise
    backtest_proc, backtest_run = finish_mlflow_run(backtesting)
    _ok(proc)
    metrics = client.get_run(validate_run).data.metrics
    assert 0.6 < metrics["c_index"] < 0.7  # rossi: the training rows and the holdout

    _ok(backtest_proc)
    assert [m.step for m in client.get_metric_history(backtest_run, "f1")] == [1, 2, 3, 4]

    proc, promote_run = mlflow_run(flows_uri, "promote", model_name=model_name)
    _ok(proc)
    assert registry.get_model(model_name).aliases["champion"] == "1"

    # The same recipe through main: an identical candidate, scored against the champion on the
    # holdout neither was trained on (candidate - champion = 0), at least as good: promoted.
    proc, main_run = mlflow_run(flows_uri, "main", model_name=model_name, penalizer=0)
    _ok(proc)
    assert registry.get_model(model_name).aliases["champion"] == "2"
    children = client.search_runs(
        [client.get_run(main_run).info.experiment_id], f"tags.`mlflow.parentRunId` = '{main_run}'"
    )
    assert sorted(r.data.tags["mlflow_plugin.step"] for r in children) == [
        "backtest",
        "promote",
        "train",
        "validate",
    ]

    proc, rollback_run = mlflow_run(
        flows_uri, "rollback", model_name=model_name, reason="pytest: roll back"
    )
    _ok(proc)
    assert registry.get_model(model_name).aliases["champion"] == "1"

    steps = {
        train_run: "train",
        validate_run: "validate",
        backtest_run: "backtest",
        promote_run: "promote",
        main_run: "main",
        rollback_run: "rollback",
    }
    for run_id, step in steps.items():
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow_plugin.step"] == step
        assert run.data.tags["mlflow_plugin.model"] == model_name
    kinds = [(e.event_type, e.version) for e in Ledger(flows_uri).events(model_name)]
    assert kinds == [("deployment", "1"), ("deployment", "2"), ("rollback", "1")]


def test_entry_script_bad_input_is_one_line_before_registering(flows_uri, model_name):
    """What `mlflow run -e train` executes, with a missing data file: exit 2, one error line,
    no traceback, nothing registered."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": flows_uri}
    cmd = [
        sys.executable,
        "flows/run.py",
        "train",
        "--model-name",
        model_name,
        "--data",
        "/no/such/file.csv",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "error: data file not found: /no/such/file.csv"
    assert "Traceback" not in proc.stderr
    assert not Registry(flows_uri).client.search_model_versions(f"name = '{model_name}'")


def test_validate_bad_horizon_writes_nothing(flows_uri, model_name):
    """`mlflow run -e validate -P horizon=1000` (rossi's follow-up ends at 52): the entry point
    fails with the admissible range before its step starts. The one run is the one `mlflow run`
    made before the script started: FAILED, tagged with the bad input, nothing logged in it."""
    from mlflow_plugin.training import TrainParams, run_train

    run_train(TrainParams(model_name=model_name), tracking_uri=flows_uri)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    before = client.search_runs([experiment.experiment_id], max_results=5000)
    proc, run_id = mlflow_run(flows_uri, "validate", model_name=model_name, horizon=1000)
    assert proc.returncode != 0
    assert "error: horizon: 1000 is outside the follow-up" in proc.stderr
    assert "Traceback" not in proc.stderr
    after = client.search_runs([experiment.experiment_id], max_results=5000)
    assert {r.info.run_id for r in after} - {r.info.run_id for r in before} == {run_id}
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["mlflow_plugin.error"].startswith("bad input: horizon: 1000")
    assert "mlflow_plugin.step" not in run.data.tags
    assert not run.data.metrics and not client.list_artifacts(run_id)
