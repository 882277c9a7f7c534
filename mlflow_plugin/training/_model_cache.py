"""A local cache of downloaded model versions, so a retrain does not download the champion again.

Loading ``models:/<name>/<version>`` from a tracking server costs a dozen HTTP round trips
(download URI, the prompt check, the artifact listing, one GET per file). Every retrain scores
the champion, which the previous retrain downloaded as its candidate; a registered version's
artifacts never change, so the copy is kept, keyed by the server, the name, the version and
the version's source and creation time (one ``model-versions/get`` to read them: a model
deleted and registered again under the same name gets a new key). Training downloads the new
version's files where it saved them before the upload, hashes them for the integrity digest
and stores that copy here (:func:`store_copy`), so validating the candidate does not download
it at all; a caller that holds the version's record (``VersionInfo``) passes it and saves the
``model-versions/get``.

``MLFLOW_PLUGIN_MODEL_CACHE`` sets the directory (default ``~/.cache/mlflow_plugin/models``);
``off`` disables the cache. The newest :data:`KEEP` entries are kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mlflow_plugin.mlflow_io._workspace import scoped_key
from mlflow_plugin.settings import model_cache_dir

__all__ = ["KEEP", "cache_dir", "cached_copy", "load_model", "store_copy"]

KEEP = 16
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")


def cache_dir() -> Path | None:
    """The cache directory, or None when the cache is off (``$MLFLOW_PLUGIN_MODEL_CACHE``)."""
    return model_cache_dir()


def _entry(root: Path, registry: Any, info: Any) -> Path:
    """The cache entry of a version: ``info`` has ``name``, ``version``, ``source`` and the
    creation time (``created_ms`` of our ``VersionInfo``, or MLflow's ``creation_timestamp``)."""
    created = getattr(info, "created_ms", None) or getattr(info, "creation_timestamp", 0)
    # two organisations (workspaces) may have the same name and version
    server = scoped_key(
        str(registry.uri), getattr(getattr(registry, "scope", None), "workspace", None)
    )
    parts = [server, info.name, str(info.version), str(info.source), str(created)]
    return root / hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def cached_copy(registry: Any, name: str, version: str | int, info: Any = None) -> Path | None:
    """A local copy of the version's files, downloaded from the registry's server unless the
    cache has it; None when the cache is off. The caller must not modify it.

    ``info`` is the version's record when the caller has it (else it is read: one call).
    """
    root = cache_dir()
    if root is None:
        return None
    from mlflow_plugin.integrity._manifest import download_version

    if info is None or not getattr(info, "source", None):
        info = registry.client.get_model_version(name, str(version))
    entry = _entry(root, registry, info)
    if (entry / "MLmodel").is_file():
        with contextlib.suppress(OSError):
            os.utime(entry)
        return entry
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    try:
        local = download_version(registry, name, str(version), str(staging))
        with contextlib.suppress(OSError):  # else another process stored it first
            os.replace(local, entry)  # atomic: a reader sees all of it or nothing
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _trim(root)
    return entry


def store_copy(registry: Any, info: Any, local: str | Path) -> Path | None:
    """Keep ``local`` (the files a version was just registered from, as uploaded) as the
    version's cached copy; None when the cache is off or the copy could not be stored."""
    root = cache_dir()
    if root is None:
        return None
    entry = _entry(root, registry, info)
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".store-", dir=root))
    except OSError:
        return None
    try:
        shutil.copytree(local, staging / "model")
        with contextlib.suppress(OSError):  # else another process stored it first
            os.replace(staging / "model", entry)
    except OSError:
        return None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _trim(root)
    return entry if (entry / "MLmodel").is_file() else None


def load_model(uri: str, info: Any = None) -> Any:
    """``mlflow.pyfunc.load_model(uri)``, from the local cache when ``uri`` names a registered
    version (``models:/<name>/<version>``) that was downloaded before; ``info`` is the
    version's record when the caller has it."""
    import mlflow.pyfunc

    match = _VERSION_URI.match(uri)
    if match is None or cache_dir() is None:
        return mlflow.pyfunc.load_model(uri)
    from mlflow_plugin.registry._adapter import Registry

    entry = cached_copy(Registry(), match["name"], match["version"], info)
    assert entry is not None
    try:
        return mlflow.pyfunc.load_model(str(entry))
    except Exception:
        shutil.rmtree(entry, ignore_errors=True)  # a copy that does not load is not kept
        raise


def _trim(root: Path) -> None:
    entries = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in entries[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)
