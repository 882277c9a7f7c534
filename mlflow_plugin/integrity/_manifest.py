"""Artifact integrity: a SHA-256 manifest of every model file, recorded at registration and
checked before anything is unpickled.

At registration :func:`record_digest` hashes every file of the version's artifacts (relative
path, size, SHA-256) into a :class:`Manifest`; the SHA-256 of the manifest's canonical JSON is
the version tag ``mlflow_plugin.sha256`` and the manifest itself the tag
``mlflow_plugin.manifest`` (so a mismatch can name the file). :func:`verify_version` downloads
the version and compares; ``promote``, ``rollback`` and every load in serving call it *before*
``mlflow.pyfunc.load_model`` ever opens a pickle.

A version registered outside the pipeline has no digest. Its first promotion records one (trust
on first use, said in the deployment event), unless the registered model carries the tag
``mlflow_plugin.require_signed=true``: then it is refused until ``mlflow-plugin sign`` records
the digest under a person's name.

Why not OpenSSF ``model-signing``: its value is signatures (Sigstore identities, keys,
certificates); its hash-only mode produces an in-toto statement meant to be signed, and the
package pulls in ``sigstore``, ``tuf``, ``cryptography``, ``rfc3161-client`` and a dozen more.
We need a digest we can store as a tag and compare, which is ``hashlib`` over files
(docs/ARCHITECTURE.md, "Serving and artifact integrity").
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from mlflow_plugin.errors import BadInput, IntegrityError, MlflowPluginError
from mlflow_plugin.settings import TAG_PREFIX
from mlflow_plugin.types import VersionInfo

__all__ = [
    "DIGEST_TAG",
    "MANIFEST_TAG",
    "REQUIRE_SIGNED_TAG",
    "FileEntry",
    "IntegrityReport",
    "Manifest",
    "VersionVerifier",
    "digest_tags",
    "download_version",
    "manifest_of",
    "record_digest",
    "verify_files",
    "verify_version",
]

DIGEST_TAG = TAG_PREFIX + "sha256"
MANIFEST_TAG = TAG_PREFIX + "manifest"
REQUIRE_SIGNED_TAG = TAG_PREFIX + "require_signed"
_CHUNK = 1 << 20
# Registry tag values hold up to 100,000 characters; a manifest larger than this is not stored
# (the digest still is: a mismatch is then reported without naming the file).
_MAX_MANIFEST_CHARS = 90_000


class _RegistryLike(Protocol):
    def artifact_uri(self, name: str, version: str | int) -> str: ...
    def get_model(self, name: str) -> Any: ...
    def get_version(self, name: str, version: str | int) -> Any: ...
    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None: ...


@dataclass(frozen=True)
class FileEntry:
    """One artifact file: path relative to the model's root (``/``-separated), size, SHA-256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """Every file of a model's artifacts, sorted by path."""

    files: tuple[FileEntry, ...]

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON: the value of the ``mlflow_plugin.sha256`` tag."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def to_json(self) -> str:
        rows = [[f.path, f.size, f.sha256] for f in self.files]
        return json.dumps({"v": 1, "files": rows}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        return cls(tuple(FileEntry(str(p), int(s), str(h)) for p, s, h in data["files"]))


@dataclass(frozen=True)
class IntegrityReport:
    """What :func:`verify_version` found.

    Attributes:
        ok: the files may be loaded (they match the recorded digest, or there is none and
            signed versions are not required).
        digest: the digest recorded on the version (None when none is).
        problems: one line per offending file (empty when ``ok``).
        trusted_on_first_use: no digest was recorded; ``actual`` is what the files hash to now.
        actual: the digest of the downloaded files.
        require_signed: the model requires a recorded digest.
        manifest: the downloaded files' manifest.
    """

    ok: bool
    digest: str | None
    problems: list[str] = field(default_factory=list)
    trusted_on_first_use: bool = False
    actual: str = ""
    require_signed: bool = False
    manifest: Manifest | None = None

    def summary(self) -> str:
        if self.ok and not self.trusted_on_first_use:
            return f"artifacts match sha256 {self.digest}"
        if self.ok:
            return f"no digest recorded: trusted on first use (sha256 {self.actual})"
        return "; ".join(self.problems)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def manifest_of(root: str) -> Manifest:
    """Hash every regular file under ``root`` (symlinks are refused: they could point anywhere)."""
    entries: list[FileEntry] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if os.path.islink(full):
                raise IntegrityError(
                    f"artifact {rel} is a symbolic link", [f"{rel}: symbolic link"]
                )
            entries.append(FileEntry(rel, os.path.getsize(full), _sha256(full)))
    return Manifest(tuple(sorted(entries, key=lambda e: e.path)))


def _compare(expected: Manifest, actual: Manifest) -> list[str]:
    want = {f.path: f for f in expected.files}
    have = {f.path: f for f in actual.files}
    problems = []
    for path in sorted(want.keys() | have.keys()):
        w, h = want.get(path), have.get(path)
        if h is None:
            problems.append(f"{path}: missing")
        elif w is None:
            problems.append(f"{path}: not in the recorded manifest")
        elif (w.size, w.sha256) != (h.size, h.sha256):
            problems.append(
                f"{path}: sha256 {h.sha256[:16]}... ({h.size} bytes) does not match the recorded "
                f"{w.sha256[:16]}... ({w.size} bytes)"
            )
    return problems


def verify_files(
    root: str, tags: dict[str, str], *, require_signed: bool = False
) -> IntegrityReport:
    """Check the files under ``root`` against a version's tags (no network)."""
    actual = manifest_of(root)
    digest = tags.get(DIGEST_TAG) or None
    if digest is None:
        if require_signed:
            problem = f"no {DIGEST_TAG} recorded and the model requires signed versions"
            return IntegrityReport(False, None, [problem], True, actual.digest, True, actual)
        return IntegrityReport(True, None, [], True, actual.digest, False, actual)
    if actual.digest == digest:
        return IntegrityReport(True, digest, [], False, actual.digest, require_signed, actual)
    problems: list[str] = []
    recorded = tags.get(MANIFEST_TAG)
    if recorded:
        try:
            expected = Manifest.from_json(recorded)
        except (ValueError, KeyError, TypeError):
            expected = None
        if expected is not None and expected.digest == digest:
            problems = _compare(expected, actual)
        else:
            problems = [f"{MANIFEST_TAG} does not match {DIGEST_TAG}"]
    if not problems:
        problems = [f"artifacts hash to {actual.digest}, recorded {DIGEST_TAG} is {digest}"]
    return IntegrityReport(False, digest, problems, False, actual.digest, require_signed, actual)


