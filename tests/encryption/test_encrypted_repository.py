"""EncryptedArtifactRepository through MLflow's registry (entry point ``encrypted+file``),
in-process: the client-side mode, workspaces, rotation and ``rekey``."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from mlflow_plugin.cli import main
from mlflow_plugin.encryption import EncryptedArtifactRepository

PAYLOAD = b"flavors:\n  python_function: {}\n" + os.urandom(3 * (1 << 20) + 11)


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


@pytest.fixture()
def keys(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Distinct keys for the default workspace and team-a / team-b, in the environment."""
    out = {name: os.urandom(32) for name in ("default", "team-a", "team-b")}
    monkeypatch.delenv("MLFLOW_PLUGIN_KEY_FILE", raising=False)
    monkeypatch.delenv("MLFLOW_WORKSPACE", raising=False)
    for name, key in out.items():
        monkeypatch.setenv("MLFLOW_PLUGIN_KEY_" + name.upper().replace("-", "_"), f"k1:{b64(key)}")
    return out


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


def repo(store: Path) -> EncryptedArtifactRepository:
    found = get_artifact_repository(f"encrypted+file://{store}")
    assert isinstance(found, EncryptedArtifactRepository)
    return found


def write(tmp_path: Path, name: str = "model.pkl", data: bytes = PAYLOAD) -> Path:
    src = tmp_path / "src" / name
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    return src


