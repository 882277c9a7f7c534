"""A thin client of MLflow's REST API for the controller commands, without importing ``mlflow``.

``import mlflow`` costs 1–3 s (its ``__init__`` loads tracking, genai, data and pandas), more
than the whole budget of ``mlflow-plugin rollback``. :class:`RestClient` implements exactly the
``MlflowClient`` methods the registry adapter, the promotion lock, the ledger and the integrity
check call, against the documented endpoints (``/api/2.0/mlflow/...`` and
``/api/2.0/mlflow-artifacts/artifacts`` for downloads), with what MLflow's client honours for a
team's server: ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` (or ``~/.mlflow/credentials``),
``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_TRACKING_INSECURE_TLS``, ``MLFLOW_TRACKING_SERVER_CERT_PATH``,
``MLFLOW_TRACKING_CLIENT_CERT_PATH``, the workspace header and the bounded retries of
:func:`mlflow_plugin.mlflow_io._client.configure_http_defaults`.

Errors are :class:`RestError`: the same ``error_code`` and message text as MLflow's
``RestException``/``MlflowException`` for the same answer, so
:func:`mlflow_plugin.mlflow_io._client.as_plugin_error` translates both the same way. Returned objects
are light dataclasses with the attribute names of MLflow's entities. See docs/ARCHITECTURE.md
("Process start of the controller commands").

The client's parts: :mod:`._rest_http` (session, options, errors), :mod:`._rest_entities` (the
returned objects), :mod:`._rest_artifacts` (downloads); the import-linter contract
``rest-no-mlflow`` covers all of them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mlflow_plugin.mlflow_io._rest_artifacts import _ArtifactDownloads
from mlflow_plugin.mlflow_io._rest_entities import (
    Experiment,
    ModelVersion,
    PagedList,
    RegisteredModel,
    Run,
    RunTag,
    _kv,
)
from mlflow_plugin.mlflow_io._rest_http import RestError
from mlflow_plugin.settings import mlflow_auth_plugin_or_sigv4, rest_client_off

if TYPE_CHECKING:
    from mlflow_plugin.mlflow_io._workspace import Scope

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

_PROMPT_TAG = "mlflow.prompt.is_prompt"
_VIEW_TYPES = {1: "ACTIVE_ONLY", 2: "DELETED_ONLY", 3: "ALL"}


def rest_client_enabled(*uris: str) -> bool:
    """Whether the controller commands use :class:`RestClient` for these URIs: all ``http(s)``,
    ``$MLFLOW_PLUGIN_REST_CLIENT`` not ``off``, and no MLflow auth plugin
    (``MLFLOW_TRACKING_AUTH``) or AWS SigV4 signing, which only MLflow's client implements."""
    if rest_client_off() or mlflow_auth_plugin_or_sigv4():
        return False
    return all(urlsplit(u).scheme.lower() in ("http", "https") for u in uris if u)


class RestClient(_ArtifactDownloads):
    """The ``MlflowClient`` subset our registry adapter, lock, ledger and integrity check use,
    over MLflow's REST API on ``tracking_uri`` (tracking and registry on one server).

    Args:
        tracking_uri: ``http(s)://`` URI of ``mlflow server`` (credentials in it are used).
        scope: workspace and credentials bound to every request (see
            :class:`mlflow_plugin.mlflow_io._workspace.Scope`); default the process's
            (``MLFLOW_WORKSPACE``, ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``/``TOKEN``).
    """

    def __init__(self, tracking_uri: str, *, scope: Scope | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.base = tracking_uri.rstrip("/")
        self.scope = scope
        self._known_models: set[str] = set()

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


def _model_not_found(name: str) -> RestError:
    return RestError(
        f"RESOURCE_DOES_NOT_EXIST: Registered Model with name={name!r} not found.",
        "RESOURCE_DOES_NOT_EXIST",
        404,
    )
