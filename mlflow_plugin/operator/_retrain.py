"""Retraining through MLflow Projects: ``mlflow.projects.run`` of the ``main`` entry point.

``backend="local"`` (default) runs it on this machine; ``backend="kubernetes"`` submits a Job
built by MLflow's own Kubernetes backend from the backend config (``kube-context``,
``repository-uri``, ``kube-job-template-path``). :func:`kubernetes_job_spec` builds the Job that
backend submits, so the spec can be checked without a cluster.

Runs land in experiment ``mlflow_plugin-retraining`` (``MLFLOW_PLUGIN_RETRAIN_EXPERIMENT``) and
carry the trigger in their tags. A run of the model still ``RUNNING`` blocks another one; the
check and the run's creation happen under the model's lock, so two ticks cannot both start one.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow_plugin.errors import ConfigError
from mlflow_plugin.mlflow_io._client import resolve_tracking_uri, wrap_mlflow_errors
from mlflow_plugin.settings import RETRAIN_EXPERIMENT_DEFAULT, TAG_PREFIX, retrain_experiment

if TYPE_CHECKING:
    from mlflow_plugin.types import VersionInfo

__all__ = ["RETRAIN_EXPERIMENT", "Launch", "Retrainer", "kubernetes_job_spec", "main_parameters"]

RETRAIN_EXPERIMENT = RETRAIN_EXPERIMENT_DEFAULT
TRIGGER_TAG = TAG_PREFIX + "trigger"
_K8S_KEYS = ("kube-context", "repository-uri", "kube-job-template-path")


def main_parameters(
    champion: VersionInfo, *, data: str | None = None, policy: str | None = None
) -> dict[str, str]:
    """The ``main`` entry point's parameters that retrain ``champion``'s recipe (on ``data``,
    default the data it was trained on)."""
    raw = champion.tags.get(TAG_PREFIX + "recipe")
    try:
        recipe = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        recipe = {}
    if not recipe.get("duration_col"):
        raise ConfigError(
            f"{champion.name} version {champion.version} has no training recipe "
            f"({TAG_PREFIX}recipe): only versions trained by mlflow_plugin can be retrained"
        )
    source = data or champion.tags.get(TAG_PREFIX + "data") or ""
    if not source:
        raise ConfigError(f"{champion.name} version {champion.version}: no training data recorded")
    features = recipe.get("features")
    out = {
        "data": source,
        "model_name": champion.name,
        "model_kind": recipe.get("model_kind") or "coxph",
        "duration_col": recipe["duration_col"],
        "event_col": recipe.get("event_col") or "event",
        "time_col": recipe.get("time_col") or "none",
        "features": ",".join(features) if features else "all",
        "penalizer": recipe.get("penalizer", 0.1),
        "holdout": recipe.get("holdout", 0.2),
        "horizon": recipe.get("horizon") or "auto",
        "buckets": recipe.get("buckets", 4),
        "seed": recipe.get("seed", 0),
        "policy": policy or "default",
    }
    return {k: str(v) for k, v in out.items()}


@dataclass(frozen=True)
class Launch:
    """A retraining run that was started (or found already running).

    Attributes:
        run_id: the MLflow run of ``main``.
        status: ``FINISHED``, ``FAILED``, ``RUNNING`` (submitted, not waited for) or
            ``blocked`` (another run was in progress: ``run_id`` is that one).
        outcome: ``main``'s ``mlflow_plugin.outcome`` tag when known (``promoted``,
            ``rejected``...).
    """

    run_id: str
    status: str
    outcome: str = ""


@dataclass
class Retrainer:
    """Starts ``main`` through MLflow Projects.

    Args:
        project_uri: the MLflow project (a directory or git URI holding ``MLproject``).
        backend: ``local`` or ``kubernetes``.
        backend_config: MLflow's backend config (a dict, or a JSON file path).
        experiment: where the runs land.
        synchronous: wait for the run (a one-shot ``tick`` does; the operator need not).
        stale_after: seconds after which a ``RUNNING`` run no longer blocks (its process died).
    """

    tracking_uri: str | None = None
    project_uri: str = "."
    backend: str = "local"
    backend_config: dict[str, Any] | str | None = None
    experiment: str = field(default_factory=retrain_experiment)
    synchronous: bool = True
    stale_after: float = 6 * 3600.0

    def __post_init__(self) -> None:
        from mlflow import MlflowClient

        if self.backend not in ("local", "kubernetes"):
            raise ConfigError(f"--backend: expected local or kubernetes, got {self.backend!r}")
        self.tracking_uri = resolve_tracking_uri(self.tracking_uri)
        self.config = _backend_config(self.backend, self.backend_config)
        if (
            self.backend == "local"
            and not (Path(self.project_uri) / "MLproject").is_file()
            and "://" not in self.project_uri
        ):
            raise ConfigError(f"--project {self.project_uri!r}: no MLproject file there")
        self.client = MlflowClient(tracking_uri=self.tracking_uri)

    def experiment_id(self) -> str:
        from mlflow.exceptions import MlflowException

        from mlflow_plugin.monitoring import experiment_kind_tags

        with wrap_mlflow_errors("retraining experiment", str(self.tracking_uri)):
            exp = self.client.get_experiment_by_name(self.experiment)
            if exp is not None:
                return str(exp.experiment_id)
            try:
                return str(
                    self.client.create_experiment(
                        self.experiment,
                        tags=experiment_kind_tags(
                            "Retraining runs started by the mlflow_plugin operator."
                        ),
                    )
                )
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                again = self.client.get_experiment_by_name(self.experiment)
                assert again is not None
                return str(again.experiment_id)

    def in_progress(self, model: str) -> str | None:
        """The run id of ``model``'s retraining still running (not stale), if any."""
        query = f"tags.`{TAG_PREFIX}model` = '{model}' and attributes.status = 'RUNNING'"
        with wrap_mlflow_errors("look for a running retraining", str(self.tracking_uri)):
            runs = self.client.search_runs([self.experiment_id()], query, max_results=5)
        cutoff = (time.time() - self.stale_after) * 1000
        for run in runs:
            if run.info.start_time >= cutoff and TRIGGER_TAG in run.data.tags:
                return str(run.info.run_id)
        return None

    def create_run(self, model: str, trigger: str, evidence: str) -> str:
        """The retraining's run, created now so that it blocks the next one at once."""
        tags = {
            TAG_PREFIX + "model": model,
            TAG_PREFIX + "step": "main",
            TRIGGER_TAG: trigger,
            TAG_PREFIX + "trigger_evidence": evidence[:5000],
            "mlflow.runName": f"retrain {model} ({trigger})",
            "mlflow.source.type": "PROJECT",
            "mlflow.project.entryPoint": "main",
            "mlflow.project.backend": self.backend,
        }
        with wrap_mlflow_errors("create the retraining run", str(self.tracking_uri)):
            return str(self.client.create_run(self.experiment_id(), tags=tags).info.run_id)

    def launch(self, run_id: str, parameters: dict[str, str]) -> Launch:
        """Run ``main`` with ``parameters`` in the run ``run_id`` (local) or as a new Job."""
        import mlflow.projects
        from mlflow.exceptions import ExecutionException

        _python_on_path()
        kwargs: dict[str, Any] = {
            "uri": self.project_uri,
            "entry_point": "main",
            "parameters": parameters,
            "experiment_id": self.experiment_id(),
            "backend": self.backend,
            "backend_config": dict(self.config),
            "synchronous": self.synchronous,
            "env_manager": "local",
        }
        if self.backend == "local":
            kwargs["run_id"] = run_id
        try:
            submitted = mlflow.projects.run(**kwargs)
        except ExecutionException as exc:
            if self.backend == "local":
                return Launch(run_id, "FAILED", self._outcome(run_id))
            raise ConfigError(f"retraining could not be submitted: {exc}") from exc
        actual = str(submitted.run_id)
        if actual != run_id:  # kubernetes: MLflow created the run; move our tags onto it
            pre = self.client.get_run(run_id).data.tags
            for key, value in pre.items():
                if key.startswith(TAG_PREFIX) or key == "mlflow.runName":
                    self.client.set_tag(actual, key, value)
            self.client.delete_run(run_id)
        if not self.synchronous:
            return Launch(actual, "RUNNING")
        status = str(submitted.get_status())
        return Launch(actual, status, self._outcome(actual))

    def _outcome(self, run_id: str) -> str:
        try:
            return str(self.client.get_run(run_id).data.tags.get(TAG_PREFIX + "outcome", ""))
        except Exception:  # noqa: BLE001 - only for the report
            return ""


