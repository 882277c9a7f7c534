"""``EncryptedArtifactRepository``: MLflow's artifact-store extension point
(``mlflow.artifact_repository`` entry points ``encrypted+file``, ``encrypted+s3``, ...) wrapping
the repository of the URI without the ``encrypted+`` prefix.

Uploads are encrypted to a temporary file, then handed to the inner repository; downloads fetch
the ciphertext, decrypt it one chunk at a time into a temporary file next to the destination and
rename it into place only when every chunk authenticated. ``get_local_path`` is ``None`` so that
``mlflow server`` never serves the stored (encrypted) file itself but comes through
``download_artifacts``. docs/ARCHITECTURE.md, "Encryption at rest".
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator

from mlflow.entities import FileInfo
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.store.artifact.artifact_repo import ArtifactRepository
from mlflow.utils.workspace_context import get_request_workspace
from mlflow.utils.workspace_utils import DEFAULT_WORKSPACE_NAME

from mlflow_plugin.encryption._format import (
    EncryptionFailure,
    Header,
    decrypt_stream,
    encrypt_stream,
    plaintext_size,
    read_header,
)
from mlflow_plugin.encryption._keys import keyring

__all__ = [
    "EncryptedArtifactError",
    "EncryptedArtifactRepository",
    "MARKER",
    "SCHEME_PREFIX",
]

SCHEME_PREFIX = "encrypted+"
#: Every error of this repository starts with ``MARKER[kind]``; the message crosses the
#: tracking server (HTTP 400) and MLflow's download wrapper intact, and the CLI maps it back
#: (mlflow_plugin.mlflow_io._client.as_plugin_error).
MARKER = "mlflow_plugin.encryption"


class EncryptedArtifactError(MlflowException):
    """An artifact cannot be encrypted/decrypted; HTTP 400 on the server (never a retried 500)."""

    def __init__(self, failure: EncryptionFailure) -> None:
        super().__init__(f"{MARKER}[{failure.kind}] {failure}", error_code=INVALID_PARAMETER_VALUE)
        self.kind = failure.kind


def current_workspace() -> str:
    """The workspace of this request (server) or process (``MLFLOW_WORKSPACE``), else default."""
    return get_request_workspace() or DEFAULT_WORKSPACE_NAME


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except EncryptionFailure as failure:
        raise EncryptedArtifactError(failure) from None


def encrypt_file(src_path: str, dst_path: str, workspace: str) -> Header:
    """Encrypt one local file with the workspace's current key."""
    with _translated():
        key = keyring().current(workspace)
        with open(src_path, "rb") as src, open(dst_path, "wb") as dst:
            return encrypt_stream(src, dst, key.secret, key.id, workspace)


def decrypt_file(src_path: str, dst_path: str, what: str, *, any_workspace: bool = False) -> Header:
    """Decrypt one local file into ``dst_path`` (written only if every chunk authenticates).

    A file of another workspace than the current request's (or ``MLFLOW_WORKSPACE``) is refused
    unless ``any_workspace`` (``rekey`` over a whole store).
    """
    request_workspace = None if any_workspace else get_request_workspace()
    ring = keyring()

    def key_for(header: Header) -> bytes:
        if request_workspace and request_workspace != header.workspace:
            raise EncryptionFailure(
                "workspace_mismatch",
                f"{what} belongs to workspace '{header.workspace}', "
                f"not to the current workspace '{request_workspace}'",
            )
        return ring.get(header.workspace, header.key_id).secret

    partial = f"{dst_path}.mlflow-plugin-partial"
    try:
        with _translated(), open(src_path, "rb") as src, open(partial, "wb") as dst:
            header = decrypt_stream(src, dst, key_for, what=what)
        os.replace(partial, dst_path)
        return header
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(partial)


