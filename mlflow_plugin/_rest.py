"""A thin client of MLflow's REST API for the controller commands, without importing ``mlflow``.

``import mlflow`` costs 1–3 s (its ``__init__`` loads tracking, genai, data and pandas), more
than the whole budget of ``mlflow-plugin rollback``. :class:`RestClient` implements exactly the
``MlflowClient`` methods the registry adapter, the promotion lock, the ledger and the integrity
check call, against the documented endpoints (``/api/2.0/mlflow/...`` and
``/api/2.0/mlflow-artifacts/artifacts`` for downloads), with what MLflow's client honours for a
team's server: ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` (or ``~/.mlflow/credentials``),
``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_TRACKING_INSECURE_TLS``, ``MLFLOW_TRACKING_SERVER_CERT_PATH``,
``MLFLOW_TRACKING_CLIENT_CERT_PATH``, the workspace header and the bounded retries of
:func:`mlflow_plugin._client.configure_http_defaults`.

Errors are :class:`RestError`: the same ``error_code`` and message text as MLflow's
``RestException``/``MlflowException`` for the same answer, so
:func:`mlflow_plugin._client.as_plugin_error` translates both the same way. Returned objects
are light dataclasses with the attribute names of MLflow's entities. See docs/ARCHITECTURE.md
("Process start of the controller commands").
"""

from __future__ import annotations

import configparser
import json
import os
import posixpath
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    import requests

    from mlflow_plugin._workspace import Scope

__all__ = [
    "Experiment",
    "ModelVersion",
    "PagedList",
    "RegisteredModel",
    "RestClient",
    "RestError",
    "Run",
    "RunTag",
    "rest_client_enabled",
]

SWITCH = "MLFLOW_PLUGIN_REST_CLIENT"
_API = "/api/2.0/mlflow/"
_ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
_PROMPT_TAG = "mlflow.prompt.is_prompt"
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
_VIEW_TYPES = {1: "ACTIVE_ONLY", 2: "DELETED_ONLY", 3: "ALL"}
_TRUE = {"1", "true", "yes", "on"}


def rest_client_enabled(*uris: str) -> bool:
    """Whether the controller commands use :class:`RestClient` for these URIs: all ``http(s)``,
    ``$MLFLOW_PLUGIN_REST_CLIENT`` not ``off``, and no MLflow auth plugin
    (``MLFLOW_TRACKING_AUTH``) or AWS SigV4 signing, which only MLflow's client implements."""
    if os.environ.get(SWITCH, "").strip().lower() in ("off", "0", "false", "no"):
        return False
    if os.environ.get("MLFLOW_TRACKING_AUTH", "").strip():
        return False
    if os.environ.get("MLFLOW_TRACKING_AWS_SIGV4", "").strip().lower() in _TRUE:
        return False
    return all(urlsplit(u).scheme.lower() in ("http", "https") for u in uris if u)


