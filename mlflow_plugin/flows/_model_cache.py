"""A local cache of downloaded model versions, so a retrain does not download the champion again.

Loading ``models:/<name>/<version>`` from a tracking server costs a dozen HTTP round trips
(download URI, the prompt check, the artifact listing, one GET per file). Every retrain scores
the champion, which the previous retrain downloaded as its candidate; a registered version's
artifacts never change, so the copy is kept, keyed by the server, the name, the version and
the version's source and creation time (one ``model-versions/get`` to read them: a model
deleted and registered again under the same name gets a new key).

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

__all__ = ["KEEP", "cache_dir", "load_model"]

KEEP = 16
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")


def cache_dir() -> Path | None:
    """The cache directory, or None when the cache is off."""
    raw = os.environ.get("MLFLOW_PLUGIN_MODEL_CACHE", "").strip()
    if raw.lower() in ("off", "0", "false", "no"):
        return None
    return Path(raw).expanduser() if raw else Path.home() / ".cache" / "mlflow_plugin" / "models"


def load_model(uri: str) -> Any:
    """``mlflow.pyfunc.load_model(uri)``, from the local cache when ``uri`` names a registered
    version (``models:/<name>/<version>``) that was downloaded before."""
    import mlflow
    import mlflow.pyfunc

    match = _VERSION_URI.match(uri)
    root = cache_dir()
    if match is None or root is None:
        return mlflow.pyfunc.load_model(uri)
    from mlflow_plugin._client import make_client

    tracking_uri = str(mlflow.get_tracking_uri())
    mv = make_client(tracking_uri, str(mlflow.get_registry_uri())).get_model_version(
        match["name"], match["version"]
    )
    key = hashlib.sha256(
        "\n".join(
            [tracking_uri, mv.name, str(mv.version), str(mv.source), str(mv.creation_timestamp)]
        ).encode()
    ).hexdigest()[:32]
    entry = root / key
    if (entry / "MLmodel").is_file():
        with contextlib.suppress(OSError):
            os.utime(entry)
        return mlflow.pyfunc.load_model(str(entry))
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(staging))
        try:
            os.replace(local, entry)  # atomic: a reader sees all of it or nothing
        except OSError:  # another process stored it first
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    try:
        model = mlflow.pyfunc.load_model(str(entry))
    except Exception:
        shutil.rmtree(entry, ignore_errors=True)  # a copy that does not load is not kept
        raise
    _trim(root)
    return model


def _trim(root: Path) -> None:
    entries = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in entries[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)