class EncryptedArtifactRepository(ArtifactRepository):
    """Encrypts every file on its way into ``inner`` and decrypts it on the way out."""

    def __init__(
        self, artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None
    ) -> None:
        if not artifact_uri.startswith(SCHEME_PREFIX):
            raise MlflowException.invalid_parameter_value(
                f"{artifact_uri!r} is not an {SCHEME_PREFIX}<scheme>:// URI"
            )
        # Imported here: MLflow loads this class while its registry module is still importing.
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        super().__init__(artifact_uri, tracking_uri, registry_uri)
        self.inner = get_artifact_repository(
            artifact_uri[len(SCHEME_PREFIX) :], tracking_uri, registry_uri
        )

    # -- writes -----------------------------------------------------------------------------

    def log_artifact(self, local_file: str, artifact_path: str | None = None) -> None:
        with tempfile.TemporaryDirectory(prefix="mlflow-plugin-enc-") as tmp:
            target = os.path.join(tmp, os.path.basename(local_file))
            encrypt_file(local_file, target, current_workspace())
            self.inner.log_artifact(target, artifact_path)

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        workspace = current_workspace()
        with tempfile.TemporaryDirectory(prefix="mlflow-plugin-enc-") as tmp:
            for dirpath, _dirs, files in os.walk(local_dir):
                rel = os.path.relpath(dirpath, local_dir)
                out_dir = os.path.normpath(os.path.join(tmp, rel))
                os.makedirs(out_dir, exist_ok=True)
                for name in files:
                    encrypt_file(
                        os.path.join(dirpath, name), os.path.join(out_dir, name), workspace
                    )
            self.inner.log_artifacts(tmp, artifact_path)

    # -- reads ------------------------------------------------------------------------------

    def list_artifacts(self, path: str | None = None) -> list[FileInfo]:
        return [
            FileInfo(f.path, f.is_dir, plaintext_size(f.file_size))
            if not f.is_dir and f.file_size is not None
            else f
            for f in self.inner.list_artifacts(path)
        ]

    def get_local_path(self, artifact_path: str) -> str | None:
        return None  # the stored file is ciphertext: never serve it as is

    def _download_file(self, remote_file_path: str, local_path: str) -> None:
        what = f"artifact '{remote_file_path}'"
        stored = self.inner.get_local_path(remote_file_path)
        if stored is not None:
            decrypt_file(stored, local_path, what)
            return
        fetched = f"{local_path}.mlflow-plugin-ciphertext"
        try:
            self.inner._download_file(remote_file_path, fetched)
            decrypt_file(fetched, local_path, what)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(fetched)

    def delete_artifacts(self, artifact_path: str | None = None) -> None:
        self.inner.delete_artifacts(artifact_path)

    # -- rotation ---------------------------------------------------------------------------

    def rekey(
        self, path: str | None = None, *, dry_run: bool = False, plaintext: bool = False
    ) -> tuple[list[tuple[str, str]], list[str]]:
        """Re-encrypt every file under ``path`` whose key is not its workspace's current key.

        The plaintext (and so the ``mlflow_plugin.sha256`` digest) is unchanged. Files that are
        not encrypted yet (a store that predates encryption) are encrypted when ``plaintext``,
        for the workspace their path names (MLflow's ``workspaces/<name>/...`` layout), else
        ``default``; otherwise they are listed and left alone.

        Returns:
            ``(path, "old_id -> new_id")`` per file re-encrypted (or to be, ``dry_run``), and
            the paths of plaintext files left alone.
        """
        done: list[tuple[str, str]] = []
        skipped: list[str] = []
        ring = keyring()
        with tempfile.TemporaryDirectory(prefix="mlflow-plugin-rekey-") as tmp:
            for info in self.inner._iter_artifacts_recursive(path or ""):
                if info.is_dir:
                    continue
                what = f"artifact '{info.path}'"
                stored = self.inner.get_local_path(info.path)
                if stored is None:
                    stored = os.path.join(tmp, "stored")
                    self.inner._download_file(info.path, stored)
                with _translated(), open(stored, "rb") as fh:
                    try:
                        header: Header | None = read_header(fh, what)[0]
                    except EncryptionFailure as failure:
                        if failure.kind != "not_encrypted":
                            raise
                        header = None
                    workspace = header.workspace if header else _workspace_of(info.path)
                    newest = ring.current(workspace)
                if header is None and not plaintext:
                    skipped.append(info.path)
                    continue
                if header is not None and header.key_id == newest.id:
                    continue
                done.append(
                    (info.path, f"{header.key_id if header else 'plaintext'} -> {newest.id}")
                )
                if dry_run:
                    continue
                plain = os.path.join(tmp, "plain")
                again = os.path.join(tmp, "out", posixpath.basename(info.path))
                os.makedirs(os.path.dirname(again), exist_ok=True)
                if header is None:
                    shutil.copyfile(stored, plain)
                else:
                    decrypt_file(stored, plain, what, any_workspace=True)
                with _translated(), open(plain, "rb") as src, open(again, "wb") as dst:
                    encrypt_stream(src, dst, newest.secret, newest.id, workspace)
                self.inner.log_artifact(again, posixpath.dirname(info.path) or None)
                shutil.rmtree(os.path.dirname(again))
        return done, skipped


def _workspace_of(path: str) -> str:
    parts = path.split("/")
    if len(parts) > 2 and parts[0] == "workspaces" and parts[1]:
        return parts[1]
    return DEFAULT_WORKSPACE_NAME
