"""Version archives: artifacts copied to ``archive_uri`` with their SHA-256 digests, read back
and checked, and a manifest written last (docs/ARCHITECTURE.md, "Retention and doctor").

Layout under the archive URI (any MLflow artifact repository: a path, ``file://``, ``s3://``)::

    <workspace>/<model>/v<version>/artifacts/...  the version's artifacts as in the registry
    <workspace>/<model>/v<version>/manifest.json  which version this is (workspace, model,
                                                  version, run id, source, registration time,
                                                  ``artifact_sha256``), its tags, and per file
                                                  its size and sha256; ``tree_sha256`` over all

An archive without a manifest is incomplete and is rewritten; one whose files do not match the
manifest, or that holds another version (another workspace's, or a deleted and re-created
model's version of the same number), fails with :class:`ArchiveError` (exit 5) and is never
reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mlflow_plugin.errors import IntegrityError
from mlflow_plugin.mlflow_io._artifacts import upload_artifacts
from mlflow_plugin.mlflow_io._client import wrap_mlflow_errors
from mlflow_plugin.mlflow_io._workspace import DEFAULT_WORKSPACE, active_workspace
from mlflow_plugin.registry._adapter import Registry
from mlflow_plugin.settings import TAG_PREFIX
from mlflow_plugin.types import VersionInfo

if TYPE_CHECKING:
    from mlflow_plugin.mlflow_io._workspace import Scope

__all__ = [
    "RESTORED_FROM_TAG",
    "ArchiveError",
    "ArchiveRecord",
    "archive_path",
    "archive_version",
    "archive_workspace",
    "artifact_bytes",
    "delete_artifacts",
    "read_archive",
    "restore_version",
]

RESTORED_FROM_TAG = TAG_PREFIX + "restored_from"
RESTORE_EXPERIMENT = "mlflow_plugin-restores"
_MANIFEST = "manifest.json"


class ArchiveError(IntegrityError):
    """An archive is missing, incomplete or does not match its digests (exit 5)."""


@dataclass(frozen=True)
class ArchiveRecord:
    """A verified archive of one version."""

    model: str
    version: str
    uri: str
    tree_sha256: str
    bytes: int
    manifest: dict[str, Any]


#: The manifest keys that say which version an archive holds; all must match to reuse it.
_IDENTITY = ("workspace", "model", "version", "run_id", "source", "created_ms", "artifact_sha256")


def archive_path(workspace: str, model: str, version: str) -> str:
    return f"{workspace}/{model}/v{version}"


def archive_workspace(registry: Any) -> str:
    """The workspace whose versions ``registry`` reads: its scope's (the REST API's caller),
    else the process's, else MLflow's ``default``."""
    scope = getattr(registry, "scope", None)
    workspace = scope.workspace if scope is not None else active_workspace()
    return workspace or DEFAULT_WORKSPACE


def _identity(version: VersionInfo, workspace: str, artifact_sha256: str) -> dict[str, Any]:
    return {
        "workspace": workspace,
        "model": version.name,
        "version": version.version,
        "run_id": version.run_id or "",
        "source": version.source or "",
        "created_ms": version.created_ms,
        "artifact_sha256": artifact_sha256,
    }


def _other_version(manifest: dict[str, Any], identity: dict[str, Any]) -> list[str]:
    """The identity keys on which an archive's manifest differs from the version's."""
    return [
        f"{key} {manifest.get(key)!r}, not {identity[key]!r}"
        for key in _IDENTITY
        if manifest.get(key) != identity[key]
    ]


def _repo(uri: str, tracking_uri: str | None = None) -> Any:
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(uri, tracking_uri=tracking_uri)


def _digests(root: Path) -> dict[str, dict[str, Any]]:
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        files[path.relative_to(root).as_posix()] = {
            "sha256": digest.hexdigest(),
            "size": path.stat().st_size,
        }
    return files


def _tree_digest(files: dict[str, dict[str, Any]]) -> str:
    lines = "".join(f"{meta['sha256']}  {name}\n" for name, meta in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path


def archive_version(registry: Registry, version: VersionInfo, archive_uri: str) -> ArchiveRecord:
    """Copy ``version``'s artifacts to the archive, read them back, check every digest, then
    write the manifest.

    The version's files are downloaded (and checked against its recorded
    ``mlflow_plugin.sha256``) on every call: an archive already at the path is reused only when
    its manifest names this very version (workspace, model, version, run id, source,
    registration time, artifact digest) and its files, verified against that manifest, are
    this version's files (idempotent reruns).

    Raises:
        ArchiveError: the copy read back does not match what was downloaded, or the path holds
            an archive of another version (never overwritten, never trusted).
    """
    import mlflow.artifacts

    from mlflow_plugin.integrity._manifest import manifest_of

    workspace = archive_workspace(registry)
    where = archive_path(workspace, version.name, version.version)
    repo = _repo(archive_uri)
    with tempfile.TemporaryDirectory(prefix="mlflow-plugin-archive-") as tmp:
        source_dir = Path(tmp, "source")
        source_dir.mkdir()
        download_uri = registry.artifact_uri(version.name, version.version)
        scope = _scope(registry, download_uri)
        with wrap_mlflow_errors(
            f"download {version.name!r} version {version.version}", registry.uri
        ):
            if scope is not None:
                from mlflow_plugin.mlflow_io._artifacts import download_scoped

                local = download_scoped(registry.uri, download_uri, str(source_dir), scope)
            else:
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=download_uri, dst_path=str(source_dir), tracking_uri=registry.uri
                )
        _check_recorded_digest(version, local, download_uri)
        files = _digests(Path(local))
        identity = _identity(version, workspace, manifest_of(local).digest)
        existing = read_archive(
            archive_uri, version.name, version.version, workspace=workspace, missing_ok=True
        )
        if existing is not None:
            _check_same_version(existing, identity, files)
            return existing
        with wrap_mlflow_errors(f"write archive {_join(archive_uri, where)}"):
            repo.log_artifacts(local, f"{where}/artifacts")
        back = Path(tmp, "back")
        back.mkdir()
        with wrap_mlflow_errors(f"read back archive {_join(archive_uri, where)}"):
            copied = repo.download_artifacts(f"{where}/artifacts", dst_path=str(back))
        if _digests(Path(copied)) != files:
            raise ArchiveError(
                f"archive of {version.name} version {version.version} at "
                f"{_join(archive_uri, where)} does not match the registry's artifacts "
                "(a partial archive of another version there?); not deleted"
            )
        manifest = {
            **identity,
            "download_uri": download_uri,
            "tags": dict(version.tags),
            "archived_ms": int(time.time() * 1000),
            "files": files,
            "tree_sha256": _tree_digest(files),
        }
        manifest_file = Path(tmp, _MANIFEST)
        manifest_file.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
        with wrap_mlflow_errors(f"write archive manifest {_join(archive_uri, where)}"):
            repo.log_artifact(str(manifest_file), where)
    record = read_archive(archive_uri, version.name, version.version, workspace=workspace)
    assert record is not None
    _check_same_version(record, identity, files)
    return record


def _check_same_version(
    record: ArchiveRecord, identity: dict[str, Any], files: dict[str, dict[str, Any]]
) -> None:
    """Refuse an archive that is not ``identity``'s version or whose (verified) files are not
    the version's files."""
    differs = _other_version(record.manifest, identity)
    if record.manifest.get("files") != files:
        differs.append("its files are not this version's")
    if differs:
        raise ArchiveError(
            f"{record.uri} holds an archive of another version ({'; '.join(differs)}); "
            f"{identity['model']} version {identity['version']} of workspace "
            f"{identity['workspace']!r} is not archived there and not deleted: move that "
            "archive away or configure another archive location",
            differs,
        )


