"""What a scheduler sees from the ``main`` entry point: a clean rejection is not a crash, a
server that is down fails fast with exit 4."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from mlflow_plugin.testing import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_clean_rejection_finishes_the_run(tracking_uri, model_name, tmp_path, request):
    """`mlflow run -e main` with gates nobody passes: exit 0, run FINISHED, outcome=rejected."""
    if "postgresql" in request.node.name:
        pytest.skip("exit semantics do not depend on the backend; keeps the suite short")
    policy = tmp_path / "strict.yaml"
    policy.write_text("gates:\n  c_index: {threshold: 0.99}\n")
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_EXPERIMENT_NAME": "mlflow_plugin-operator-tests",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        ".",
        "-e",
        "main",
        "--env-manager",
        "local",
        "-P",
        f"model_name={model_name}",
        "-P",
        f"policy={policy}",
        "-P",
        "folds=2",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("mlflow_plugin-operator-tests")
    (run,) = client.search_runs(
        [exp.experiment_id],
        f"tags.`mlflow_plugin.step` = 'main' and tags.`mlflow_plugin.model` = '{model_name}'",
    )
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow_plugin.outcome"] == "rejected"


def test_server_down_exits_4_fast():
    """The entry script against a port nobody listens on: exit 4, one line, in seconds."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}
    env.pop("MLFLOW_RUN_ID", None)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "flows/run.py", "main", "--model-name", "m"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: tracking server")
    assert time.monotonic() - t0 < 60
