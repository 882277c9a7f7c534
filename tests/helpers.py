"""Helpers for integration tests: real model versions on the real server."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from mlflow_plugin.registry._adapter import Registry

PASSED = {"mlflow_plugin.validation": "passed", "mlflow_plugin.backtest": "passed"}
FAILED = {"mlflow_plugin.validation": "failed", "mlflow_plugin.backtest": "passed"}


@functools.cache
def logged_model_uri(tracking_uri: str) -> str:
    """Log one tiny scikit-learn model on the server (once per server) and return its URI."""
    import mlflow
    import numpy as np
    from sklearn.dummy import DummyClassifier

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("mlflow_plugin-tests")
    X = np.arange(20, dtype=float).reshape(10, 2)
    y = np.array([0, 1] * 5)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            DummyClassifier(strategy="prior").fit(X, y), name="model", pip_requirements=[]
        )
    return str(info.model_uri)


def make_versions(
    tracking_uri: str, model: str, n: int, tags: dict[str, str] | None = None
) -> list[str]:
    """Register ``n`` versions of ``model`` (same artifacts), tagged ``tags`` (default passed)."""
    registry = Registry(tracking_uri)
    source = logged_model_uri(tracking_uri)
    return [
        registry.register_version(
            model, source, None, dict(PASSED if tags is None else tags)
        ).version
        for _ in range(n)
    ]


def log_own_models(tracking_uri: str, n: int) -> list[str]:
    """Log ``n`` tiny models that no other test shares (safe to delete or tamper with)."""
    import mlflow
    import numpy as np
    from sklearn.dummy import DummyClassifier

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("mlflow_plugin-tests")
    X = np.arange(20, dtype=float).reshape(10, 2)
    y = np.array([0, 1] * 5)
    uris = []
    for i in range(n):
        clf = DummyClassifier(strategy="constant", constant=i % 2).fit(X, y)
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(clf, name="model", pip_requirements=[])
        uris.append(str(info.model_uri))
    return uris


def register_own_artifacts(
    tracking_uri: str, model: str, n: int, sources: list[str] | None = None
) -> list[str]:
    """Register ``n`` versions of ``model`` (tags passed), from ``sources`` (one per version)
    or from a freshly logged model each."""
    registry = Registry(tracking_uri)
    sources = sources or log_own_models(tracking_uri, n)
    return [registry.register_version(model, src, None, dict(PASSED)).version for src in sources]


REPO = Path(__file__).resolve().parents[1]

# Runs CLI commands in one fresh interpreter, then reports exit codes and whether any module
# of mlflow was imported. argv: result file, then one JSON list of argument lists.
_HARNESS = textwrap.dedent(
    """
    import json, sys
    from mlflow_plugin.cli import main
    out, runs = sys.argv[1], json.loads(sys.argv[2])
    codes = []
    for args in runs:
        try:
            main(args, prog_name="mlflow-plugin", standalone_mode=True)
            codes.append(0)
        except SystemExit as exc:
            codes.append(exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1))
    loaded = sorted(m for m in sys.modules if m == "mlflow" or m.startswith("mlflow."))
    with open(out, "w") as fh:
        json.dump({"codes": codes, "mlflow_modules": loaded}, fh)
    """
)


def run_cli_without_mlflow(
    tmp_path: Path, runs: list[list[str]], env: dict[str, str] | None = None
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """Run ``mlflow-plugin`` with each of ``runs`` in one fresh interpreter: its result
    (``codes``: exit codes; ``mlflow_modules``: modules of mlflow it imported) and process."""
    out = tmp_path / f"result-{len(list(tmp_path.iterdir()))}.json"
    base = {k: v for k, v in os.environ.items() if k != "MLFLOW_EXPERIMENT_ID"}
    proc = subprocess.run(
        [sys.executable, "-c", _HARNESS, str(out), json.dumps(runs)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**base, "PYTHONPATH": str(REPO), **(env or {})},
        cwd=tmp_path,
    )
    assert out.exists(), proc.stderr[-3000:]
    return json.loads(out.read_text()), proc
