"""``make demo`` on a fresh directory: one champion, one rejected candidate, the evidence."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_demo_on_a_fresh_store(tmp_path):
    """The demo promotes a first champion, rejects the worse candidate, prints status and
    events, and points at `mlflow ui`; everything lands in ./mlflow.db."""
    (tmp_path / "flows").mkdir()
    shutil.copy(ROOT / "flows" / "policy.yaml", tmp_path / "flows" / "policy.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = subprocess.run(
        [sys.executable, "-m", "mlflow_plugin.cli.demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "version 1: promoted; version 2: rejected" in out
    assert "$ mlflow-plugin status rossi-survival" in out and "$ mlflow-plugin events" in out
    status = out.split("$ mlflow-plugin status")[1]
    assert "champion          1" in status and "stage Production  1" in status
    events = out.split("$ mlflow-plugin events")[1]
    assert "deployment  rossi-survival  1" in events and "rejected    rossi-survival  2" in events
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in out
    assert (tmp_path / "mlflow.db").is_file()
    assert "Traceback" not in proc.stderr