class TestEncryptedRepository:
    def test_round_trip_ciphertext_on_disk(self, keys, store, tmp_path):
        """log_artifacts stores ciphertext (plaintext sizes listed); downloads are the plaintext."""
        write(tmp_path, "MLmodel", b"flavors: {}\n")
        write(tmp_path, "model.pkl")
        repo(store).log_artifacts(str(tmp_path / "src"), "model")
        stored = (store / "model" / "model.pkl").read_bytes()
        assert stored.startswith(b"MLPE") and b"flavors" not in stored
        assert b"flavors" not in (store / "model" / "MLmodel").read_bytes()
        sizes = {f.path: f.file_size for f in repo(store).list_artifacts("model")}
        assert sizes == {"model/MLmodel": 12, "model/model.pkl": len(PAYLOAD)}
        out = Path(repo(store).download_artifacts("model", str(tmp_path)))
        assert (out / "model.pkl").read_bytes() == PAYLOAD
        assert repo(store).get_local_path("model/model.pkl") is None

    def test_hostile_names_round_trip(self, keys, store, tmp_path):
        """Quotes, backslashes and unicode in file names survive encryption both ways."""
        name = "we'i\"rd\\ naïve ✓ $(x).bin"
        repo(store).log_artifact(str(write(tmp_path, name, b"payload")), "d i r")
        assert (store / "d i r" / name).read_bytes().startswith(b"MLPE")
        got = repo(store).download_artifacts(f"d i r/{name}", str(tmp_path))
        assert Path(got).read_bytes() == b"payload"

    def test_streaming_memory(self, keys, tmp_path):
        """Encrypting and decrypting 16 MiB keeps a few chunks in memory, not the file."""
        import tracemalloc

        from mlflow_plugin.encryption import decrypt_file, encrypt_file

        big = write(tmp_path, "big.bin", os.urandom(16 << 20))
        tracemalloc.start()
        try:
            encrypt_file(str(big), str(tmp_path / "big.enc"), "default")
            decrypt_file(str(tmp_path / "big.enc"), str(tmp_path / "big.out"), "big")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 6 << 20, peak
        assert (tmp_path / "big.out").read_bytes() == big.read_bytes()

    def test_concurrent_requests_of_two_workspaces(self, keys, store, tmp_path):
        """One repository instance (as on the server) serving two workspaces' uploads at once:
        each file is encrypted for the workspace of the request that wrote it."""
        import threading

        from mlflow.utils.workspace_context import set_server_request_workspace

        shared = repo(store)
        errors: list[BaseException] = []

        def upload(ws: str, i: int) -> None:
            try:
                set_server_request_workspace(ws)  # what the server's middleware does per request
                src = write(tmp_path / f"{ws}-{i}", f"{ws}-{i}.bin", os.urandom(4096))
                shared.log_artifact(str(src), ws)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [
            threading.Thread(target=upload, args=(ws, i))
            for i in range(6)
            for ws in ("team-a", "team-b")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        for ws in ("team-a", "team-b"):
            files = list((store / ws).iterdir())
            assert len(files) == 6
            assert all(f.read_bytes()[52:116].rstrip(b"\0") == ws.encode() for f in files)

    def test_missing_key_one_line(self, keys, store, tmp_path, monkeypatch):
        """Without the workspace's key: an error naming the workspace and key id, no file."""
        repo(store).log_artifact(str(write(tmp_path)), "m")
        monkeypatch.delenv("MLFLOW_PLUGIN_KEY_DEFAULT")
        dst = tmp_path / "dst"
        dst.mkdir()
        with pytest.raises(
            MlflowException, match=r"\[key_missing\] no key 'k1' for workspace 'default'"
        ):
            repo(store).download_artifacts("m/model.pkl", str(dst))
        assert list(dst.rglob("*.pkl")) == []
        with pytest.raises(MlflowException, match="no encryption key for workspace 'default'"):
            repo(store).log_artifact(str(write(tmp_path)), "m")

    def test_workspaces_keys_are_distinct(self, keys, store, tmp_path, monkeypatch):
        """A file written for team-a does not decrypt with team-b's key, nor inside team-b."""
        monkeypatch.setenv("MLFLOW_WORKSPACE", "team-a")
        repo(store).log_artifact(str(write(tmp_path)), "m")
        header = (store / "m" / "model.pkl").read_bytes()[:128]
        assert b"team-a" in header
        monkeypatch.setenv("MLFLOW_WORKSPACE", "team-b")
        with pytest.raises(MlflowException, match=r"\[workspace_mismatch\].*'team-a'.*'team-b'"):
            repo(store).download_artifacts("m/model.pkl", str(tmp_path))
        # team-a's key id now holds team-b's key: authentication fails, nothing is written.
        monkeypatch.setenv("MLFLOW_WORKSPACE", "team-a")
        monkeypatch.setenv("MLFLOW_PLUGIN_KEY_TEAM_A", f"k1:{b64(keys['team-b'])}")
        dst = tmp_path / "dst"
        dst.mkdir()
        with pytest.raises(MlflowException, match=r"\[decrypt_failed\]"):
            repo(store).download_artifacts("m/model.pkl", str(dst))
        assert list(dst.rglob("*.pkl")) == []

    def test_rotation_and_rekey(self, keys, store, tmp_path, monkeypatch):
        """After adding k2: new files use k2, old k1 files still load; rekey moves them to k2."""
        repo(store).log_artifact(str(write(tmp_path, "old.bin")), "m")
        k2 = os.urandom(32)
        monkeypatch.setenv("MLFLOW_PLUGIN_KEY_DEFAULT", f"k1:{b64(keys['default'])},k2:{b64(k2)}")
        repo(store).log_artifact(str(write(tmp_path, "new.bin")), "m")
        assert (store / "m" / "new.bin").read_bytes()[20:22] == b"k2"
        assert (store / "m" / "old.bin").read_bytes()[20:22] == b"k1"
        out = tmp_path / "out"
        out.mkdir()
        assert Path(repo(store).download_artifacts("m/old.bin", str(out))).read_bytes() == PAYLOAD

        # A file from before encryption was switched on, in team-a's workspace directory.
        legacy = store / "workspaces" / "team-a" / "legacy.txt"
        legacy.parent.mkdir(parents=True)
        legacy.write_bytes(b"flavors: {}\n")

        uri = f"encrypted+file://{store}"
        dry = CliRunner().invoke(main, ["rekey", uri, "--dry-run"])
        assert dry.exit_code == 0, dry.output
        assert "would re-encrypt m/old.bin: k1 -> k2" in dry.output
        assert "1 file(s) not encrypted" in dry.output
        assert (store / "m" / "old.bin").read_bytes()[20:22] == b"k1"
        done = CliRunner().invoke(main, ["rekey", uri, "--plaintext"])
        assert done.exit_code == 0 and "2 file(s) re-encrypted" in done.output, done.output
        assert (store / "m" / "old.bin").read_bytes()[20:22] == b"k2"
        assert legacy.read_bytes().startswith(b"MLPE") and b"team-a" in legacy.read_bytes()[:128]
        monkeypatch.setenv("MLFLOW_WORKSPACE", "team-a")
        got = repo(store).download_artifacts("workspaces/team-a/legacy.txt", str(out))
        assert Path(got).read_bytes() == b"flavors: {}\n"
        monkeypatch.delenv("MLFLOW_WORKSPACE")
        # k1 retired: everything still loads.
        monkeypatch.setenv("MLFLOW_PLUGIN_KEY_DEFAULT", f"k2:{b64(k2)}")
        again = Path(repo(store).download_artifacts("m", str(tmp_path / "out")))
        assert (again / "old.bin").read_bytes() == PAYLOAD == (again / "new.bin").read_bytes()

    def test_rekey_bad_input_exits_2(self, keys, store, tmp_path, monkeypatch):
        """rekey takes only encrypted+ URIs; a workspace without keys is one line, exit 2."""
        result = CliRunner().invoke(main, ["rekey", "file:///tmp/x"])
        assert result.exit_code == 2 and "encrypted+" in result.output
        repo(store).log_artifact(str(write(tmp_path, "m.bin", b"x")), "m")
        monkeypatch.delenv("MLFLOW_PLUGIN_KEY_DEFAULT")
        result = CliRunner().invoke(main, ["rekey", f"encrypted+file://{store}"])
        assert result.exit_code == 2, result.output
        assert "no encryption key for workspace 'default'" in result.output
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


class TestClientSideMode:
    def test_experiment_with_encrypted_location(self, tracking_uri, keys, tmp_path, model_name):
        """An experiment whose artifact location is encrypted+file://: the client encrypts before
        writing, the store holds ciphertext, pyfunc and verify_version read the plaintext."""
        import mlflow
        from pickled_model import PickledRisk

        from mlflow_plugin.integrity._manifest import record_digest, verify_version
        from mlflow_plugin.registry._adapter import Registry

        store = tmp_path / "client-store"
        experiment = mlflow.create_experiment(
            f"enc-{model_name}", artifact_location=f"encrypted+file://{store}"
        )
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.pyfunc.log_model(
                name="model", python_model=PickledRisk(0.5), pip_requirements=[]
            )
        registry = Registry(tracking_uri)
        version = registry.register_version(model_name, info.model_uri, None, {}).version
        record_digest(registry, model_name, version)
        stored = [p for p in store.rglob("*") if p.is_file()]
        assert any(p.name == "python_model.pkl" for p in stored)
        assert all(p.read_bytes().startswith(b"MLPE") for p in stored)
        assert verify_version(registry, model_name, version).ok
        import pandas as pd

        loaded = mlflow.pyfunc.load_model(f"models:/{model_name}/{version}")
        assert float(loaded.predict(pd.DataFrame({"x": [1.0]}))["risk"].iloc[0]) == 0.5
