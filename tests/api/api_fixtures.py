"""Fixtures of the organisations tests: one ``mlflow server --enable-workspaces --app-name basic-auth`` per backend for the module,
two organisations (workspaces), an admin and one user per organisation with a role there only,
the same model name registered in both, and the REST API in a thread in front of it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from mlflow_plugin.testing import AppServer, MlflowServer, postgres_database

POSTGRES_URI = os.environ.get("MLFLOW_PLUGIN_TEST_POSTGRES", "").strip()
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URI else [])
ADMIN = ("admin", "admin-password-1234")
ORGS = {"org-a": ("alice", "alice-password-1234"), "org-b": ("bob", "bob-password-1234")}
MODEL = "churn"
_CLEAR = ("MLFLOW_WORKSPACE", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


@dataclass
class Orgs:
    """The server, the API in front of it, and who is who."""

    server: MlflowServer
    api: str
    versions: dict[str, list[str]]

    @property
    def uri(self) -> str:
        return self.server.uri


def as_user(monkeypatch: pytest.MonkeyPatch, user: tuple[str, str], workspace: str) -> None:
    """The process's MLflow identity and workspace (for CLI and admin set-up calls)."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", user[1])
    monkeypatch.setenv("MLFLOW_WORKSPACE", workspace)


def _setup(server: MlflowServer) -> dict[str, list[str]]:
    import mlflow
    from mlflow.server import get_app_client

    from helpers import log_own_models, register_own_artifacts

    versions: dict[str, list[str]] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
        mp.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
        mp.delenv("MLFLOW_WORKSPACE", raising=False)
        auth = get_app_client("basic-auth", tracking_uri=server.uri)
        client = mlflow.MlflowClient(tracking_uri=server.uri)
        for workspace, (user, password) in ORGS.items():
            client.create_workspace(workspace)
            auth.create_user(user, password)
            role = auth.create_role(workspace, f"{workspace}-deployers")
            auth.add_role_permission(role.id, "workspace", "*", "MANAGE")
            auth.assign_role(user, role.id)
            mp.setenv("MLFLOW_WORKSPACE", workspace)
            # one logged model per organisation (a source in another workspace is refused)
            source = log_own_models(server.uri, 1)[0]
            versions[workspace] = register_own_artifacts(server.uri, MODEL, 4, [source] * 4)
    return versions


def _start(backend: str, request: pytest.FixtureRequest) -> MlflowServer:
    if backend == "sqlite":
        server = MlflowServer(
            workers=2,
            extra_args=["--enable-workspaces"],
            admin_password=ADMIN[1],
            startup_timeout=300,
        )
    else:
        ctx = postgres_database(POSTGRES_URI)
        db_uri = ctx.__enter__()
        request.addfinalizer(lambda: ctx.__exit__(None, None, None))
        server = MlflowServer(
            db_uri,
            workers=2,
            extra_args=["--enable-workspaces"],
            admin_password=ADMIN[1],
            startup_timeout=300,
        )
    request.addfinalizer(server.stop)
    return server.start()


@pytest.fixture(scope="module", params=BACKENDS)
def orgs(request: pytest.FixtureRequest) -> Iterator[Orgs]:
    """Two organisations on a real auth-enabled server, and the API serving them."""
    from mlflow_plugin.api import create_app

    saved = {k: os.environ.pop(k) for k in _CLEAR if k in os.environ}
    server = _start(request.param, request)
    versions = _setup(server)
    try:
        with AppServer(create_app(server.uri)) as api:
            yield Orgs(server, api.base_url, versions)
    finally:
        os.environ.update(saved)