def _check_recorded_digest(version: VersionInfo, local: str, where: str) -> None:
    """Refuse to archive files that no longer match the version's recorded ``mlflow_plugin.sha256``
    (:mod:`mlflow_plugin.integrity._manifest`), so an archive never blesses tampered artifacts. A version
    registered before digests were recorded is archived as it is (trust on first use)."""
    from mlflow_plugin.integrity._manifest import verify_files

    report = verify_files(local, dict(version.tags))
    if not report.ok and not report.trusted_on_first_use:
        raise ArchiveError(
            f"{version.name} version {version.version} at {where} does not match its recorded "
            f"digest: {'; '.join(report.problems)}; not archived, not deleted",
            report.problems,
        )


def read_archive(
    archive_uri: str,
    model: str,
    version: str,
    *,
    workspace: str = DEFAULT_WORKSPACE,
    missing_ok: bool = False,
    dst: str | os.PathLike[str] | None = None,
) -> ArchiveRecord | None:
    """Read and verify an archive (every file against the manifest's digests).

    Args:
        workspace: the workspace the archived version was in.
        dst: keep the verified files there (``record.manifest["local_dir"]`` says where);
            default a temporary directory, removed on return.
        missing_ok: return None when there is no manifest (no or an incomplete archive).

    Raises:
        ArchiveError: no manifest (unless ``missing_ok``), or files that do not match it.
    """
    where = archive_path(workspace, model, version)
    uri = _join(archive_uri, where)
    repo = _repo(archive_uri)
    with tempfile.TemporaryDirectory(prefix="mlflow-plugin-archive-") as tmp:
        target = Path(dst) if dst is not None else Path(tmp)
        target.mkdir(parents=True, exist_ok=True)
        try:
            manifest_file = repo.download_artifacts(f"{where}/{_MANIFEST}", dst_path=str(target))
            manifest = json.loads(Path(manifest_file).read_text(encoding="utf-8"))
        except Exception as exc:  # noqa: BLE001 - any repository's "not there"
            if missing_ok:
                return None
            raise ArchiveError(f"no complete archive at {uri}: {exc}") from exc
        try:
            local = Path(repo.download_artifacts(f"{where}/artifacts", dst_path=str(target)))
        except Exception as exc:  # noqa: BLE001
            raise ArchiveError(f"archive at {uri} has no artifacts: {exc}") from exc
        files = _digests(local)
        if files != manifest.get("files") or _tree_digest(files) != manifest.get("tree_sha256"):
            changed = sorted(
                set(files) ^ set(manifest.get("files", {}))
                | {n for n in files if manifest.get("files", {}).get(n) != files[n]}
            )
            raise ArchiveError(
                f"archive at {uri} does not match its manifest: {', '.join(changed)}"
            )
        if dst is not None:
            manifest["local_dir"] = str(local)
    return ArchiveRecord(
        model=model,
        version=version,
        uri=uri,
        tree_sha256=manifest["tree_sha256"],
        bytes=sum(int(m["size"]) for m in files.values()),
        manifest=manifest,
    )


