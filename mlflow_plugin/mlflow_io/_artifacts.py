"""Artifacts through the tracking server's proxy with a caller's credentials (a workspace
:class:`~mlflow_plugin.mlflow_io._workspace.Scope`): list, download and delete a version's
files, and upload with MLflow's own client. Retention and integrity use them; errors come back
as ours (404 -> NotFound, 401/403 -> PermissionDenied, else RegistryError, URI redacted)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mlflow_plugin.errors import BadInput, NotFound, PermissionDenied, RegistryError, redact
from mlflow_plugin.mlflow_io._client import make_client, wrap_mlflow_errors
from mlflow_plugin.settings import artifact_request_timeout

if TYPE_CHECKING:
    from mlflow_plugin.mlflow_io._workspace import Scope

__all__ = ["delete_scoped", "download_scoped", "list_scoped", "upload_artifacts"]


def _scoped(tracking_uri: str, artifact_uri: str, scope: Scope) -> tuple[Any, ...]:
    """``(base, root, auth, headers, timeout, session)`` of the scoped artifact calls."""
    import requests

    parts = urlsplit(artifact_uri)
    if parts.scheme != "mlflow-artifacts" or (parts.netloc and parts.netloc not in tracking_uri):
        raise BadInput(f"cannot reach {artifact_uri!r} for a scoped caller")
    base = tracking_uri.rstrip("/") + "/api/2.0/mlflow-artifacts/artifacts"
    auth = (scope.username, scope.password or "") if scope.username else None
    headers = {"X-MLFLOW-WORKSPACE": scope.workspace} if scope.workspace else {}
    timeout = artifact_request_timeout()
    return base, parts.path.strip("/"), auth, headers, timeout, requests.Session()


def list_scoped(tracking_uri: str, artifact_uri: str, scope: Scope) -> list[tuple[str, int]]:
    """Every file under ``artifact_uri`` (``mlflow-artifacts:/…``) as ``(relative path,
    size)``, listed with ``scope``'s workspace and credentials (see :func:`download_scoped`)."""
    import posixpath

    base, root, auth, headers, timeout, session = _scoped(tracking_uri, artifact_uri, scope)
    out: list[tuple[str, int]] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        remote = posixpath.join(root, rel) if rel else root
        with wrap_mlflow_errors(f"artifacts {remote!r}", tracking_uri):
            listing = session.get(
                base, params={"path": remote}, auth=auth, headers=headers, timeout=timeout
            )
        _raise_for(listing, remote, tracking_uri)
        for entry in listing.json().get("files", []):
            child = posixpath.join(rel, posixpath.basename(entry["path"]))
            if entry.get("is_dir"):
                stack.append(child)
            else:
                out.append((child, int(entry.get("file_size") or 0)))
    return out


def delete_scoped(tracking_uri: str, artifact_uri: str, scope: Scope) -> None:
    """Delete the files under ``artifact_uri`` with ``scope``'s workspace and credentials."""
    from urllib.parse import quote

    base, root, auth, headers, timeout, session = _scoped(tracking_uri, artifact_uri, scope)
    with wrap_mlflow_errors(f"delete artifacts {root!r}", tracking_uri):
        resp = session.delete(base + "/" + quote(root), auth=auth, headers=headers, timeout=timeout)
    _raise_for(resp, root, tracking_uri)


def download_scoped(tracking_uri: str, artifact_uri: str, dst: str, scope: Scope) -> str:
    """Download ``artifact_uri`` (``mlflow-artifacts:/…``, served by ``tracking_uri``) into
    ``dst`` with ``scope``'s workspace and credentials; the local path.

    MLflow's artifact repositories take credentials from the environment only; a server
    acting for several callers must not put any caller's there.
    """
    import posixpath
    from pathlib import Path
    from urllib.parse import quote

    base, root, auth, headers, timeout, session = _scoped(tracking_uri, artifact_uri, scope)
    Path(dst).mkdir(parents=True, exist_ok=True)
    for child, _ in list_scoped(tracking_uri, artifact_uri, scope):
        target = Path(dst, *child.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        url = base + "/" + quote(posixpath.join(root, child))
        with wrap_mlflow_errors(f"artifact {child!r}", tracking_uri):
            resp = session.get(url, auth=auth, headers=headers, timeout=timeout, stream=True)
        _raise_for(resp, child, tracking_uri)
        with open(target, "wb") as out:
            for chunk in resp.iter_content(1 << 20):
                out.write(chunk)
    return dst


def upload_artifacts(tracking_uri: str, run_id: str, local_dir: str, artifact_path: str) -> None:
    """Log the files under ``local_dir`` to ``run_id``'s artifacts at ``artifact_path``, with
    MLflow's client and the process's credentials: uploads go through MLflow's artifact
    repositories (``mlflow-artifacts:``, ``s3://``, a path...), which the REST client does not
    implement, whichever client the caller reads the registry with."""
    with wrap_mlflow_errors(f"upload artifacts to run {run_id}", tracking_uri):
        make_client(tracking_uri).log_artifacts(run_id, local_dir, artifact_path)


def _raise_for(resp: Any, what: str, uri: str) -> None:
    if resp.status_code == 404:
        raise NotFound(f"artifact {what!r} does not exist")
    if resp.status_code in (401, 403):
        raise PermissionDenied(
            f"artifact {what!r}: the tracking server answered HTTP {resp.status_code}",
            unauthenticated=resp.status_code == 401,
        )
    if resp.status_code >= 400:
        raise RegistryError(f"artifact {what!r}: {redact(uri)} answered HTTP {resp.status_code}")
