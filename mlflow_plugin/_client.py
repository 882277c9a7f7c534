"""The edge to MLflow's client shared by the registry adapter and the ledger: bounded HTTP
retries and the translation of MLflow/requests exceptions into ours."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from mlflow_plugin._errors import BadInput, NotFound, RegistryError, RegistryUnavailable

__all__ = ["configure_http_defaults", "resolve_tracking_uri", "wrap_mlflow_errors"]

# MLflow's defaults retry for about a minute; a CLI user should learn within seconds that the
# server is down. Users can still override each of these in the environment.
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}


def configure_http_defaults() -> None:
    for key, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


def resolve_tracking_uri(explicit: str | None) -> str:
    if explicit:
        return explicit
    import mlflow

    return str(mlflow.get_tracking_uri())


@contextlib.contextmanager
def wrap_mlflow_errors(what: str, uri: str = "") -> Iterator[None]:
    """Turn MLflow/requests exceptions raised inside the block into ours, naming ``what``."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        code = getattr(exc, "error_code", "")
        text = exc.message if hasattr(exc, "message") else str(exc)
        if "API request to" in text and ("failed with" in text or "Max retries" in text):
            raise RegistryUnavailable(
                f"tracking server {uri or 'unknown'} could not be reached ({what})"
            ) from exc
        if code == "RESOURCE_DOES_NOT_EXIST":
            raise NotFound(f"{what}: {text}") from exc
        if code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"):
            raise BadInput(f"{what}: {text}") from exc
        raise RegistryError(f"{what}: {text}") from exc
    except (ConnectionError, OSError) as exc:
        raise RegistryUnavailable(
            f"tracking server {uri or 'unknown'} could not be reached ({what}): {exc}"
        ) from exc