def download_version(registry: Any, model: str, version: str, dst: str) -> str:
    """Download a version's files into ``dst`` (nothing is deserialised); their local path.

    The files are fetched from the location the registry reports for the version, on the
    registry's own server (not through ``models:/``, which resolves against the process-wide
    registry URI). From an encrypted store they arrive decrypted (the digest is of the
    plaintext: docs/ARCHITECTURE.md, "Encryption at rest").

    Raises:
        ConfigError: an encrypted store has no key for the files' workspace / key id.
        IntegrityError: an encrypted file failed authentication (wrong key, tampered).
    """
    from mlflow_plugin.mlflow_io._client import encryption_error

    uri = getattr(registry, "uri", "") or None
    source = registry.artifact_uri(model, version)
    client: Any = getattr(registry, "client", None)
    if callable(getattr(client, "serves", None)) and client.serves(source):
        # Our REST client (controller commands): files the server proxies, fetched without
        # importing mlflow; other stores (s3, gs, file, ...) need MLflow's repositories below.
        try:
            return str(client.download_artifacts(source, dst))
        except Exception as exc:
            ours = encryption_error(str(exc))
            if ours is None:
                raise
            raise ours from exc
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    scope = getattr(registry, "scope", None)
    if scope is not None and uri and source.startswith("mlflow-artifacts:"):
        from mlflow_plugin.mlflow_io._artifacts import download_scoped

        return download_scoped(uri, source, dst, scope)  # the caller's credentials, not ours
    try:
        return str(
            mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=dst, tracking_uri=uri, registry_uri=uri
            )
        )
    except MlflowException as exc:
        # An encrypted store's missing key or failed tag: our one-line error (exit 2 / 5).
        ours = encryption_error(str(exc))
        if ours is None:
            raise
        raise ours from exc


