"""A real ``mlflow server --artifacts-destination encrypted+file://...``: the server encrypts
what clients upload (proxied artifacts), the store holds ciphertext, and every reader (pyfunc,
the serving loader, integrity checks) gets the plaintext, or one clear error."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow.exceptions import MlflowException
from pickled_model import log_pickled

from mlflow_plugin.cli import main
from mlflow_plugin.integrity._manifest import record_digest, verify_version
from mlflow_plugin.registry._adapter import Registry
from mlflow_plugin.testing import MlflowServer

from helpers import PASSED

pytestmark = pytest.mark.integration


class Keys:
    """The server's key file, rewritten by tests (the server re-reads it when it changes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.good = os.urandom(32)
        self.team = {"team-a": os.urandom(32), "team-b": os.urandom(32)}
        self.restore()

    def write(self, mapping: dict[str, list[tuple[str, bytes]]]) -> None:
        data = {
            ws: [{"id": i, "key": base64.b64encode(k).decode()} for i, k in keys]
            for ws, keys in mapping.items()
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)

    def all(self) -> dict[str, list[tuple[str, bytes]]]:
        return {
            "default": [("k1", self.good)],
            "team-a": [("a1", self.team["team-a"])],
            "team-b": [("b1", self.team["team-b"])],
        }

    def restore(self) -> None:
        self.write(self.all())


@pytest.fixture(scope="module")
def encrypted_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[MlflowServer, Path, Keys]]:
    """One server for the module: SQLite, workspaces on, artifacts in an encrypted local store."""
    root = tmp_path_factory.mktemp("encrypted")
    store = root / "store"
    store.mkdir()
    keys = Keys(root / "keys.json")
    server = MlflowServer(
        workers=1,
        artifacts_destination=f"encrypted+file://{store}",
        env={"MLFLOW_PLUGIN_KEY_FILE": str(keys.path)},
        extra_args=["--enable-workspaces"],
    )
    with server:
        yield server, store, keys


@pytest.fixture(scope="module")
def registered(encrypted_server) -> Iterator[tuple[str, str, Path]]:
    """A pickled pyfunc model logged and registered through the server: (uri, name, files)."""
    import mlflow

    server, store, _ = encrypted_server
    mlflow.set_tracking_uri(server.uri)
    mlflow.set_registry_uri(server.uri)
    try:
        model_uri = log_pickled(server.uri, 0.25)
        registry = Registry(server.uri)
        version = registry.register_version("enc-model", model_uri, None, dict(PASSED)).version
        record_digest(registry, "enc-model", version)
        registry.set_alias("enc-model", "champion", version)
        location = mlflow.get_logged_model(model_uri.removeprefix("models:/")).artifact_location
        yield server.uri, "enc-model", store / location.split(":/", 1)[1].lstrip("/")
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]


def cli(uri: str, *args: str):
    return CliRunner().invoke(main, ["--tracking-uri", uri, *args])


