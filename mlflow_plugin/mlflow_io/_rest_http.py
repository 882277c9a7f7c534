"""The HTTP side of :class:`~mlflow_plugin.mlflow_io._rest.RestClient`: the pooled session with MLflow's
retries, the credentials, TLS and timeout options MLflow's client honours, and MLflow's error
wording (:class:`RestError`). No ``mlflow`` import (see :mod:`mlflow_plugin.mlflow_io._rest`).
"""

from __future__ import annotations

import configparser
import json
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlflow_plugin.settings import http_settings, mlflow_workspace

if TYPE_CHECKING:
    import requests

    from mlflow_plugin.mlflow_io._workspace import Scope

_API = "/api/2.0/mlflow/"
_ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
#: MLflow's ``_TRANSIENT_FAILURE_RESPONSE_CODES``: retried, as its client does.
_RETRY_CODES = frozenset([408, 429, 500, 502, 503, 504])
#: MLflow's ``HTTP_STATUS_TO_ERROR_CODE`` for answers without a JSON error body.
_STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "ENDPOINT_NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    501: "NOT_IMPLEMENTED",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class RestError(Exception):
    """An MLflow REST error: ``error_code`` (e.g. ``RESOURCE_DOES_NOT_EXIST``) and ``message``
    worded as MLflow's client words it (``"<CODE>: <server message>"``)."""

    def __init__(self, message: str, error_code: str = "INTERNAL_ERROR", status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.status = status


def _credentials_file() -> tuple[str | None, str | None]:
    """``~/.mlflow/credentials`` (section ``[mlflow]``), as MLflow's client reads it."""
    path = os.path.expanduser("~/.mlflow/credentials")
    if not os.path.exists(path):
        return None, None
    config = configparser.ConfigParser()
    config.read(path)
    if "mlflow" not in config:
        return None, None
    section = config["mlflow"]
    return section.get("mlflow_tracking_username"), section.get("mlflow_tracking_password")


_sessions: dict[tuple[Any, ...], requests.Session] = {}
_sessions_lock = threading.Lock()


def _session() -> requests.Session:
    """One pooled session per process and retry setting, as MLflow keeps one: urllib3 retries
    connection errors, read errors and the transient statuses, every method included."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    http = http_settings()
    retries, backoff, jitter = http.max_retries, http.backoff_factor, http.backoff_jitter
    key = (os.getpid(), retries, backoff, jitter)
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            retry = Retry(
                total=retries,
                connect=retries,
                read=retries,
                redirect=retries,
                status=retries,
                status_forcelist=_RETRY_CODES,
                backoff_factor=backoff,
                backoff_jitter=jitter,
                raise_on_status=True,
                respect_retry_after_header=True,
                allowed_methods=None,
            )
            adapter = HTTPAdapter(
                pool_connections=http.pool_connections,
                pool_maxsize=http.pool_maxsize,
                max_retries=retry,
            )
            session = requests.Session()
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            _sessions[key] = session
        return session


class _RestHttp:
    """Requests to one server with the process's (or the scope's) credentials and options."""

    base: str
    scope: Scope | None

    def _request_options(self) -> dict[str, Any]:
        headers = {"User-Agent": "mlflow-plugin-rest-client"}
        http = http_settings()
        scope = self.scope
        if scope is not None:
            workspace = scope.workspace
            username, password, token = scope.username, scope.password, None
        else:
            workspace = mlflow_workspace()
            username, password = http.username, http.password
            if not (username and password):
                file_user, file_password = _credentials_file()
                username, password = username or file_user, password or file_password
            token = http.token
        if workspace:
            headers["X-MLFLOW-WORKSPACE"] = workspace
        options: dict[str, Any] = {"headers": headers}
        if username and password:
            options["auth"] = (username, password)
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        options["verify"] = http.server_cert or not http.insecure_tls
        if http.client_cert:
            options["cert"] = http.client_cert
        options["timeout"] = http.timeout
        options["allow_redirects"] = http.allow_redirects
        return options

    def _send(self, method: str, url: str, *, workspace_header: bool = True, **kwargs: Any) -> Any:
        import requests

        options = self._request_options()
        if not workspace_header:
            options["headers"].pop("X-MLFLOW-WORKSPACE", None)
        try:
            return _session().request(method, url, **options, **kwargs)
        except requests.exceptions.Timeout as exc:
            raise RestError(
                f"API request to {url} failed with timeout exception {exc}. To increase the "
                "timeout, set the environment variable MLFLOW_HTTP_REQUEST_TIMEOUT to a larger "
                "value."
            ) from exc
        except Exception as exc:  # noqa: BLE001 - what MLflow's http_request does
            raise RestError(f"API request to {url} failed with exception {exc}") from exc

    def get_raw(self, path: str) -> Any:
        """The response to ``GET <server><path>`` (no workspace header: the workspace
        endpoints name theirs in the path, as MLflow's client does)."""
        return self._send("GET", self.base + path, workspace_header=False)

    def _call(self, method: str, endpoint: str, body: Mapping[str, Any] | None = None) -> Any:
        url = self.base + _API + endpoint
        if method == "GET":
            params = {k: v for k, v in (body or {}).items() if v is not None}
            resp = self._send(method, url, params=params)
        else:
            payload = {k: v for k, v in (body or {}).items() if v is not None}
            resp = self._send(method, url, json=payload)
        return _verify(resp, _API + endpoint)


def _verify(resp: Any, endpoint: str) -> Any:
    """The JSON body of a 200 answer; else the RestError MLflow's client would raise."""
    text = resp.text
    if resp.status_code == 200:
        if not text.strip() or text.strip() == "200 OK":
            return {}
        try:
            body = json.loads(text)
        except ValueError:
            raise RestError(
                "API request to endpoint was successful but the response body was not in a "
                f"valid JSON format. Response body: '{text}'"
            ) from None
        return body if isinstance(body, dict) else {}
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("error_code") or "INTERNAL_ERROR")
        message = body["message"] if "message" in body else f"Response: {body}"
        raise RestError(f"{code}: {message}", code, resp.status_code)
    raise RestError(
        f"API request to endpoint {endpoint} failed with error code {resp.status_code} != 200. "
        f"Response body: '{text}'",
        _STATUS_CODES.get(resp.status_code, "INTERNAL_ERROR"),
        resp.status_code,
    )
