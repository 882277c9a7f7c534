"""The session's ``mlflow server`` processes, one per backend (imported by the root conftest and
by tests that need a server outside the ``mlflow_server`` fixture; a module, not a conftest, so
the import does not depend on which ``conftest`` pytest loaded last)."""

from __future__ import annotations

import os

import pytest

from mlflow_plugin.testing import MlflowServer, postgres_database

POSTGRES_URI = os.environ.get("MLFLOW_PLUGIN_TEST_POSTGRES", "").strip()
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URI else [])

_servers: dict[str, MlflowServer] = {}


def _start(backend: str, request: pytest.FixtureRequest) -> MlflowServer:
    if backend in _servers:
        return _servers[backend]
    if backend == "sqlite":
        server = MlflowServer(workers=2).start()
    else:
        ctx = postgres_database(POSTGRES_URI)
        db_uri = ctx.__enter__()
        request.session.config.add_cleanup(lambda: ctx.__exit__(None, None, None))
        server = MlflowServer(db_uri, workers=2).start()
    request.session.config.add_cleanup(server.stop)
    _servers[backend] = server
    return server
