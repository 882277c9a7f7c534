"""Every error mlflow_plugin raises on purpose.

The tree::

    MlflowPluginError            base; ``exit_code`` is what the CLI exits with
    ├── BadInput                 exit 2: the caller gave something we cannot use
    │   ├── ConfigError          a policy file, environment variable or parameter is wrong
    │   ├── DataError            a data set is missing, empty or has the wrong columns/types
    │   ├── NotFound             an unknown model, version, alias or workspace
    │   └── PermissionDenied     the tracking server refused the caller (HTTP 401/403)
    ├── GateFailed               exit 3: a gate refused the promotion
    ├── IntegrityError           exit 5: artifact files do not match their recorded digest, or the ledger's hash chain is broken
    ├── RegistryError            exit 1: MLflow refused an operation
    │   ├── PromotionConflict    another promotion holds the model's lock
    │   │   └── LockLost         the lock was lost before a write (nothing was written)
    │   └── RegistryUnavailable  exit 4: the tracking server could not be reached
    └── ModelUnavailable         serving: neither champion nor fallback can answer

Foreign exceptions (``MlflowException``, ``requests`` errors) are wrapped at the edge only,
in :mod:`mlflow_plugin.registry._adapter`, with ``raise ... from exc``.
"""

from __future__ import annotations

import re

__all__ = [
    "redact",
    "BadInput",
    "ConfigError",
    "DataError",
    "GateFailed",
    "IntegrityError",
    "LockLost",
    "MlflowPluginError",
    "ModelUnavailable",
    "NotFound",
    "PermissionDenied",
    "PromotionConflict",
    "RegistryError",
    "RegistryUnavailable",
]


class MlflowPluginError(Exception):
    """Base class; ``exit_code`` is the CLI's exit status for this failure."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        # Errors are printed as one line: collapse whatever a foreign message brought along.
        super().__init__(" ".join(str(message).split()))

    @property
    def message(self) -> str:
        return str(self)


class BadInput(MlflowPluginError):
    exit_code = 2


class PermissionDenied(BadInput):
    """MLflow's permission check said no: the credentials are wrong (``unauthenticated``) or
    the user has no role that allows this in the workspace."""

    def __init__(self, message: str, *, unauthenticated: bool = False) -> None:
        super().__init__(message)
        self.unauthenticated = unauthenticated


class ConfigError(BadInput):
    pass


class DataError(BadInput):
    pass


class NotFound(BadInput):
    pass


class GateFailed(MlflowPluginError):
    """A gate refused; ``failed`` names the gates that did not pass."""

    exit_code = 3

    def __init__(self, message: str, failed: list[str] | None = None) -> None:
        super().__init__(message)
        self.failed = list(failed or [])


class IntegrityError(MlflowPluginError):
    """Artifact files do not match the digest recorded for them (or a required one is missing);
    ``problems`` names each offending file."""

    exit_code = 5

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


class RegistryError(MlflowPluginError):
    exit_code = 1


class PromotionConflict(RegistryError):
    pass


class LockLost(PromotionConflict):
    """The promotion lock was lost (lease ran out while stalled, or broken by another process)
    before a write; the write was not made."""


class RegistryUnavailable(RegistryError):
    exit_code = 4


class ModelUnavailable(MlflowPluginError):
    pass


_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/@\s]*@")


def redact(text: str) -> str:
    """``http://alice:hunter2@host`` -> ``http://***@host``, wherever a URI occurs in ``text``
    (every error message a user sees passes through it)."""
    return _CREDENTIALS.sub(r"\g<scheme>***@", text)
