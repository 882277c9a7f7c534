"""Fixtures: a real ``mlflow server`` subprocess per backend, started once per session.

SQLite always; PostgreSQL too when ``MLFLOW_PLUGIN_TEST_POSTGRES`` holds a URI (a fresh
database is created for the session and dropped afterwards).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from _servers import BACKENDS, _start

from mlflow_plugin.testing import MlflowServer


@pytest.fixture(scope="session", params=BACKENDS)
def mlflow_server(request: pytest.FixtureRequest) -> MlflowServer:
    """A running ``mlflow server`` (one per backend, shared by the session)."""
    return _start(request.param, request)


@pytest.fixture()
def tracking_uri(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``MLFLOW_TRACKING_URI`` pointed at the session's server for this test."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    monkeypatch.setenv("MLFLOW_PLUGIN_ACTOR", "pytest")
    mlflow.set_tracking_uri(mlflow_server.uri)
    mlflow.set_registry_uri(mlflow_server.uri)
    yield mlflow_server.uri
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]


@pytest.fixture()
def model_name() -> str:
    """A registered-model name no other test uses."""
    return f"model-{uuid.uuid4().hex[:10]}"
