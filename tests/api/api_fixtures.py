"""Fixtures of the organisations tests: one ``mlflow server --enable-workspaces --app-name basic-auth`` per backend for the module,
two organisations (workspaces), an admin and one user per organisation with a role there only
(and a read-only member of org-a),
the same model name registered in both, and the REST API in a thread in front of it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlflow_plugin.testing import AppServer, MlflowServer, postgres_database

POSTGRES_URI = os.environ.get("MLFLOW_PLUGIN_TEST_POSTGRES", "").strip()
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URI else [])
ADMIN = ("admin", "admin-password-1234")
ORGS = {"org-a": ("alice", "alice-password-1234"), "org-b": ("bob", "bob-password-1234")}
#: A member of org-a who may read its models and ledger and change nothing (``USE`` on the
#: workspace, ``READ`` on its registered models and experiments).
READER = ("carol", "carol-password-1234")
MODEL = "churn"
#: Models of org-a only, one per test that changes them: a rollout's, and retention's.
ROLLOUT_MODEL, RETENTION_MODEL = "fraud", "stale"
#: A model of both organisations, same name and version numbers, that retention deletes from.
SHARED_RETENTION_MODEL = "expiring"
_CLEAR = ("MLFLOW_WORKSPACE", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


@dataclass
class Orgs:
    """The server, the API in front of it, and who is who."""

    server: MlflowServer
    api: str
    versions: dict[str, list[str]]
    #: org-a's ROLLOUT_MODEL and RETENTION_MODEL -> their versions
    own: dict[str, list[str]]
    #: the API's archive location (server configuration, every organisation)
    archive: Path

    @property
    def uri(self) -> str:
        return self.server.uri


def as_user(monkeypatch: pytest.MonkeyPatch, user: tuple[str, str], workspace: str) -> None:
    """The process's MLflow identity and workspace (for CLI and admin set-up calls)."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", user[1])
    monkeypatch.setenv("MLFLOW_WORKSPACE", workspace)


def _log_files(uri: str) -> tuple[str, str]:
    """One logged model made of a few files (the API never loads a model: no flavour, no
    training, no sklearn import); returns its ``models:/`` source and its run's id."""
    import tempfile
    from pathlib import Path

    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("mlflow_plugin-tests")
    client = mlflow.MlflowClient(uri)
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run() as run:
        (Path(tmp) / "MLmodel").write_text("artifact_path: model\nflavors: {}\n")
        (Path(tmp) / "weights.bin").write_bytes(bytes(range(256)) * 4)
        logged = mlflow.initialize_logged_model(name="model", source_run_id=run.info.run_id)
        client.log_model_artifacts(logged.model_id, tmp)
        mlflow.finalize_logged_model(logged.model_id, "READY")
    return f"models:/{logged.model_id}", run.info.run_id


def _register(uri: str, model: str, n: int, source: tuple[str, str]) -> list[str]:
    """``n`` versions of ``model`` from ``source``, with every gate passed."""
    from mlflow_plugin.registry._adapter import Registry

    from helpers import PASSED

    registry = Registry(uri)
    return [registry.register_version(model, *source, dict(PASSED)).version for _ in range(n)]


def _setup(server: MlflowServer) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    import mlflow
    from mlflow.server import get_app_client

    versions: dict[str, list[str]] = {}
    own: dict[str, list[str]] = {}
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
            if workspace == "org-a":
                auth.create_user(*READER)
                readers = auth.create_role(workspace, f"{workspace}-readers")
                auth.add_role_permission(readers.id, "workspace", "*", "USE")
                for kind in ("registered_model", "experiment"):
                    auth.add_role_permission(readers.id, kind, "*", "READ")
                auth.assign_role(READER[0], readers.id)
            mp.setenv("MLFLOW_WORKSPACE", workspace)
            # one source per organisation (a source in another workspace is refused)
            source = _log_files(server.uri)
            versions[workspace] = _register(server.uri, MODEL, 4, source)
            own[f"{workspace}/{SHARED_RETENTION_MODEL}"] = _register(
                server.uri, SHARED_RETENTION_MODEL, 2, _log_files(server.uri)
            )
            if workspace == "org-a":  # the same logged model again: nothing more is trained
                own[ROLLOUT_MODEL] = _register(server.uri, ROLLOUT_MODEL, 3, source)
                # retention's: the two it deletes have files of their own (reclaimed)
                doomed = _log_files(server.uri)
                own[RETENTION_MODEL] = _register(server.uri, RETENTION_MODEL, 2, doomed)
                own[RETENTION_MODEL] += _register(server.uri, RETENTION_MODEL, 1, source)
    return versions, own


def _start(backend: str, request: pytest.FixtureRequest) -> MlflowServer:
    if backend == "sqlite":
        server = MlflowServer(
            workers=1,  # half the startup CPU; uvicorn still serves requests concurrently
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
            workers=1,
            extra_args=["--enable-workspaces"],
            admin_password=ADMIN[1],
            startup_timeout=300,
        )
    request.addfinalizer(server.stop)
    return server.start()


@pytest.fixture(scope="module", params=BACKENDS)
def orgs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Orgs]:
    """Two organisations on a real auth-enabled server, and the API serving them (one
    archive location configured for every organisation)."""
    from mlflow_plugin.api import ArchiveLocations, create_app

    saved = {k: os.environ.pop(k) for k in _CLEAR if k in os.environ}
    server = _start(request.param, request)
    versions, own = _setup(server)
    archive = tmp_path_factory.mktemp("api-archive")
    app = create_app(server.uri, archives=ArchiveLocations(default=str(archive)))
    try:
        with AppServer(app) as api:
            yield Orgs(server, api.base_url, versions, own, archive)
    finally:
        os.environ.update(saved)
