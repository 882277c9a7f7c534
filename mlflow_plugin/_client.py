"""The edge to MLflow's client shared by the registry adapter and the ledger: bounded HTTP
retries and the translation of MLflow/requests exceptions into ours."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from mlflow_plugin._errors import (
    BadInput,
    ConfigError,
    IntegrityError,
    NotFound,
    RegistryError,
    RegistryUnavailable,
)

__all__ = [
    "as_plugin_error",
    "check_tracking_uri",
    "configure_http_defaults",
    "encryption_error",
    "make_client",
    "redact",
    "resolve_tracking_uri",
    "wrap_mlflow_errors",
]

# MLflow's defaults retry for about a minute; a CLI user should learn within seconds that the
# server is down. Users can still override each of these in the environment.
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    # MLflow prints "View run ... at URL" when a run ends, after a ``runs/get`` to learn the
    # run's name: one round trip per run (six per retrain) for a line our commands replace.
    # It would also print URLs (with any credentials) on our commands' stdout.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
# Tracking URI schemes MLflow's stores answer to (SQLAlchemy dialects may carry "+driver").
_SCHEMES = {
    "",
    "file",
    "http",
    "https",
    "databricks",
    "databricks-uc",
    "uc",
    "sqlite",
    "postgresql",
    "mysql",
    "mssql",
}
_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/@\s]*@")


def redact(text: str) -> str:
    """``http://alice:hunter2@host`` -> ``http://***@host``, wherever a URI occurs in ``text``."""
    return _CREDENTIALS.sub(r"\g<scheme>***@", text)


def check_tracking_uri(uri: str) -> str:
    """A tracking URI MLflow can use: a known scheme (or a local path); else BadInput."""
    scheme = urlsplit(uri).scheme.lower()
    if len(scheme) == 1:  # a Windows drive letter
        scheme = ""
    if scheme.split("+", 1)[0] not in _SCHEMES:
        raise BadInput(
            f"tracking URI {redact(uri)!r}: unsupported scheme {scheme!r} "
            "(use http(s)://, file:, sqlite:///, postgresql://, mysql:// or a path)"
        )
    return uri


def configure_http_defaults() -> None:
    for key, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


def make_client(tracking_uri: str, registry_uri: str | None = None) -> Any:
    """An ``MlflowClient`` that checks "is this name a prompt?" once per model, not per write.

    MLflow 3's client reads the whole registered model (``registered-models/get``) before every
    alias, tag, stage and delete call, to refuse prompts; a retrain made 19 such reads. A
    registered model never becomes a prompt (the prompt tag is set at creation), so the answer
    is kept for the client's lifetime; names this client created are known models already.
    """
    from mlflow import MlflowClient

    class _Client(MlflowClient):  # type: ignore[misc]
        _known_models: set[str]

        def _raise_if_prompt(self, name: str) -> None:
            known = self.__dict__.setdefault("_known_models", set())
            if name not in known:
                super()._raise_if_prompt(name)
                known.add(name)

        def create_registered_model(self, name: str, *args: Any, **kwargs: Any) -> Any:
            rm = super().create_registered_model(name, *args, **kwargs)
            self.__dict__.setdefault("_known_models", set()).add(name)
            return rm

        def delete_registered_model(self, name: str) -> None:
            super().delete_registered_model(name)
            self.__dict__.setdefault("_known_models", set()).discard(name)

    return _Client(tracking_uri=tracking_uri, registry_uri=registry_uri)


def resolve_tracking_uri(explicit: str | None) -> str:
    if explicit:
        return check_tracking_uri(explicit)
    import mlflow

    return check_tracking_uri(str(mlflow.get_tracking_uri()))


def as_plugin_error(exc: BaseException, what: str, uri: str = "") -> Exception | None:
    """Our error for a foreign one from MLflow or the network (None if it is neither)."""
    from mlflow.exceptions import MlflowException

    where = redact(uri) if uri else "unknown"
    if isinstance(exc, MlflowException):
        code = getattr(exc, "error_code", "")
        text = redact(exc.message if hasattr(exc, "message") else str(exc))
        if (encrypted := encryption_error(text)) is not None:
            return encrypted
        if "API request to" in text and ("failed with" in text or "Max retries" in text):
            if "too many 500 error responses" in text:  # reachable, but failing
                return RegistryError(f"{what}: the tracking server {where} answered HTTP 500")
            return RegistryUnavailable(f"tracking server {where} could not be reached ({what})")
        if code == "RESOURCE_DOES_NOT_EXIST":
            return NotFound(f"{what}: {text}")
        if code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"):
            return BadInput(f"{what}: {text}")
        return RegistryError(f"{what}: {text}")
    if isinstance(exc, (ConnectionError, OSError)) or type(exc).__module__.startswith(
        ("requests", "urllib3")
    ):
        return RegistryUnavailable(
            f"tracking server {where} could not be reached ({what}): {redact(str(exc))}"
        )
    return None


# The message ends at a newline, or at a quote or backslash when relayed inside JSON.
_ENCRYPTION = re.compile(r"mlflow_plugin\.encryption\[(\w+)\] ([^\n\"\\]*)")


def encryption_error(text: str) -> ConfigError | IntegrityError | None:
    """An encrypted artifact store's error (mlflow_plugin.encryption, possibly relayed by the
    tracking server inside MLflow's download report): missing key or foreign workspace is a
    configuration error (exit 2), a chunk that fails authentication an integrity failure (5)."""
    match = _ENCRYPTION.search(text)
    if match is None:
        return None
    kind, message = match.group(1), match.group(2).strip()
    if kind in ("decrypt_failed", "not_encrypted"):
        return IntegrityError(f"encrypted artifact: {message}", [message])
    return ConfigError(f"encrypted artifact: {message}")


@contextlib.contextmanager
def wrap_mlflow_errors(what: str, uri: str = "") -> Iterator[None]:
    """Turn MLflow/requests exceptions raised inside the block into ours, naming ``what``."""
    try:
        yield
    except Exception as exc:
        ours = as_plugin_error(exc, what, uri)
        if ours is None:
            raise
        raise ours from exc
