"""Artifact integrity: a SHA-256 manifest of every model file, recorded at registration and
checked before a version serves or becomes champion (``sign``, ``verify``; exit 5 on a mismatch).

Importing the package is cheap: each member's module is imported on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlflow_plugin._internal.lazy import lazy_attributes

if TYPE_CHECKING:
    from mlflow_plugin.integrity._manifest import (
        DIGEST_TAG,
        MANIFEST_TAG,
        REQUIRE_SIGNED_TAG,
        FileEntry,
        IntegrityReport,
        Manifest,
        VersionVerifier,
        digest_tags,
        download_version,
        manifest_of,
        record_digest,
        verify_files,
        verify_version,
    )

__all__ = [
    "DIGEST_TAG",
    "FileEntry",
    "IntegrityReport",
    "MANIFEST_TAG",
    "Manifest",
    "REQUIRE_SIGNED_TAG",
    "VersionVerifier",
    "digest_tags",
    "download_version",
    "manifest_of",
    "record_digest",
    "verify_files",
    "verify_version",
]

_LAZY = {
    "DIGEST_TAG": "_manifest",
    "MANIFEST_TAG": "_manifest",
    "REQUIRE_SIGNED_TAG": "_manifest",
    "FileEntry": "_manifest",
    "IntegrityReport": "_manifest",
    "Manifest": "_manifest",
    "VersionVerifier": "_manifest",
    "digest_tags": "_manifest",
    "download_version": "_manifest",
    "manifest_of": "_manifest",
    "record_digest": "_manifest",
    "verify_files": "_manifest",
    "verify_version": "_manifest",
}

# PEP 562: the members' modules are imported on first use.
__getattr__, __dir__ = lazy_attributes(
    globals(), {name: f"{__name__}.{module}" for name, module in _LAZY.items()}, __all__
)
