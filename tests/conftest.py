"""Fixtures: a real ``mlflow server`` subprocess per backend, started once per session.

SQLite always; PostgreSQL too when ``MLFLOW_PLUGIN_TEST_POSTGRES`` holds a URI (a fresh
database is created for the session and dropped afterwards).
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Iterator

import pytest
from _servers import BACKENDS, _start

from mlflow_plugin.testing import MlflowServer

_URI_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@contextlib.contextmanager
def _mlflow_uris_kept() -> Iterator[None]:
    """Put MLflow's process-wide tracking and registry URIs back as they were.

    ``mlflow.set_registry_uri`` also exports ``MLFLOW_REGISTRY_URI``, which nothing unsets: a
    test that set it for its server would send a later test's ``MlflowClient(uri)`` registry
    calls (and its subprocesses') to that other server.
    """
    env = {key: os.environ.get(key) for key in _URI_VARS}
    tracking = getattr(
        sys.modules.get("mlflow.tracking._tracking_service.utils"), "_tracking_uri", None
    )
    registry = getattr(
        sys.modules.get("mlflow.tracking._model_registry.utils"), "_registry_uri", None
    )
    yield
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(tracking)  # type: ignore[arg-type]
        mlflow.set_registry_uri(registry)  # type: ignore[arg-type]
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module", autouse=True)
def _mlflow_uris_per_module() -> Iterator[None]:
    with _mlflow_uris_kept():
        yield


@pytest.fixture(autouse=True)
def _mlflow_uris_per_test() -> Iterator[None]:
    with _mlflow_uris_kept():
        yield


#: Modules whose test classes share a module-scoped server or retrain: one xdist work unit each.
#: ``--dist loadscope`` hands each class to a worker on its own, and pytest orders a class's
#: items SQLite first, then PostgreSQL: the module fixture was made again for every class and
#: every switch of backend (the organisations' auth server and set-up 14 times instead of 2).
_ONE_WORK_UNIT = ("tests/api/test_organisations.py", "tests/test_http_budget.py")
#: Modules of long tests with no module- or class-scoped fixture: a work unit per test, so the
#: SQLite and PostgreSQL runs of one test (a minute or more each) can go to different workers.
_UNIT_PER_TEST = ("tests/training/test_flows_mlflow_run.py", "tests/controller/test_lock_ledger.py")


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """``--dist loadscope``, with each module of ``_ONE_WORK_UNIT`` kept in one work unit and
    each test of ``_UNIT_PER_TEST`` a unit of its own."""
    if config.getvalue("dist") != "loadscope":
        return None  # xdist's own choice
    from xdist.scheduler import LoadScopeScheduling

    class _Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            if module in _ONE_WORK_UNIT:
                return module
            return nodeid if module in _UNIT_PER_TEST else super()._split_scope(nodeid)

    return _Scheduling(config, log)  # type: ignore[arg-type]


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