class RestError(Exception):
    """An MLflow REST error: ``error_code`` (e.g. ``RESOURCE_DOES_NOT_EXIST``) and ``message``
    worded as MLflow's client words it (``"<CODE>: <server message>"``)."""

    def __init__(self, message: str, error_code: str = "INTERNAL_ERROR", status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.status = status


class PagedList(list[Any]):
    """A page of results with the next page's ``token`` (None on the last page)."""

    def __init__(self, items: Iterable[Any], token: str | None) -> None:
        super().__init__(items)
        self.token = token or None


def _tags(raw: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    return {t["key"]: t.get("value", "") for t in raw or []}


@dataclass(frozen=True)
class RunTag:
    key: str
    value: str


@dataclass
class RegisteredModel:
    name: str
    aliases: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    creation_timestamp: int | None = None
    last_updated_timestamp: int | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RegisteredModel:
        return cls(
            name=d["name"],
            aliases={a["alias"]: str(a["version"]) for a in d.get("aliases", [])},
            tags=_tags(d.get("tags")),
            description=d.get("description"),
            creation_timestamp=_int(d.get("creation_timestamp")),
            last_updated_timestamp=_int(d.get("last_updated_timestamp")),
        )


@dataclass
class ModelVersion:
    name: str
    version: str
    current_stage: str = "None"
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    run_id: str | None = None
    source: str | None = None
    status: str | None = None
    creation_timestamp: int | None = None
    last_updated_timestamp: int | None = None
    description: str | None = None
    model_id: str | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ModelVersion:
        return cls(
            name=d["name"],
            version=str(d["version"]),
            current_stage=d.get("current_stage") or "None",
            tags=_tags(d.get("tags")),
            aliases=list(d.get("aliases", [])),
            run_id=d.get("run_id") or None,
            source=d.get("source") or None,
            status=d.get("status"),
            creation_timestamp=_int(d.get("creation_timestamp")),
            last_updated_timestamp=_int(d.get("last_updated_timestamp")),
            description=d.get("description"),
            model_id=d.get("model_id") or None,
        )


@dataclass
class RunInfo:
    run_id: str
    experiment_id: str
    status: str
    start_time: int | None
    end_time: int | None
    lifecycle_stage: str
    artifact_uri: str | None
    run_name: str | None
    user_id: str | None

    @property
    def run_uuid(self) -> str:
        return self.run_id


@dataclass
class RunData:
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Run:
    info: RunInfo
    data: RunData

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Run:
        i, data = d.get("info", {}), d.get("data", {})
        info = RunInfo(
            run_id=i.get("run_id") or i.get("run_uuid", ""),
            experiment_id=str(i.get("experiment_id", "")),
            status=i.get("status", ""),
            start_time=_int(i.get("start_time")),
            end_time=_int(i.get("end_time")),
            lifecycle_stage=i.get("lifecycle_stage", "active"),
            artifact_uri=i.get("artifact_uri"),
            run_name=i.get("run_name"),
            user_id=i.get("user_id"),
        )
        return cls(
            info,
            RunData(
                metrics={m["key"]: float(m.get("value", 0.0)) for m in data.get("metrics", [])},
                params=_tags(data.get("params")),
                tags=_tags(data.get("tags")),
            ),
        )


@dataclass
class Experiment:
    experiment_id: str
    name: str
    artifact_location: str | None = None
    lifecycle_stage: str = "active"
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Experiment:
        return cls(
            experiment_id=str(d["experiment_id"]),
            name=d.get("name", ""),
            artifact_location=d.get("artifact_location"),
            lifecycle_stage=d.get("lifecycle_stage", "active"),
            tags=_tags(d.get("tags")),
        )


def _int(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


def _kv(tags: Mapping[str, Any] | None) -> list[dict[str, str]]:
    return [{"key": k, "value": str(v)} for k, v in (tags or {}).items()]


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


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        return default


_sessions: dict[tuple[Any, ...], requests.Session] = {}
_sessions_lock = threading.Lock()


def _session() -> requests.Session:
    """One pooled session per process and retry setting, as MLflow keeps one: urllib3 retries
    connection errors, read errors and the transient statuses, every method included."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    retries = int(_env_number("MLFLOW_HTTP_REQUEST_MAX_RETRIES", 7))
    backoff = _env_number("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", 2)
    jitter = _env_number("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", 1.0)
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
                pool_connections=int(_env_number("MLFLOW_HTTP_POOL_CONNECTIONS", 10)),
                pool_maxsize=int(_env_number("MLFLOW_HTTP_POOL_MAXSIZE", 10)),
                max_retries=retry,
            )
            session = requests.Session()
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            _sessions[key] = session
        return session


class RestClient:
    """The ``MlflowClient`` subset our registry adapter, lock, ledger and integrity check use,
    over MLflow's REST API on ``tracking_uri`` (tracking and registry on one server).

    Args:
        tracking_uri: ``http(s)://`` URI of ``mlflow server`` (credentials in it are used).
        scope: workspace and credentials bound to every request (see
            :class:`mlflow_plugin._workspace.Scope`); default the process's
            (``MLFLOW_WORKSPACE``, ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``/``TOKEN``).
    """

    def __init__(self, tracking_uri: str, *, scope: Scope | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.base = tracking_uri.rstrip("/")
        self.scope = scope
        self._known_models: set[str] = set()

    # -- transport ------------------------------------------------------------------------
    def _request_options(self) -> dict[str, Any]:
        headers = {"User-Agent": "mlflow-plugin-rest-client"}
        scope = self.scope
        if scope is not None:
            workspace = scope.workspace
            username, password, token = scope.username, scope.password, None
        else:
            workspace = (os.environ.get("MLFLOW_WORKSPACE") or "").strip() or None
            username = os.environ.get("MLFLOW_TRACKING_USERNAME") or None
            password = os.environ.get("MLFLOW_TRACKING_PASSWORD") or None
            if not (username and password):
                file_user, file_password = _credentials_file()
                username, password = username or file_user, password or file_password
            token = os.environ.get("MLFLOW_TRACKING_TOKEN") or None
        if workspace:
            headers["X-MLFLOW-WORKSPACE"] = workspace
        options: dict[str, Any] = {"headers": headers}
        if username and password:
            options["auth"] = (username, password)
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        server_cert = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None
        insecure = os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").strip().lower() in _TRUE
        options["verify"] = server_cert or not insecure
        client_cert = os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH") or None
        if client_cert:
            options["cert"] = client_cert
        options["timeout"] = _env_number("MLFLOW_HTTP_REQUEST_TIMEOUT", 120)
        allow = os.environ.get("MLFLOW_ALLOW_HTTP_REDIRECTS", "true").lower() in ("true", "1")
        options["allow_redirects"] = allow
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

    # -- registered models ------------------------------------------------------------------
    def get_registered_model(self, name: str) -> RegisteredModel:
        rm = RegisteredModel.from_json(
            self._call("GET", "registered-models/get", {"name": name})["registered_model"]
        )
        if _PROMPT_TAG in rm.tags:  # MLflow's client hides prompts the same way
            raise _model_not_found(name)
        self._known_models.add(name)
        return rm

    def _raise_if_prompt(self, name: str) -> None:
        """MLflow's client refuses prompts before writes; the answer is kept per name."""
        if name not in self._known_models:
            self.get_registered_model(name)

    def create_registered_model(
        self, name: str, tags: Mapping[str, Any] | None = None, description: str | None = None
    ) -> RegisteredModel:
        if tags and _PROMPT_TAG in tags:
            raise RestError(
                "INVALID_PARAMETER_VALUE: Prompts cannot be registered as models.",
                "INVALID_PARAMETER_VALUE",
            )
        body = {"name": name, "tags": _kv(tags), "description": description}
        answer = self._call("POST", "registered-models/create", body)
        self._known_models.add(name)
        return RegisteredModel.from_json(answer["registered_model"])

    def rename_registered_model(self, name: str, new_name: str) -> RegisteredModel:
        self._raise_if_prompt(name)
        answer = self._call(
            "POST", "registered-models/rename", {"name": name, "new_name": new_name}
        )
        self._known_models.discard(name)
        self._known_models.add(new_name)
        return RegisteredModel.from_json(answer["registered_model"])

    def delete_registered_model(self, name: str) -> None:
        self._raise_if_prompt(name)
        self._call("DELETE", "registered-models/delete", {"name": name})
        self._known_models.discard(name)

    def search_registered_models(
        self,
        filter_string: str | None = None,
        max_results: int = 100,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        prompt_filter = f"tag.`{_PROMPT_TAG}` != 'true'"
        if _PROMPT_TAG not in (filter_string or ""):
            filter_string = (
                f"{filter_string} AND {prompt_filter}" if filter_string else prompt_filter
            )
        body = {
            "filter": filter_string,
            "max_results": max_results,
            "order_by": order_by,
            "page_token": page_token,
        }
        answer = self._call("GET", "registered-models/search", body)
        return PagedList(
            (RegisteredModel.from_json(d) for d in answer.get("registered_models", [])),
            answer.get("next_page_token"),
        )

    def set_registered_model_tag(self, name: str, key: str, value: Any) -> None:
        self._raise_if_prompt(name)
        self._call(
            "POST", "registered-models/set-tag", {"name": name, "key": key, "value": str(value)}
        )

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        self._raise_if_prompt(name)
        self._call("DELETE", "registered-models/delete-tag", {"name": name, "key": key})

    def set_registered_model_alias(self, name: str, alias: str, version: str | int) -> None:
        self._raise_if_prompt(name)
        body = {"name": name, "alias": alias, "version": str(version)}
        self._call("POST", "registered-models/alias", body)

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        self._raise_if_prompt(name)
        self._call("DELETE", "registered-models/alias", {"name": name, "alias": alias})

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        answer = self._call("GET", "registered-models/alias", {"name": name, "alias": alias})
        mv = ModelVersion.from_json(answer["model_version"])
        if _PROMPT_TAG in mv.tags:
            raise _model_not_found(name)
        return mv

    # -- model versions ---------------------------------------------------------------------
    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None = None,
        tags: Mapping[str, Any] | None = None,
        run_link: str | None = None,
        description: str | None = None,
        await_creation_for: int = 300,
        model_id: str | None = None,
    ) -> ModelVersion:
        if tags and _PROMPT_TAG in tags:
            raise RestError(
                "INVALID_PARAMETER_VALUE: Prompts cannot be registered as models.",
                "INVALID_PARAMETER_VALUE",
            )
        body = {
            "name": name,
            "source": source,
            "run_id": run_id,
            "run_link": run_link,
            "tags": _kv(tags),
            "description": description,
            "model_id": model_id,
        }
        mv = ModelVersion.from_json(
            self._call("POST", "model-versions/create", body)["model_version"]
        )
        deadline = time.monotonic() + await_creation_for
        while mv.status == "PENDING_REGISTRATION" and time.monotonic() < deadline:
            time.sleep(1)
            mv = self.get_model_version(name, mv.version)
        return mv

    def get_model_version(self, name: str, version: str | int) -> ModelVersion:
        answer = self._call("GET", "model-versions/get", {"name": name, "version": str(version)})
        mv = ModelVersion.from_json(answer["model_version"])
        if _PROMPT_TAG in mv.tags:
            raise _model_not_found(name)
        return mv

    def delete_model_version(self, name: str, version: str | int) -> None:
        self._raise_if_prompt(name)
        self._call("DELETE", "model-versions/delete", {"name": name, "version": str(version)})

    def get_model_version_download_uri(self, name: str, version: str | int) -> str:
        self._raise_if_prompt(name)
        body = {"name": name, "version": str(version)}
        return str(self._call("GET", "model-versions/get-download-uri", body)["artifact_uri"])

    def search_model_versions(
        self,
        filter_string: str | None = None,
        max_results: int = 10000,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        body = {
            "filter": filter_string,
            "max_results": max_results,
            "order_by": order_by,
            "page_token": page_token,
        }
        answer = self._call("GET", "model-versions/search", body)
        return PagedList(
            (ModelVersion.from_json(d) for d in answer.get("model_versions", [])),
            answer.get("next_page_token"),
        )

    def set_model_version_tag(self, name: str, version: str | int, key: str, value: Any) -> None:
        self._raise_if_prompt(name)
        body = {"name": name, "version": str(version), "key": key, "value": str(value)}
        self._call("POST", "model-versions/set-tag", body)

    def transition_model_version_stage(
        self, name: str, version: str | int, stage: str, archive_existing_versions: bool = False
    ) -> ModelVersion:
        self._raise_if_prompt(name)
        body = {
            "name": name,
            "version": str(version),
            "stage": stage,
            "archive_existing_versions": archive_existing_versions,
        }
        answer = self._call("POST", "model-versions/transition-stage", body)
        return ModelVersion.from_json(answer["model_version"])

    # -- experiments and runs ---------------------------------------------------------------
    def get_experiment_by_name(self, name: str) -> Experiment | None:
        try:
            answer = self._call("GET", "experiments/get-by-name", {"experiment_name": name})
        except RestError as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return Experiment.from_json(answer["experiment"])

    def create_experiment(
        self,
        name: str,
        artifact_location: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> str:
        body = {"name": name, "artifact_location": artifact_location, "tags": _kv(tags)}
        return str(self._call("POST", "experiments/create", body)["experiment_id"])

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        body = {"experiment_id": experiment_id, "key": key, "value": str(value)}
        self._call("POST", "experiments/set-experiment-tag", body)

    def get_run(self, run_id: str) -> Run:
        return Run.from_json(self._call("GET", "runs/get", {"run_id": run_id})["run"])

    def create_run(
        self,
        experiment_id: str,
        start_time: int | None = None,
        tags: Mapping[str, Any] | None = None,
        run_name: str | None = None,
    ) -> Run:
        tags = dict(tags or {})
        body = {
            "experiment_id": experiment_id,
            "user_id": tags.get("mlflow.user", "unknown"),
            "start_time": start_time or int(time.time() * 1000),
            "tags": _kv(tags),
            "run_name": run_name,
        }
        return Run.from_json(self._call("POST", "runs/create", body)["run"])

    def log_batch(
        self,
        run_id: str,
        metrics: Iterable[Any] = (),
        params: Iterable[Any] = (),
        tags: Iterable[Any] = (),
    ) -> None:
        body = {
            "run_id": run_id,
            "metrics": [
                {"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step}
                for m in metrics
            ],
            "params": [{"key": p.key, "value": str(p.value)} for p in params],
            "tags": [{"key": t.key, "value": str(t.value)} for t in tags],
        }
        self._call("POST", "runs/log-batch", body)

    def set_terminated(
        self, run_id: str, status: str | None = None, end_time: int | None = None
    ) -> None:
        body = {
            "run_id": run_id,
            "status": status or "FINISHED",
            "end_time": end_time or int(time.time() * 1000),
        }
        self._call("POST", "runs/update", body)

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        self._call("POST", "runs/set-tag", {"run_id": run_id, "key": key, "value": str(value)})

    def delete_run(self, run_id: str) -> None:
        self._call("POST", "runs/delete", {"run_id": run_id})

    def search_runs(
        self,
        experiment_ids: list[str],
        filter_string: str = "",
        run_view_type: int = 1,
        max_results: int = 1000,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        body = {
            "experiment_ids": list(experiment_ids),
            "filter": filter_string,
            "run_view_type": _VIEW_TYPES[int(run_view_type)],
            "max_results": max_results,
            "order_by": order_by,
            "page_token": page_token,
        }
        answer = self._call("POST", "runs/search", body)
        return PagedList(
            (Run.from_json(d) for d in answer.get("runs", [])), answer.get("next_page_token")
        )

    # -- artifacts --------------------------------------------------------------------------
    def serves(self, artifact_uri: str) -> bool:
        """Whether ``artifact_uri`` is served by this server's artifact proxy
        (``mlflow-artifacts:/…`` without another host, or its ``http(s)`` form on this host)."""
        return self._artifact_root(artifact_uri) is not None

    def _artifact_root(self, artifact_uri: str) -> str | None:
        parts = urlsplit(artifact_uri)
        mine = urlsplit(self.base)
        host = mine.netloc.rpartition("@")[2]
        if parts.scheme == "mlflow-artifacts":
            if parts.netloc and parts.netloc.rpartition("@")[2] != host:
                return None
            return parts.path.strip("/")
        if parts.scheme in ("http", "https") and parts.netloc.rpartition("@")[2] == host:
            head, sep, tail = parts.path.partition(_ARTIFACTS)
            if sep and head == mine.path.rstrip("/"):
                return tail.strip("/")
        return None

    def download_artifacts(self, artifact_uri: str, dst: str) -> str:
        """Download the directory (or file) at ``artifact_uri`` into ``dst``; the local path.

        Raises:
            RestError: listing or a file failed (``error_code`` as MLflow's client reports it).
            ValueError: ``artifact_uri`` is not served by this server (see :meth:`serves`).
        """
        root = self._artifact_root(artifact_uri)
        if root is None:
            raise ValueError(f"{artifact_uri!r} is not served by {self.base}")
        files: list[tuple[str, int | None]] = []
        self._walk(root, "", files)
        Path(dst).mkdir(parents=True, exist_ok=True)
        if not files:  # a single file: the listing of a file is empty
            name = posixpath.basename(root)
            self._fetch(root, Path(dst, name))
            return str(Path(dst, name))
        # Own threads, not the shared pool: the check itself may run inside a pooled call.
        with ThreadPoolExecutor(max_workers=min(8, len(files))) as pool:
            list(
                pool.map(
                    lambda item: self._fetch(
                        posixpath.join(root, item[0]), Path(dst, *item[0].split("/"))
                    ),
                    files,
                )
            )
        return dst

    def _walk(self, root: str, rel: str, out: list[tuple[str, int | None]]) -> None:
        path = posixpath.join(root, rel) if rel else root
        url = self.base + _ARTIFACTS
        answer = _verify(self._send("GET", url, params={"path": path}), _ARTIFACTS)
        for entry in answer.get("files", []):
            child = posixpath.join(rel, posixpath.basename(entry["path"]))
            if entry.get("is_dir"):
                self._walk(root, child, out)
            else:
                out.append((child, _int(entry.get("file_size"))))

    def _fetch(self, remote: str, target: Path) -> None:
        url = self.base + _ARTIFACTS + "/" + quote(remote)
        resp = self._send("GET", url, stream=True)
        with resp:
            if resp.status_code != 200:
                _verify(resp, _ARTIFACTS)
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                for chunk in resp.iter_content(1 << 20):
                    out.write(chunk)


def _model_not_found(name: str) -> RestError:
    return RestError(
        f"RESOURCE_DOES_NOT_EXIST: Registered Model with name={name!r} not found.",
        "RESOURCE_DOES_NOT_EXIST",
        404,
    )


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