def _python_on_path() -> None:
    """The entry point runs ``python``: make it this interpreter (cron starts with a bare PATH)."""
    here = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if here not in path.split(os.pathsep):
        os.environ["PATH"] = here + (os.pathsep + path if path else "")


def _backend_config(backend: str, config: dict[str, Any] | str | None) -> dict[str, Any]:
    if isinstance(config, str):
        try:
            config = json.loads(Path(config).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"--backend-config {config}: {exc}") from None
        if not isinstance(config, dict):
            raise ConfigError("--backend-config: expected a JSON object")
    config = dict(config or {})
    if backend == "kubernetes":
        missing = [k for k in _K8S_KEYS if not config.get(k)]
        if missing:
            raise ConfigError(f"--backend-config: kubernetes needs {', '.join(missing)}")
        if not Path(config["kube-job-template-path"]).is_file():
            raise ConfigError(
                f"--backend-config: kube-job-template-path {config['kube-job-template-path']!r} not found"
            )
    return config


def kubernetes_job_spec(
    project_uri: str,
    parameters: dict[str, str],
    backend_config: dict[str, Any] | str,
    *,
    run_id: str,
    experiment_id: str,
    image_digest: str = "sha256:0",
) -> dict[str, Any]:
    """The Kubernetes Job that MLflow's kubernetes backend submits for ``main`` (same functions,
    minus building and pushing the image), so it can be checked without a cluster."""
    import yaml
    from mlflow.projects import kubernetes as kb
    from mlflow.projects.utils import (
        fetch_and_validate_project,
        get_entry_point_command,
        get_run_env_vars,
        load_project,
    )

    config = _backend_config("kubernetes", backend_config)
    work_dir = fetch_and_validate_project(project_uri, None, "main", parameters)
    project = load_project(work_dir)
    command = get_entry_point_command(project, "main", parameters, None)
    template = yaml.safe_load(Path(config["kube-job-template-path"]).read_text(encoding="utf-8"))
    return kb._get_kubernetes_job_definition(  # type: ignore[no-any-return]
        project_name=project.name,
        image_tag=config["repository-uri"],
        image_digest=image_digest,
        command=kb._get_run_command(command),
        env_vars=get_run_env_vars(run_id=run_id, experiment_id=experiment_id),
        job_template=template,
    )
