"""Step runs, and what they write (the stopwatch, re-exported here, is :mod:`._clock`).

Every step runs in an MLflow run tagged ``mlflow_plugin.step`` and ``mlflow_plugin.model``:
alone (resuming the run ``mlflow run`` created, or a new one) or as a nested child of ``main``.

A step's params, tags and metrics are collected while it runs and written in one
``log_batch`` when it ends (also when it fails), instead of one request per call
(docs/ARCHITECTURE.md, "HTTP round trips and the tracking server").
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from mlflow_plugin.errors import GateFailed
from mlflow_plugin.settings import (
    TAG_PREFIX,
    TRAINING_EXPERIMENT_DEFAULT,
    mlflow_experiment_id,
    mlflow_experiment_name,
    mlflow_run_id,
    mlflow_workspace,
    training_experiment,
)
from mlflow_plugin.training._clock import CLOCK, Clock, warm_imports

if TYPE_CHECKING:
    from mlflow.entities import Run

__all__ = [
    "CLOCK",
    "STEP_TAG",
    "Clock",
    "deferred_step_run",
    "log_artifact_files",
    "log_params_once",
    "queue_metrics",
    "set_tags",
    "step_run",
    "upload_dir",
    "warm_imports",
]

STEP_TAG = TAG_PREFIX + "step"
MODEL_TAG = TAG_PREFIX + "model"
VERSION_TAG = TAG_PREFIX + "version"
ERROR_TAG = TAG_PREFIX + "error"
_GENERATED_NAME = re.compile(r"^[a-z]+-[a-z]+-\d+$")


class _Pending:
    """What a step run will write in its closing ``log_batch``."""

    def __init__(self) -> None:
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.metrics: list[Any] = []  # mlflow.entities.Metric
        self.uploads: list[Any] = []  # futures of artifact uploads still in flight
        self.tmpdirs: list[str] = []

    def settle(self) -> None:
        """Wait for the step's uploads (raise the first failure); remove their local copies."""
        from concurrent.futures import wait

        try:
            wait(self.uploads)
            for future in self.uploads:
                future.result()
        finally:
            self.uploads.clear()
            import shutil

            for tmp in self.tmpdirs:
                shutil.rmtree(tmp, ignore_errors=True)
            self.tmpdirs.clear()


#: run id -> what it still has to write; only runs opened by :func:`step_run` are here.
_PENDING: dict[str, _Pending] = {}
#: Deferred step runs open in this process, innermost last (see :func:`deferred_step_run`).
_DEFERRED: list[_Pending] = []


def _pending() -> _Pending | None:
    import mlflow

    if _DEFERRED:
        return _DEFERRED[-1]
    run = mlflow.active_run()
    return _PENDING.get(run.info.run_id) if run is not None else None


def _flush(run_id: str) -> None:
    """Write ``run_id``'s collected params, tags and metrics in one ``log_batch`` (MLflow's
    client splits it where a batch would exceed the server's limits)."""
    pending = _PENDING.pop(run_id, None)
    if pending is None or not (pending.params or pending.tags or pending.metrics):
        return
    _log_batch(run_id, pending, tags=True)


def _log_batch(run_id: str, pending: _Pending, *, tags: bool) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Param, RunTag

    if not (pending.params or pending.metrics or (tags and pending.tags)):
        return
    MlflowClient().log_batch(
        run_id,
        metrics=pending.metrics,
        params=[Param(k, v) for k, v in pending.params.items()],
        tags=[RunTag(k, v) for k, v in pending.tags.items()] if tags else [],
        synchronous=True,
    )


def _finish(run_id: str, status: str) -> None:
    """The step's batch and its end, side by side: one round trip's time (MLflow accepts a
    batch for a finished run; ``end_run`` stays on this thread, whose run stack it pops)."""
    import mlflow

    from mlflow_plugin._internal.concurrency import beside

    beside(lambda: _flush(run_id), lambda: mlflow.end_run(status))


