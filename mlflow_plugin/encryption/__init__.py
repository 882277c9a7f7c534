"""Encryption at rest with organisation (workspace) keys, as an MLflow artifact repository.

``mlflow server --artifacts-destination encrypted+file:///srv/mlflow/artifacts`` (or
``encrypted+s3://bucket/path``, ...) stores every artifact as AES-256-GCM ciphertext; see
docs/ARCHITECTURE.md, "Encryption at rest".
"""

from __future__ import annotations

# First: MLflow's artifact registry loads our entry points (which name ``._repo``) while it
# imports; doing that before ``._repo`` is imported below keeps the two imports from
# meeting half-way (a circular import) whichever of mlflow and this package comes first.
import mlflow.store.artifact.artifact_repository_registry  # noqa: F401, I001

from mlflow_plugin.encryption._format import EncryptionFailure, Header, plaintext_size
from mlflow_plugin.encryption._keys import (
    KEY_ENV_PREFIX,
    KEY_FILE_ENV,
    Key,
    Keyring,
    env_name,
    keyring,
)
from mlflow_plugin.encryption._repo import (
    MARKER,
    SCHEME_PREFIX,
    EncryptedArtifactError,
    EncryptedArtifactRepository,
    decrypt_file,
    encrypt_file,
)

__all__ = [
    "EncryptedArtifactError",
    "EncryptedArtifactRepository",
    "EncryptionFailure",
    "Header",
    "KEY_ENV_PREFIX",
    "KEY_FILE_ENV",
    "Key",
    "Keyring",
    "MARKER",
    "SCHEME_PREFIX",
    "decrypt_file",
    "encrypt_file",
    "env_name",
    "keyring",
    "plaintext_size",
]
