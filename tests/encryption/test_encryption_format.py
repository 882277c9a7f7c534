"""The encrypted file format and the keyring, in-process (no server)."""

from __future__ import annotations

import base64
import io
import json
import os

import pytest

from mlflow_plugin.encryption import EncryptionFailure, Keyring, env_name, keyring, plaintext_size
from mlflow_plugin.encryption._format import HEADER_SIZE, TAG_SIZE, decrypt_stream, encrypt_stream

KEY = os.urandom(32)
LOG2 = 10  # 1 KiB chunks: many chunks from small data
C = 1 << LOG2


def seal(data: bytes, key: bytes = KEY, key_id: str = "k1", workspace: str = "default") -> bytes:
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(data), out, key, key_id, workspace, chunk_log2=LOG2)
    return out.getvalue()


def open_(blob: bytes, key: bytes = KEY) -> bytes:
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(blob), out, lambda header: key)
    return out.getvalue()


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


class TestFormat:
    @pytest.mark.parametrize("size", [0, 1, C - 1, C, C + 1, 3 * C, 3 * C + 7])
    def test_round_trip_and_size(self, size):
        """Every size (empty, chunk boundaries) decrypts to itself; listing size is exact."""
        data = os.urandom(size)
        blob = seal(data)
        assert open_(blob) == data
        assert plaintext_size(len(blob), LOG2) == size
        assert size < 16 or data not in blob  # (one random byte may occur by chance)

    def test_fresh_nonce_per_file(self):
        """The same plaintext twice gives two different ciphertexts (random per-file nonce)."""
        data = b"MLmodel flavors" * 100
        assert seal(data)[HEADER_SIZE:] != seal(data)[HEADER_SIZE:]

    def test_wrong_key_fails_clearly(self):
        """Another key: one message naming the key id and workspace, no plaintext."""
        with pytest.raises(EncryptionFailure) as err:
            open_(seal(b"secret" * 500, workspace="team-a"), key=os.urandom(32))
        assert err.value.kind == "decrypt_failed"
        assert "'k1'" in str(err.value) and "'team-a'" in str(err.value)

    @pytest.mark.parametrize(
        "tamper",
        [
            pytest.param(lambda b: b[:-1] + bytes([b[-1] ^ 1]), id="flip-last-byte"),
            pytest.param(lambda b: b[: HEADER_SIZE + C + TAG_SIZE], id="truncate-at-chunk"),
            pytest.param(
                lambda b: (
                    b[:HEADER_SIZE]
                    + b[HEADER_SIZE + C + TAG_SIZE : HEADER_SIZE + 2 * (C + TAG_SIZE)]
                    + b[HEADER_SIZE : HEADER_SIZE + C + TAG_SIZE]
                    + b[HEADER_SIZE + 2 * (C + TAG_SIZE) :]
                ),
                id="swap-chunks",
            ),
            pytest.param(lambda b: b[:20] + b"k2" + b[22:], id="relabel-key-id"),
            pytest.param(lambda b: b + b"\0" * 40, id="appended"),
        ],
    )
    def test_tampering_detected(self, tamper):
        """Flipped bits, truncation at a chunk boundary, reordering, a relabelled header fail."""
        with pytest.raises(EncryptionFailure) as err:
            open_(tamper(seal(os.urandom(3 * C + 5))))
        assert err.value.kind == "decrypt_failed"

    def test_plain_file_is_not_decrypted(self):
        """A file without the header is named as not encrypted."""
        with pytest.raises(EncryptionFailure) as err:
            open_(b"flavors: {}\n")
        assert err.value.kind == "not_encrypted"


class TestKeys:
    def test_env_form_and_newest_key(self):
        """MLFLOW_PLUGIN_KEY_TEAM_A=id:b64,id:b64: the last one is current, both readable."""
        k1, k2 = os.urandom(32), os.urandom(32)
        assert env_name("team-a") == "MLFLOW_PLUGIN_KEY_TEAM_A"
        ring = Keyring(environ={"MLFLOW_PLUGIN_KEY_TEAM_A": f"k1:{b64(k1)}, k2:{b64(k2)}"})
        assert ring.current("team-a").id == "k2"
        assert ring.get("team-a", "k1").secret == k1
        with pytest.raises(EncryptionFailure, match="no key 'k3' for workspace 'team-a'"):
            ring.get("team-a", "k3")
        with pytest.raises(EncryptionFailure, match="no encryption key for workspace 'team-b'"):
            ring.current("team-b")

    @pytest.mark.parametrize("fmt", ["json", "yaml"])
    def test_key_file(self, tmp_path, fmt):
        """The key file maps workspace to [{id, key}] in JSON or YAML; env overrides it."""
        k1, k2 = os.urandom(32), os.urandom(32)
        data = {"default": [{"id": "k1", "key": b64(k1)}], "team-b": [{"id": "b1", "key": b64(k2)}]}
        path = tmp_path / f"keys.{fmt}"
        if fmt == "json":
            path.write_text(json.dumps(data))
        else:
            import yaml

            path.write_text(yaml.safe_dump(data))
        ring = keyring({"MLFLOW_PLUGIN_KEY_FILE": str(path)})
        assert ring.current("default").secret == k1 and ring.current("team-b").id == "b1"
        env = {"MLFLOW_PLUGIN_KEY_FILE": str(path), "MLFLOW_PLUGIN_KEY_DEFAULT": f"e1:{b64(k2)}"}
        assert keyring(env).current("default").id == "e1"

    @pytest.mark.parametrize(
        "value, message",
        [
            ("k1:" + base64.b64encode(b"short").decode(), "must be 32 bytes"),
            ("k1:not base64!!", "must be 32 bytes"),
            ("no-colon", "expected id:base64"),
            ("bad id'\":" + base64.b64encode(bytes(32)).decode(), "must match"),
            (
                f"k1:{base64.b64encode(bytes(32)).decode()},k1:{base64.b64encode(bytes(32)).decode()}",
                "twice",
            ),
        ],
    )
    def test_bad_keys_are_one_line(self, value, message):
        """Malformed keys are refused with a message naming the variable."""
        with pytest.raises(EncryptionFailure, match=message) as err:
            Keyring(environ={"MLFLOW_PLUGIN_KEY_DEFAULT": value}).current("default")
        assert err.value.kind == "key_config" and "\n" not in str(err.value)

    def test_unreadable_key_file(self, tmp_path):
        """A key file that is missing or not a mapping: key_config, naming the file."""
        with pytest.raises(EncryptionFailure, match="cannot be read"):
            keyring({"MLFLOW_PLUGIN_KEY_FILE": str(tmp_path / "nope.json")})
        (tmp_path / "list.json").write_text("[1, 2]")
        with pytest.raises(EncryptionFailure, match="expected a mapping"):
            keyring({"MLFLOW_PLUGIN_KEY_FILE": str(tmp_path / "list.json")})