@contextlib.contextmanager
def step_run(
    step: str,
    model: str,
    *,
    nested: bool = False,
    tags: dict[str, str] | None = None,
) -> Iterator[Run]:
    """An MLflow run for one step, tagged with the step and model.

    Resumes the run ``mlflow run`` created (``MLFLOW_RUN_ID``) when there is no active run, and
    is a child of the active run when there is one (``main``'s steps, or a caller's own run). A step that ends in :class:`GateFailed` did its
    job (it recorded the refusal) and finishes normally; any other error marks the run
    ``FAILED`` with the message in ``mlflow_plugin.error``.
    """
    import mlflow

    all_tags = {STEP_TAG: step, MODEL_TAG: model, **(tags or {})}
    pending = _Pending()
    with CLOCK("tracking"):
        parent = mlflow.active_run()
        if nested or parent is not None:  # called inside someone's run: a child
            # In the parent's experiment, given: else each child looks it up by name again.
            experiment = parent.info.experiment_id if parent is not None else None
            run = mlflow.start_run(
                run_name=step, nested=True, tags=all_tags, experiment_id=experiment
            )
        elif mlflow_run_id():
            # Resuming the run ``mlflow run`` made: tags given to start_run would cost a
            # batch of their own; they go in the step's closing batch instead.
            run = mlflow.start_run()
            pending.tags.update(all_tags)
            name = run.info.run_name or ""
            if not name or _GENERATED_NAME.match(name):
                pending.tags["mlflow.runName"] = f"{step}-{model}"
        else:
            # A new run: its tags and a name a person can scan ("train-churn", not MLflow's
            # generated "brave-fox-123") go in the create call.
            run = mlflow.start_run(
                run_name=f"{step}-{model}", tags=all_tags, experiment_id=_named_experiment()
            )
    run_id = run.info.run_id
    _PENDING[run_id] = pending
    try:
        yield run
        with CLOCK("tracking"):
            pending.settle()  # an upload that failed fails the step
    except GateFailed:
        with CLOCK("tracking"):
            pending.settle()
            _finish(run_id, "FINISHED")
        raise
    except BaseException as exc:
        pending.tags[ERROR_TAG] = " ".join(str(exc).split())[:5000] or type(exc).__name__
        with CLOCK("tracking"), contextlib.suppress(Exception):
            pending.settle()
        with CLOCK("tracking"), contextlib.suppress(Exception):
            _flush(run_id)
        with CLOCK("tracking"), contextlib.suppress(Exception):
            mlflow.end_run("FAILED")
        raise
    else:
        with CLOCK("tracking"):
            _finish(run_id, "FINISHED")
    finally:
        _PENDING.pop(run_id, None)


@contextlib.contextmanager
def deferred_step_run(
    step: str, model: str, *, tags: dict[str, str] | None = None
) -> Iterator[None]:
    """A child step run of the active run, created when the step ends: for a step that logs no
    artifacts and needs no run id while it runs (``main``'s promote). Its start time and every
    tag go in the create call, so it costs a create and an end instead of a create, a batch
    and an end. Meanwhile :func:`set_tags` and :func:`queue_metrics` collect for it, and the
    active run stays the parent. Ends like :func:`step_run` (``GateFailed`` finishes it)."""
    import mlflow

    parent = mlflow.active_run()
    if parent is None:
        raise RuntimeError("a deferred step run needs a parent run")
    pending = _Pending()
    pending.tags.update({STEP_TAG: step, MODEL_TAG: model, **(tags or {})})
    start_ms = int(time.time() * 1000)
    _DEFERRED.append(pending)
    status = "FINISHED"
    try:
        yield
    except GateFailed:
        raise
    except BaseException as exc:
        pending.tags[ERROR_TAG] = " ".join(str(exc).split())[:5000] or type(exc).__name__
        status = "FAILED"
        raise
    finally:
        _DEFERRED.remove(pending)
        # A failed step's error is what the caller sees, not a failure to record it.
        quiet = contextlib.suppress(Exception) if status == "FAILED" else contextlib.nullcontext()
        with CLOCK("tracking"), quiet:
            _create_finished(parent, step, start_ms, pending, status)


def _create_finished(parent: Run, step: str, start_ms: int, pending: _Pending, status: str) -> None:
    """Create a child run of ``parent`` that already happened: every tag in the create call
    (with the context tags ``start_run`` adds), its params and metrics in a batch if it has
    any, then its end."""
    from mlflow import MlflowClient
    from mlflow.tracking.context import registry as context_registry
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

    client = MlflowClient()
    tags = context_registry.resolve_tags(
        {**pending.tags, MLFLOW_PARENT_RUN_ID: parent.info.run_id, MLFLOW_RUN_NAME: step}
    )
    run = client.create_run(
        parent.info.experiment_id, start_time=start_ms, tags=tags, run_name=step
    )
    from mlflow_plugin._internal.concurrency import parallel

    parallel(
        lambda: _log_batch(run.info.run_id, pending, tags=False),
        lambda: client.set_terminated(run.info.run_id, status),
    )


#: Where a step's own run lands when nothing says otherwise (not MLflow's "Default").
TRAINING_EXPERIMENT = TRAINING_EXPERIMENT_DEFAULT


#: (tracking URI, workspace, name) -> id of ``$MLFLOW_EXPERIMENT_NAME``'s experiment, looked up
#: once per process (as ``mlflow.set_experiment`` remembers its own), not at every new run.
_ENV_EXPERIMENTS: dict[tuple[str, str, str], str] = {}


