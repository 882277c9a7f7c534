"""``mlflow run … -b mlflow_plugin``: a real ``mlflow run`` subprocess against a closed port
(one line, exit 4, in bounded time) and against the live server (the run works as with MLflow's
local backend)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mlflow_plugin.testing import free_port
from mlflow_plugin.training._project_backend import check_server

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
MLPROJECT = """\
name: tiny
entry_points:
  main:
    parameters:
      x: {type: string, default: "1"}
    command: "python -c \\"import mlflow, sys; mlflow.log_param('x', sys.argv[1])\\" {x}"
"""


def mlflow_run(project: Path, uri: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")
    }
    env.update(MLFLOW_TRACKING_URI=uri, PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    return subprocess.run(
        [
            str(BIN / "mlflow"),
            "run",
            str(project),
            "-e",
            "main",
            "-b",
            "mlflow_plugin",
            "--env-manager",
            "local",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=180,  # MLflow's own retries alone would take about four minutes
        env=env,
    )


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    (tmp_path / "MLproject").write_text(MLPROJECT)
    return tmp_path


def test_server_down_is_one_line_and_exit_4(project):
    uri = f"http://alice:hunter2@127.0.0.1:{free_port()}"
    result = mlflow_run(project, uri)
    assert result.returncode == 4, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "could not be reached" in lines[0], result.stderr
    assert "http://***@127.0.0.1" in lines[0] and "hunter2" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_live_server_runs_like_the_local_backend(project, mlflow_server):
    result = mlflow_run(project, mlflow_server.uri, "-P", "x=42")
    assert result.returncode == 0, result.stderr
    client = MlflowClient(mlflow_server.uri)
    runs = client.search_runs(["0"], "params.x = '42'")
    assert runs, result.stderr
    run = runs[0]
    assert run.info.status == "FINISHED"
    # MLflow's local backend ran it (and records itself as the backend)
    assert run.data.tags["mlflow.project.backend"] in ("local", "mlflow_plugin")
    assert run.data.tags["mlflow.project.entryPoint"] == "main"


def test_check_server_ignores_local_stores_and_accepts_any_answer(mlflow_server, tmp_path):
    assert check_server(f"sqlite:///{tmp_path}/mlflow.db") is None
    assert check_server(str(tmp_path)) is None
    assert check_server(mlflow_server.uri) is None
    assert "could not be reached" in (check_server(f"http://127.0.0.1:{free_port()}", 2) or "")