class TestEncryptedServer:
    def test_store_holds_ciphertext(self, registered):
        """Every stored file starts with the MLPE header; no MLmodel YAML, no pickle in clear."""
        _, _, files = registered
        stored = [p for p in files.rglob("*") if p.is_file()]
        assert {p.name for p in stored} >= {"MLmodel", "python_model.pkl"}
        for path in stored:
            data = path.read_bytes()
            assert data.startswith(b"MLPE"), path
            assert (
                b"flavors" not in data
                and b"PickledRisk" not in data
                and b"python_function" not in data
            )

    def test_loads_transparently(self, registered):
        """pyfunc, the serving loader and verify_version read the plaintext through the server."""
        import mlflow
        import pandas as pd

        from mlflow_plugin.serving import ChampionModel

        uri, name, _ = registered
        frame = pd.DataFrame(
            {
                "fin": [0],
                "age": [30],
                "race": [1],
                "wexp": [0],
                "mar": [0],
                "paro": [1],
                "prio": [2],
            }
        )
        model = mlflow.pyfunc.load_model(f"models:/{name}/1")
        assert float(model.predict(frame)["risk"].iloc[0]) == 0.25
        report = verify_version(Registry(uri), name, "1")
        assert report.ok and not report.trusted_on_first_use, report.summary()
        with ChampionModel(name, tracking_uri=uri, watch=False) as champion:
            assert champion.version == "1"
            assert float(champion.predict(frame)["risk"].iloc[0]) == 0.25

    def test_missing_and_wrong_key_fail_clearly(self, registered, encrypted_server):
        """Key gone: verify exits 2 naming workspace and key id; wrong key: exit 5; no traceback."""
        import mlflow

        uri, name, _ = registered
        _, _, keys = encrypted_server
        try:
            keys.write({"default": [("k0", os.urandom(32))]})
            result = cli(uri, "verify", name, "--version", "1")
            assert result.exit_code == 2, result.output
            assert "no key 'k1' for workspace 'default'" in result.output
            assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
            keys.write({"default": [("k1", os.urandom(32))]})
            result = cli(uri, "verify", name, "--version", "1")
            assert result.exit_code == 5, result.output
            assert "failed authentication" in result.output and "Traceback" not in result.output
            with pytest.raises(MlflowException, match=r"\[decrypt_failed\]"):
                mlflow.pyfunc.load_model(f"models:/{name}/1")
        finally:
            keys.restore()

    def test_tampered_ciphertext_detected(self, registered):
        """One flipped byte in the stored pickle: loading fails with decrypt_failed, exit 5."""
        import mlflow

        uri, name, files = registered
        target = next(files.rglob("python_model.pkl"))
        original = target.read_bytes()
        try:
            target.write_bytes(original[:-1] + bytes([original[-1] ^ 0x01]))
            with pytest.raises(MlflowException, match=r"\[decrypt_failed\].*python_model.pkl"):
                mlflow.pyfunc.load_model(f"models:/{name}/1")
            result = cli(uri, "verify", name, "--version", "1")
            assert result.exit_code == 5 and "failed authentication" in result.output, result.output
        finally:
            target.write_bytes(original)

    def test_each_workspace_has_its_own_key(self, encrypted_server, registered):
        """team-a's and team-b's models are encrypted under their own keys; without team-b's
        key (or with team-a's key under team-b's id) team-b cannot load, team-a still can."""
        import mlflow
        from mlflow import MlflowClient
        from mlflow.utils.workspace_context import WorkspaceContext

        server, store, keys = encrypted_server
        client = MlflowClient(server.uri)
        uris = {}
        for ws in ("team-a", "team-b"):
            client.create_workspace(ws)
            with WorkspaceContext(ws):
                uris[ws] = log_pickled(server.uri, 0.5)
        for ws, key_id in (("team-a", b"a1"), ("team-b", b"b1")):
            stored = [p for p in (store / "workspaces" / ws).rglob("*") if p.is_file()]
            assert stored and all(p.read_bytes()[:4] == b"MLPE" for p in stored)
            headers = {p.read_bytes()[20:52].rstrip(b"\0") for p in stored}
            assert headers == {key_id}
            assert all(ws.encode() in p.read_bytes()[52:116] for p in stored)
        try:
            without_b = keys.all()
            del without_b["team-b"]
            keys.write(without_b)
            with (
                WorkspaceContext("team-b"),
                pytest.raises(MlflowException, match=r"no key 'b1' for workspace 'team-b'"),
            ):
                mlflow.pyfunc.load_model(uris["team-b"])
            with WorkspaceContext("team-a"):
                mlflow.pyfunc.load_model(uris["team-a"])
            swapped = keys.all()
            swapped["team-b"] = [("b1", keys.team["team-a"])]
            keys.write(swapped)
            with (
                WorkspaceContext("team-b"),
                pytest.raises(MlflowException, match=r"\[decrypt_failed\]"),
            ):
                mlflow.pyfunc.load_model(uris["team-b"])
        finally:
            keys.restore()