def _named_experiment() -> str | None:
    """The experiment of a new step run: None where MLflow's own choice stands (``mlflow run``
    created the run, ``$MLFLOW_EXPERIMENT_ID``, ``set_experiment()`` in this process), the id of
    ``$MLFLOW_EXPERIMENT_NAME``'s experiment (looked up once per process), else
    ``$MLFLOW_PLUGIN_EXPERIMENT`` (default ``mlflow_plugin-training``), made active."""
    import mlflow

    if mlflow_run_id() or mlflow_experiment_id():
        return None
    from mlflow.tracking.fluent import _active_experiment_id

    if _active_experiment_id is not None:  # set_experiment() was called in this process
        return None
    env_name = mlflow_experiment_name()
    if env_name:
        key = (mlflow.get_tracking_uri(), mlflow_workspace() or "", env_name)
        if key not in _ENV_EXPERIMENTS:
            experiment = mlflow.MlflowClient().get_experiment_by_name(env_name)
            if experiment is None or experiment.lifecycle_stage != "active":
                return None  # start_run creates it (or says why not), as MLflow does
            _ENV_EXPERIMENTS[key] = experiment.experiment_id
        return _ENV_EXPERIMENTS[key]
    name = training_experiment()
    experiment = mlflow.set_experiment(name)
    if "mlflow.experimentKind" not in experiment.tags:
        mlflow.MlflowClient().set_experiment_tag(
            experiment.experiment_id, "mlflow.experimentKind", "custom_model_development"
        )
    return None


def set_tags(tags: dict[str, Any]) -> None:
    """Tag the active run (in its step's closing batch when it is a step run)."""
    import mlflow

    clean = {k: str(v) for k, v in tags.items() if v is not None}
    pending = _pending()
    if pending is not None:
        pending.tags.update(clean)
        return
    with CLOCK("tracking"):
        mlflow.set_tags(clean)


def queue_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Log metrics on the active run (in its step's closing batch when it is a step run)."""
    import mlflow

    pending = _pending()
    if pending is None:
        with CLOCK("tracking"):
            mlflow.log_metrics(metrics, step=step)
        return
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    pending.metrics += [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]


def log_params_once(params: dict[str, Any]) -> None:
    """Log the parameters the active run does not have yet: ``mlflow run`` logged its own (as
    text) before the step started, and logging a key again with another spelling is an error."""
    import mlflow

    run = mlflow.active_run()
    assert run is not None
    # As of start_run(), which is after mlflow run's logging (a deferred run has none yet).
    existing = {} if _DEFERRED else run.data.params
    pending = _pending()
    queued = pending.params if pending is not None else {}
    fresh = {k: str(v)[:6000] for k, v in params.items() if k not in existing and k not in queued}
    if not fresh:
        return
    if pending is not None:
        pending.params.update(fresh)
        return
    with CLOCK("tracking"):
        mlflow.log_params(fresh)


def log_artifact_files(files: dict[str, str | bytes | Any]) -> None:
    """Upload artifacts of the active run in parallel: ``{name: text | bytes | Figure}``.

    Unlike ``mlflow.log_text``/``log_figure``, which read the run back (``runs/get``) to learn
    where its artifacts go, this uses the artifact URI the run was started with. In a step
    run the files are written here and uploaded in the background, beside the step's other
    round trips; the step waits for them before it ends (and fails if one failed).
    """
    import shutil
    import tempfile

    import mlflow
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from mlflow_plugin._internal.concurrency import parallel, submit

    run = mlflow.active_run()
    assert run is not None
    if _DEFERRED:
        raise RuntimeError("a deferred step run has no artifact location while it runs")
    repo = get_artifact_repository(run.info.artifact_uri, tracking_uri=mlflow.get_tracking_uri())
    pending = _PENDING.get(run.info.run_id)
    tmp = tempfile.mkdtemp(prefix="mlflow_plugin-")
    uploads = []
    try:
        for i, (name, content) in enumerate(files.items()):
            local = os.path.join(tmp, str(i), os.path.basename(name))
            os.makedirs(os.path.dirname(local))
            if isinstance(content, str):
                with open(local, "w", encoding="utf-8") as fh:
                    fh.write(content)
            elif isinstance(content, bytes):
                with open(local, "wb") as fh:
                    fh.write(content)
            else:  # a matplotlib Figure, rendered on this thread
                content.savefig(local)
            folder = os.path.dirname(name) or None
            uploads.append(lambda local=local, folder=folder: repo.log_artifact(local, folder))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if pending is not None:
        pending.tmpdirs.append(tmp)
        pending.uploads += [submit(upload) for upload in uploads]
        return
    try:
        with CLOCK("tracking"):
            parallel(*uploads)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def upload_dir(local: str, artifact_uri: str) -> None:
    """Upload every file under ``local`` to ``artifact_uri`` (same layout), in parallel: one
    request per file, as ``log_artifacts`` makes them one after the other."""

    import mlflow
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from mlflow_plugin._internal.concurrency import parallel

    repo = get_artifact_repository(artifact_uri, tracking_uri=mlflow.get_tracking_uri())
    uploads = []
    for folder, _, names in os.walk(local):
        rel = os.path.relpath(folder, local)
        where = None if rel == "." else rel.replace(os.sep, "/")
        for name in names:
            path = os.path.join(folder, name)
            uploads.append(lambda path=path, where=where: repo.log_artifact(path, where))
    with CLOCK("tracking"):
        parallel(*uploads)
