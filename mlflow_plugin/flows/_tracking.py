"""Step runs and the stopwatch that says where a pipeline's time goes.

Every step runs in an MLflow run tagged ``mlflow_plugin.step`` and ``mlflow_plugin.model``:
alone (resuming the run ``mlflow run`` created, or a new one) or as a nested child of ``main``.

A step's params, tags and metrics are collected while it runs and written in one
``log_batch`` when it ends (also when it fails), instead of one request per call
(docs/ARCHITECTURE.md, "HTTP round trips and the tracking server").
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from mlflow_plugin._errors import GateFailed
from mlflow_plugin._settings import TAG_PREFIX

if TYPE_CHECKING:
    from mlflow.entities import Run

__all__ = [
    "CLOCK",
    "STEP_TAG",
    "Clock",
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


class Clock:
    """Wall time per category (``import``, ``data``, ``training``, ``gates``, ``registry``...).

    Categories do not nest: a ``with clock("registry")`` inside ``with clock("training")`` is
    taken out of ``training``, so the parts add up to the whole.
    """

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self._stack: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def __call__(self, category: str) -> Iterator[None]:
        now = time.perf_counter()
        if self._stack:  # pause the enclosing category
            outer, since = self._stack[-1]
            self.totals[outer] = self.totals.get(outer, 0.0) + now - since
        self._stack.append((category, now))
        try:
            yield
        finally:
            end = time.perf_counter()
            _, since = self._stack.pop()
            self.totals[category] = self.totals.get(category, 0.0) + end - since
            if self._stack:
                outer, _ = self._stack[-1]
                self._stack[-1] = (outer, end)

    def reset(self) -> None:
        self.totals.clear()
        self._stack.clear()

    def summary(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in sorted(self.totals.items(), key=lambda kv: -kv[1])}

    def to_json(self) -> str:
        return json.dumps(self.summary())


#: The process-wide stopwatch (one pipeline per process).
CLOCK = Clock()


def warm_imports() -> None:
    """Import the heavy libraries up front, under ``import``, so the steps' figures are clean."""
    with CLOCK("import"):
        import lifelines  # noqa: F401
        import matplotlib.backends.backend_agg  # noqa: F401
        import matplotlib.figure  # noqa: F401
        import mlflow  # noqa: F401
        import mlflow.pyfunc  # noqa: F401
        import sklearn.linear_model  # noqa: F401
        import sksurv.metrics  # noqa: F401

        import mlflow_plugin.flows._model  # noqa: F401
        import mlflow_plugin.gates._classification  # noqa: F401
        import mlflow_plugin.gates._survival  # noqa: F401


class _Pending:
    """What a step run will write in its closing ``log_batch``."""

    def __init__(self) -> None:
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.metrics: list[Any] = []  # mlflow.entities.Metric


#: run id -> what it still has to write; only runs opened by :func:`step_run` are here.
_PENDING: dict[str, _Pending] = {}


def _pending() -> _Pending | None:
    import mlflow

    run = mlflow.active_run()
    return _PENDING.get(run.info.run_id) if run is not None else None


def _flush(run_id: str) -> None:
    """Write ``run_id``'s collected params, tags and metrics in one ``log_batch`` (MLflow's
    client splits it where a batch would exceed the server's limits)."""
    pending = _PENDING.pop(run_id, None)
    if pending is None or not (pending.params or pending.tags or pending.metrics):
        return
    from mlflow import MlflowClient
    from mlflow.entities import Param, RunTag

    MlflowClient().log_batch(
        run_id,
        metrics=pending.metrics,
        params=[Param(k, v) for k, v in pending.params.items()],
        tags=[RunTag(k, v) for k, v in pending.tags.items()],
        synchronous=True,
    )


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
        else:
            _named_experiment()
            run = mlflow.start_run(tags=all_tags)
            name = run.data.tags.get("mlflow.runName", "")
            if not name or _GENERATED_NAME.match(name):
                # Replace MLflow's generated name ("brave-fox-123") with one a person can scan.
                pending.tags["mlflow.runName"] = f"{step}-{model}"
    run_id = run.info.run_id
    _PENDING[run_id] = pending
    try:
        yield run
    except GateFailed:
        with CLOCK("tracking"):
            _flush(run_id)
            mlflow.end_run("FINISHED")
        raise
    except BaseException as exc:
        pending.tags[ERROR_TAG] = " ".join(str(exc).split())[:5000] or type(exc).__name__
        with CLOCK("tracking"), contextlib.suppress(Exception):
            _flush(run_id)
        with CLOCK("tracking"), contextlib.suppress(Exception):
            mlflow.end_run("FAILED")
        raise
    else:
        with CLOCK("tracking"):
            _flush(run_id)
            mlflow.end_run("FINISHED")
    finally:
        _PENDING.pop(run_id, None)


#: Where a step's own run lands when nothing says otherwise (not MLflow's "Default").
TRAINING_EXPERIMENT = "mlflow_plugin-training"


def _named_experiment() -> None:
    """Use ``$MLFLOW_PLUGIN_EXPERIMENT`` (default ``mlflow_plugin-training``) unless the caller
    chose an experiment or ``mlflow run`` created the run already."""
    import os

    import mlflow

    if any(
        os.environ.get(k)
        for k in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID")
    ):
        return
    from mlflow.tracking.fluent import _active_experiment_id

    if _active_experiment_id is not None:  # set_experiment() was called in this process
        return
    name = os.environ.get("MLFLOW_PLUGIN_EXPERIMENT", "").strip() or TRAINING_EXPERIMENT
    experiment = mlflow.set_experiment(name)
    if "mlflow.experimentKind" not in experiment.tags:
        mlflow.MlflowClient().set_experiment_tag(
            experiment.experiment_id, "mlflow.experimentKind", "custom_model_development"
        )


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
    existing = run.data.params  # as of start_run(), which is after mlflow run's logging
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
    where its artifacts go, this uses the artifact URI the run was started with.
    """
    import os
    import tempfile

    import mlflow
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from mlflow_plugin._concurrency import parallel

    run = mlflow.active_run()
    assert run is not None
    repo = get_artifact_repository(run.info.artifact_uri, tracking_uri=mlflow.get_tracking_uri())
    with CLOCK("tracking"), tempfile.TemporaryDirectory() as tmp:
        uploads = []
        for i, (name, content) in enumerate(files.items()):
            local = os.path.join(tmp, str(i), os.path.basename(name))
            os.makedirs(os.path.dirname(local))
            if isinstance(content, str):
                with open(local, "w", encoding="utf-8") as fh:
                    fh.write(content)
            elif isinstance(content, bytes):
                with open(local, "wb") as fh:
                    fh.write(content)
            else:  # a matplotlib Figure
                content.savefig(local)
            folder = os.path.dirname(name) or None
            uploads.append(lambda local=local, folder=folder: repo.log_artifact(local, folder))
        parallel(*uploads)


def upload_dir(local: str, artifact_uri: str) -> None:
    """Upload every file under ``local`` to ``artifact_uri`` (same layout), in parallel: one
    request per file, as ``log_artifacts`` makes them one after the other."""
    import os

    import mlflow
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from mlflow_plugin._concurrency import parallel

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