def restore_version(
    registry: Registry,
    archive_uri: str,
    model: str,
    version: str,
    *,
    into: str | None = None,
    workspace: str | None = None,
) -> VersionInfo:
    """Register a new version of ``into`` (default ``model``) from a verified archive.

    The artifacts are logged to a run of the ``mlflow_plugin-restores`` experiment (through
    MLflow's artifact repositories, whatever the registry's client) and registered from it,
    with the archived version's tags plus ``mlflow_plugin.restored_from``. A failed upload
    ends the run ``FAILED``: no run is left ``RUNNING``.

    Args:
        workspace: the workspace the version was archived from (default: the registry's).

    Raises:
        ArchiveError: the archive is missing or does not verify.
    """
    client = registry.client
    where = workspace or archive_workspace(registry)
    with tempfile.TemporaryDirectory(prefix="mlflow-plugin-restore-") as tmp:
        record = read_archive(archive_uri, model, version, workspace=where, dst=tmp)
        assert record is not None
        with wrap_mlflow_errors("restore experiment", registry.uri):
            exp = client.get_experiment_by_name(RESTORE_EXPERIMENT)
            exp_id = exp.experiment_id if exp else client.create_experiment(RESTORE_EXPERIMENT)
            run = client.create_run(
                exp_id,
                tags={
                    "mlflow.runName": f"restore-{model}-v{version}",
                    RESTORED_FROM_TAG: record.uri,
                },
            )
        run_id = run.info.run_id
        try:
            upload_artifacts(registry.uri, run_id, record.manifest["local_dir"], "model")
        except BaseException:
            with wrap_mlflow_errors("end the failed restore run", registry.uri):
                client.set_terminated(run_id, "FAILED")
            raise
        with wrap_mlflow_errors("restore run", registry.uri):
            client.set_terminated(run_id, "FINISHED")
    tags = {k: str(v) for k, v in (record.manifest.get("tags") or {}).items()}
    tags[RESTORED_FROM_TAG] = record.uri
    return registry.register_version(into or model, f"runs:/{run_id}/model", run_id, tags)


def _scope(registry: Any, download_uri: str) -> Scope | None:
    """The caller's scope when ``registry`` acts for one (the REST API) and the files are on
    its tracking server: then they are read and deleted with the caller's workspace and
    credentials, never the process's (docs/ARCHITECTURE.md, "Organisations")."""
    scope = getattr(registry, "scope", None)
    if scope is None or not download_uri.startswith("mlflow-artifacts:"):
        return None
    return cast("Scope", scope)


def artifact_bytes(download_uri: str, tracking_uri: str, scope: Scope | None = None) -> int:
    """Total size of the files under an artifact URI (listing only, nothing downloaded);
    ``scope``: list with that caller's workspace and credentials."""
    if scope is not None:
        from mlflow_plugin.mlflow_io._artifacts import list_scoped

        return sum(size for _, size in list_scoped(tracking_uri, download_uri, scope))
    repo = _repo(download_uri, tracking_uri)
    total, stack = 0, [None]
    with wrap_mlflow_errors(f"list {download_uri}", tracking_uri):
        while stack:
            for info in repo.list_artifacts(stack.pop()):
                if info.is_dir:
                    stack.append(info.path)
                else:
                    total += int(info.file_size or 0)
    return total


def delete_artifacts(download_uri: str, tracking_uri: str, scope: Scope | None = None) -> None:
    """Delete the files under an artifact URI (what a deleted version no longer needs)."""
    if scope is not None:
        from mlflow_plugin.mlflow_io._artifacts import delete_scoped

        delete_scoped(tracking_uri, download_uri, scope)
        return
    with wrap_mlflow_errors(f"delete artifacts {download_uri}", tracking_uri):
        _repo(download_uri, tracking_uri).delete_artifacts()