@contextlib.contextmanager
def _downloaded(registry: _RegistryLike, model: str, version: str) -> Iterator[str]:
    tmp = tempfile.mkdtemp(prefix="mlflow-plugin-verify-")
    try:
        yield download_version(registry, model, version, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _signed_required(model_tags: Mapping[str, str]) -> bool:
    return model_tags.get(REQUIRE_SIGNED_TAG, "false").lower() == "true"


def verify_version(registry: _RegistryLike, model: str, version: str | int) -> IntegrityReport:
    """Download ``model`` version ``version`` and check its files against the recorded digest.

    Raises:
        NotFound: unknown model or version.
        RegistryUnavailable: the server could not be reached.
    """
    v = str(version)
    info = registry.get_version(model, v)
    required = _signed_required(registry.get_model(model).tags)
    with _downloaded(registry, model, v) as root:
        return verify_files(root, dict(info.tags), require_signed=required)


def digest_tags(manifest: Manifest) -> dict[str, str]:
    """The version tags that record ``manifest`` (the manifest when it fits, and its digest),
    for a version registered with them (the files hashed before the upload, no extra call)."""
    text = manifest.to_json()
    tags = {MANIFEST_TAG: text} if len(text) <= _MAX_MANIFEST_CHARS else {}
    return {**tags, DIGEST_TAG: manifest.digest}


def _write(registry: _RegistryLike, model: str, version: str, manifest: Manifest) -> None:
    # The digest last: a reader that sees it also sees the manifest it summarises.
    for key, value in digest_tags(manifest).items():
        registry.set_version_tag(model, version, key, value)


def record_digest(
    registry: _RegistryLike, model: str, version: str | int, *, path: str | None = None
) -> Manifest:
    """Hash the version's files and record the manifest and its digest as version tags.

    Called at registration (and by ``sign``). ``path`` is a local copy of the artifacts when
    the caller has one; otherwise they are downloaded.
    """
    v = str(version)
    if path is not None:
        manifest = manifest_of(path)
    else:
        with _downloaded(registry, model, v) as root:
            manifest = manifest_of(root)
    _write(registry, model, v, manifest)
    return manifest


def sign_version(
    registry: _RegistryLike,
    ledger: Any,
    model: str,
    version: str | int,
    *,
    force: bool = False,
    reason: str = "",
) -> tuple[Manifest, Any]:
    """Record the digest of a version's current files, with a ledger event by the actor.

    A version whose files no longer match a digest already recorded is refused (re-signing
    would bless the change) unless ``force`` with a ``reason``.

    Raises:
        IntegrityError: the files do not match the recorded digest and ``force`` is not set.
    """
    v = str(version)
    info = registry.get_version(model, v)
    with _downloaded(registry, model, v) as root:
        report = verify_files(root, dict(info.tags))
        if not report.ok and not report.trusted_on_first_use:
            if not force:
                raise IntegrityError(
                    f"{model} version {v} does not match its recorded digest: {report.summary()}",
                    report.problems,
                )
            if not reason.strip():
                raise BadInput("--force needs a --reason")
        manifest = report.manifest or manifest_of(root)
    _write(registry, model, v, manifest)
    previous = report.digest or ""
    extra = {"integrity": "signed", "sha256": manifest.digest}
    if previous and previous != manifest.digest:
        extra.update(previous_sha256=previous, forced="true")
    event = ledger.record(
        "config_change",
        model,
        version=v,
        message=reason or f"signed version {v}: sha256 {manifest.digest}",
        extra=extra,
    )
    return manifest, event


class VersionVerifier:
    """The controller's integrity hook: verify a version before an alias points at it.

    Called as ``verifier(model, version, force=...)``; returns the tags to add to the event
    (``integrity`` = ``verified`` | ``trust_on_first_use`` | ``forced``, ``sha256``). A version
    without a digest gets one recorded (trust on first use).

    Raises:
        IntegrityError: mismatch, or no digest on a model that requires signed versions, and
            ``force`` is not set.
    """

    def __init__(self, registry: _RegistryLike) -> None:
        self.registry = registry

    def __call__(
        self,
        model: str,
        version: str,
        *,
        force: bool = False,
        version_info: VersionInfo | None = None,
        model_tags: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        info = version_info or self.registry.get_version(model, version)
        if model_tags is None:
            model_tags = self.registry.get_model(model).tags
        required = _signed_required(model_tags)
        try:
            with _downloaded(self.registry, model, version) as root:
                report = verify_files(root, dict(info.tags), require_signed=required)
        except MlflowPluginError:
            raise
        except Exception as exc:  # noqa: BLE001 - files that cannot be read cannot be verified
            problem = f"artifacts could not be downloaded: {type(exc).__name__}: {exc}"
            report = IntegrityReport(False, info.tags.get(DIGEST_TAG), [problem[:1000]])
        if not report.ok:
            if not force:
                raise IntegrityError(
                    f"{model} version {version} refused: {report.summary()}", report.problems
                )
            return {
                "integrity": "forced",
                "sha256": report.actual,
                "integrity_problems": report.summary()[:4000],
            }
        if report.trusted_on_first_use:
            assert report.manifest is not None
            _write(self.registry, model, version, report.manifest)
            return {"integrity": "trust_on_first_use", "sha256": report.actual}
        return {"integrity": "verified", "sha256": report.actual}
