"""The edge to MLflow's client shared by the registry adapter and the ledger: bounded HTTP
retries and the translation of MLflow/requests exceptions into ours."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from mlflow_plugin._errors import BadInput, NotFound, RegistryError, RegistryUnavailable

__all__ = ["configure_http_defaults", "make_client", "resolve_tracking_uri", "wrap_mlflow_errors"]

# MLflow's defaults retry for about a minute; a CLI user should learn within seconds that the
# server is down. Users can still override each of these in the environment.
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    # MLflow prints "View run ... at URL" when a run ends, after a ``runs/get`` to learn the
    # run's name: one round trip per run (six per retrain) for a line our commands replace.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


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
