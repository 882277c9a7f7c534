"""Organisation keys: per workspace, a list of AES-256 keys, oldest first, the last one current.

Sources (docs/ARCHITECTURE.md, "Encryption at rest"):

- ``MLFLOW_PLUGIN_KEY_FILE``: a JSON or YAML file mapping workspace name to a list of
  ``{id, key}`` (``key`` = 32 bytes, standard base64). Re-read when it changes (size/mtime), so
  a key added by rotation is used without a restart.
- ``MLFLOW_PLUGIN_KEY_<WORKSPACE>``: the workspace name upper-cased, ``-`` as ``_`` (workspace
  names are ``[a-z0-9-]``, so the mapping is one to one); value ``id:base64[,id:base64...]``,
  oldest first. When set it replaces the file's list for that workspace.

New files are encrypted with the workspace's last key; a file is decrypted with the key its
header names, so older keys stay readable until removed.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlflow_plugin.encryption._format import EncryptionFailure
from mlflow_plugin.settings import KEY_ENV_PREFIX, KEY_FILE_ENV, key_file, workspace_keys

__all__ = [
    "KEY_ENV_PREFIX",
    "KEY_FILE_ENV",
    "Key",
    "Keyring",
    "env_name",
    "keyring",
]

_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
_KEY_BYTES = 32


@dataclass(frozen=True)
class Key:
    id: str
    secret: bytes = field(repr=False)


def env_name(workspace: str) -> str:
    """``MLFLOW_PLUGIN_KEY_TEAM_A`` for the workspace ``team-a``."""
    return KEY_ENV_PREFIX + workspace.upper().replace("-", "_")


def _key(key_id: Any, encoded: Any, where: str) -> Key:
    if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
        raise EncryptionFailure(
            "key_config", f"{where}: key id {key_id!r} must match [A-Za-z0-9._-]{{1,32}}"
        )
    try:
        secret = base64.b64decode(str(encoded), validate=True)
    except (binascii.Error, ValueError):
        secret = b""
    if len(secret) != _KEY_BYTES:
        raise EncryptionFailure(
            "key_config", f"{where}: key '{key_id}' must be {_KEY_BYTES} bytes in base64"
        )
    return Key(key_id, secret)


def _checked(keys: list[Key], where: str) -> tuple[Key, ...]:
    ids = [k.id for k in keys]
    if len(set(ids)) != len(ids):
        raise EncryptionFailure("key_config", f"{where}: a key id appears twice")
    return tuple(keys)


def _parse_file(text: str, path: str) -> dict[str, tuple[Key, ...]]:
    import yaml

    try:
        data = yaml.safe_load(text)  # JSON is YAML
    except yaml.YAMLError as exc:
        raise EncryptionFailure("key_config", f"key file {path} is not JSON/YAML: {exc}") from None
    if not isinstance(data, dict):
        raise EncryptionFailure(
            "key_config", f"key file {path}: expected a mapping workspace -> list of {{id, key}}"
        )
    out: dict[str, tuple[Key, ...]] = {}
    for workspace, entries in data.items():
        where = f"key file {path}, workspace {workspace!r}"
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise EncryptionFailure("key_config", f"{where}: expected a list of {{id, key}}")
        keys = [_key(e.get("id"), e.get("key"), where) for e in entries]
        out[str(workspace)] = _checked(keys, where)
    return out


def _parse_env(value: str, name: str) -> tuple[Key, ...]:
    keys = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        key_id, sep, encoded = item.partition(":")
        if not sep:
            raise EncryptionFailure("key_config", f"{name}: expected id:base64[,id:base64...]")
        keys.append(_key(key_id.strip(), encoded.strip(), name))
    return _checked(keys, name)


class Keyring:
    """Keys per workspace (oldest first). ``environ`` is read on every lookup."""

    def __init__(
        self,
        file_keys: Mapping[str, tuple[Key, ...]] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.file_keys = dict(file_keys or {})
        self.environ = environ  # None: the process's environment, read on every lookup

    def keys(self, workspace: str) -> tuple[Key, ...]:
        name = env_name(workspace)
        value = workspace_keys(name, self.environ)
        if value:
            return _parse_env(value, name)
        return self.file_keys.get(workspace, ())

    def _sources(self, workspace: str) -> str:
        path = key_file(self.environ)
        return f"{env_name(workspace)}" + (f" or key file {path}" if path else "")

    def current(self, workspace: str) -> Key:
        keys = self.keys(workspace)
        if not keys:
            raise EncryptionFailure(
                "key_missing",
                f"no encryption key for workspace '{workspace}' (set {self._sources(workspace)})",
            )
        return keys[-1]

    def get(self, workspace: str, key_id: str) -> Key:
        for key in self.keys(workspace):
            if key.id == key_id:
                return key
        raise EncryptionFailure(
            "key_missing",
            f"no key '{key_id}' for workspace '{workspace}' (set {self._sources(workspace)})",
        )


_cache: dict[str, tuple[tuple[int, int], dict[str, tuple[Key, ...]]]] = {}
_cache_lock = threading.Lock()


def _file_keys(path: str) -> dict[str, tuple[Key, ...]]:
    try:
        st = os.stat(path)
        stamp = (st.st_mtime_ns, st.st_size)
        with _cache_lock:
            hit = _cache.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        with open(path, encoding="utf-8") as fh:
            parsed = _parse_file(fh.read(), path)
    except OSError as exc:
        raise EncryptionFailure(
            "key_config", f"key file {path} ({KEY_FILE_ENV}) cannot be read: {exc.strerror}"
        ) from None
    with _cache_lock:
        _cache[path] = (stamp, parsed)
    return parsed


def keyring(environ: Mapping[str, str] | None = None) -> Keyring:
    """The process's keyring: ``MLFLOW_PLUGIN_KEY_FILE`` plus ``MLFLOW_PLUGIN_KEY_*``."""
    path = key_file(environ).strip()
    return Keyring(_file_keys(path) if path else {}, environ)
