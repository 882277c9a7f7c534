"""The edge to MLflow's client shared by the registry adapter and the ledger: bounded HTTP
retries and the translation of MLflow/requests exceptions into ours."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mlflow_plugin.errors import (
    BadInput,
    ConfigError,
    IntegrityError,
    NotFound,
    PermissionDenied,
    RegistryError,
    RegistryUnavailable,
    redact,
)
from mlflow_plugin.settings import mlflow_tracking_uri

if TYPE_CHECKING:
    from mlflow_plugin.mlflow_io._rest import RestError
    from mlflow_plugin.mlflow_io._workspace import Scope

__all__ = [
    "as_plugin_error",
    "check_tracking_uri",
    "client_errors",
    "configure_http_defaults",
    "encryption_error",
    "make_client",
    "resolve_tracking_uri",
    "run_tags",
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
#: tracking URI -> does the server have workspaces (asked once per process).
_WORKSPACE_SUPPORT: dict[str, bool] = {}


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


def make_client(
    tracking_uri: str,
    registry_uri: str | None = None,
    *,
    scope: Scope | None = None,
    rest: bool = False,
) -> Any:
    """An ``MlflowClient`` that checks "is this name a prompt?" once per model, not per write.

    With ``rest`` (the controller commands), a :class:`mlflow_plugin.mlflow_io._rest.RestClient` instead
    when both URIs are ``http(s)`` and ``$MLFLOW_PLUGIN_REST_CLIENT`` is not ``off``: the same
    calls without importing ``mlflow`` (docs/ARCHITECTURE.md, "Process start of the controller
    commands").

    With ``scope`` (an ``http(s)`` server), every request of this client names the scope's
    workspace and carries its credentials, on whatever thread it runs: the REST API serves
    callers of several organisations at once from one process.

    MLflow 3's client reads the whole registered model (``registered-models/get``) before every
    alias, tag, stage and delete call, to refuse prompts; a retrain made 19 such reads. A
    registered model never becomes a prompt (the prompt tag is set at creation), so the answer
    is kept for the client's lifetime; names this client created or read (MLflow's
    ``get_registered_model`` refuses prompts) are known models already.
    """
    if rest:
        from mlflow_plugin.mlflow_io._rest import RestClient, rest_client_enabled

        if rest_client_enabled(tracking_uri, registry_uri or tracking_uri) and (
            registry_uri in (None, tracking_uri)
        ):
            return RestClient(tracking_uri, scope=scope)
    from mlflow import MlflowClient

    class _Client(MlflowClient):  # type: ignore[misc]
        _known_models: set[str]

        def _raise_if_prompt(self, name: str) -> None:
            known = self.__dict__.setdefault("_known_models", set())
            if name not in known:
                super()._raise_if_prompt(name)
                known.add(name)

        def get_registered_model(self, name: str) -> Any:
            # MLflow's own read refuses prompts: a model read here needs no second check.
            rm = super().get_registered_model(name)
            self.__dict__.setdefault("_known_models", set()).add(name)
            return rm

        def create_registered_model(self, name: str, *args: Any, **kwargs: Any) -> Any:
            rm = super().create_registered_model(name, *args, **kwargs)
            self.__dict__.setdefault("_known_models", set()).add(name)
            return rm

        def delete_registered_model(self, name: str) -> None:
            super().delete_registered_model(name)
            self.__dict__.setdefault("_known_models", set()).discard(name)

    client = _Client(tracking_uri=tracking_uri, registry_uri=registry_uri)
    if scope is not None and urlsplit(tracking_uri).scheme in ("http", "https"):
        _bind_scope(client, tracking_uri, registry_uri or tracking_uri, scope)
    return client


def _bind_scope(client: Any, tracking_uri: str, registry_uri: str, scope: Scope) -> None:
    """Give ``client`` its own REST stores whose requests carry ``scope``.

    MLflow's stores read credentials from the environment and the workspace from a context
    variable (which ``set_workspace`` also copies to the environment): both process-wide. The
    stores built here take credentials from ``scope`` and bind its workspace around each call.
    """
    from mlflow.store.model_registry.rest_store import RestStore as RegistryRestStore
    from mlflow.store.tracking.rest_store import RestStore as TrackingRestStore
    from mlflow.tracking._model_registry.client import ModelRegistryClient
    from mlflow.tracking._tracking_service.client import TrackingServiceClient
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.workspace_context import ServerWorkspaceContext

    def creds_for(uri: str) -> Any:
        def get_host_creds() -> Any:
            creds = get_default_host_creds(uri)
            creds.username, creds.password, creds.token = scope.username, scope.password, None
            return creds

        return get_host_creds

    def bound(store_cls: type) -> type:
        class _Bound(store_cls):  # type: ignore[misc, valid-type]
            def _call_endpoint(self, *args: Any, **kwargs: Any) -> Any:
                with ServerWorkspaceContext(scope.workspace):
                    return super()._call_endpoint(*args, **kwargs)

            @property
            def supports_workspaces(self) -> bool:
                # A new store probes the server (one round trip) on its first call: the
                # answer per server is kept, as a request's stores live for one request.
                known = _WORKSPACE_SUPPORT.get(tracking_uri)
                if known is None:
                    known = _WORKSPACE_SUPPORT[tracking_uri] = bool(super().supports_workspaces)
                return known

        return _Bound

    tracking_store = bound(TrackingRestStore)(creds_for(tracking_uri))
    registry_store = bound(RegistryRestStore)(creds_for(registry_uri))

    class _Tracking(TrackingServiceClient):  # type: ignore[misc]
        @property
        def store(self) -> Any:
            return tracking_store

    class _Registry(ModelRegistryClient):  # type: ignore[misc]
        @property
        def store(self) -> Any:
            return registry_store

    client._tracking_client = _Tracking(tracking_uri)
    client._registry_client_lazy = _Registry(registry_uri, tracking_uri)


def resolve_tracking_uri(explicit: str | None) -> str:
    if explicit:
        return check_tracking_uri(explicit)
    env = mlflow_tracking_uri().strip()
    if env and "mlflow" not in sys.modules:  # nothing can have called mlflow.set_tracking_uri
        return check_tracking_uri(env)
    import mlflow

    return check_tracking_uri(str(mlflow.get_tracking_uri()))


def client_errors() -> tuple[type[RestError], ...]:
    """The exception types a client raises for an answer of the server (they carry
    ``error_code`` and ``message``): :class:`mlflow_plugin.mlflow_io._rest.RestError`, and MLflow's
    ``MlflowException`` once ``mlflow`` is loaded (none can exist before). For ``except``."""
    from mlflow_plugin.mlflow_io._rest import RestError

    loaded = sys.modules.get("mlflow.exceptions")
    if loaded is None:
        return (RestError,)
    # Typed as RestError: MLflow's exception has the same ``error_code`` and ``message``.
    return (RestError, loaded.MlflowException)


def run_tags(client: Any, tags: Mapping[str, str]) -> list[Any]:
    """``RunTag`` entities for ``client.log_batch`` of the client's kind (MLflow's or ours)."""
    from mlflow_plugin.mlflow_io._rest import RestClient
    from mlflow_plugin.mlflow_io._rest import RunTag as LightTag

    if isinstance(client, RestClient):
        return [LightTag(k, v) for k, v in tags.items()]
    from mlflow.entities import RunTag

    return [RunTag(k, v) for k, v in tags.items()]


def as_plugin_error(exc: BaseException, what: str, uri: str = "") -> Exception | None:
    """Our error for a foreign one from MLflow, our REST client or the network (None if it is
    neither). Imports nothing of MLflow: an MLflow exception exists only once it is loaded."""
    where = redact(uri) if uri else "unknown"
    if isinstance(exc, client_errors()):
        code = getattr(exc, "error_code", "")
        text = redact(exc.message if hasattr(exc, "message") else str(exc))
        if (encrypted := encryption_error(text)) is not None:
            return encrypted
        if code in ("PERMISSION_DENIED", "UNAUTHENTICATED") or re.search(
            r"error code (401|403)\b", text
        ):
            unauthenticated = code == "UNAUTHENTICATED" or "error code 401" in text
            return PermissionDenied(f"{what}: {text}", unauthenticated=unauthenticated)
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


def check_member(tracking_uri: str, workspace: str, scope: Scope | None = None) -> None:
    """Raise unless the caller (``scope``'s credentials, else the process's) may work in
    ``workspace`` on the server: it lists the workspace among those it lets the caller see.

    MLflow's searches answer a non-member with an empty page, not a refusal; this check makes
    "not your organisation" an error on every route. A server without workspaces says so.

    Raises:
        NotFound: the workspace does not exist, or the caller has no role in it (MLflow does
            not tell non-admins which).
        PermissionDenied: the credentials were refused.
        BadInput: the server has no workspaces (``--enable-workspaces``).
    """
    from mlflow_plugin.mlflow_io._rest import RestClient, rest_client_enabled

    with wrap_mlflow_errors(f"workspace {workspace!r}", tracking_uri):
        if rest_client_enabled(tracking_uri):  # the same request without importing mlflow
            resp = RestClient(tracking_uri, scope=scope).get_raw("/api/3.0/mlflow/workspaces")
        else:
            from mlflow.utils.credentials import get_default_host_creds
            from mlflow.utils.rest_utils import http_request

            creds = get_default_host_creds(tracking_uri)
            if scope is not None:
                creds.username, creds.password = scope.username, scope.password
                creds.token = None
            resp = http_request(creds, "/api/3.0/mlflow/workspaces", "GET")
    if resp.status_code in (401, 403):
        raise PermissionDenied(
            f"workspace {workspace!r}: the tracking server answered HTTP {resp.status_code}",
            unauthenticated=resp.status_code == 401,
        )
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if resp.status_code != 200:
        if "FEATURE_DISABLED" in str(body.get("error_code", "")) or resp.status_code == 404:
            raise BadInput(
                f"workspace {workspace!r}: the tracking server {redact(tracking_uri)} has no "
                "workspaces (start it with --enable-workspaces)"
            )
        raise RegistryError(
            f"workspace {workspace!r}: {redact(tracking_uri)} answered HTTP {resp.status_code}"
        )
    names = {w.get("name") for w in body.get("workspaces", [])}
    if workspace not in names:
        raise NotFound(
            f"organisation {workspace!r} not found (it does not exist, or your MLflow user "
            "has no role in it)"
        )
