"""The ``train`` step: fit, log a pyfunc model, register a version, make it the challenger."""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np

from mlflow_plugin._internal.feature_ranges import FEATURE_RANGES_KEY, feature_ranges
from mlflow_plugin.errors import DataError
from mlflow_plugin.integrity._manifest import digest_tags, manifest_of
from mlflow_plugin.settings import TAG_PREFIX
from mlflow_plugin.training._data import Dataset, SurvivalData, load_data, prepare
from mlflow_plugin.training._gating import RECIPE_TAG
from mlflow_plugin.training._model_cache import store_copy
from mlflow_plugin.training._params import TrainParams
from mlflow_plugin.training._sources import frame_digest
from mlflow_plugin.training._tracking import (
    CLOCK,
    VERSION_TAG,
    log_params_once,
    queue_metrics,
    set_tags,
    step_run,
    upload_dir,
)
from mlflow_plugin.types import VersionInfo

if TYPE_CHECKING:
    from mlflow_plugin.registry._adapter import Registry
    from mlflow_plugin.training._model import SurvivalModel

__all__ = [
    "FINGERPRINT_ARTIFACT",
    "FINGERPRINT_IN_MODEL",
    "TrainResult",
    "check_train_horizon",
    "fingerprint_columns",
    "run_train",
    "train_in_run",
]

#: One 64-bit hash per training row (and the rows' durations and events, the censoring
#: distribution validate weighs with), in the logged model's files at
#: :data:`FINGERPRINT_IN_MODEL` (versions registered before: an artifact of the training run).
#: See docs/ARCHITECTURE.md.
FINGERPRINT_ARTIFACT = "training_rows.npz"
FINGERPRINT_IN_MODEL = "artifacts/" + FINGERPRINT_ARTIFACT

TRAINING_RUN_TAG = TAG_PREFIX + "training_run"
DATA_TAG = TAG_PREFIX + "data"
DATA_DIGEST_TAG = TAG_PREFIX + "data_digest"
_REQUIREMENTS = ("mlflow", "lifelines", "scikit-learn", "pandas", "numpy", "cloudpickle")


@dataclass(frozen=True)
class TrainResult:
    """What ``train`` produced.

    Attributes:
        version: the registered version (now the challenger).
        run_id: the training run.
        model_uri: the logged model (``models:/m-...``).
        horizon: the horizon the model was fitted for (the end of its time grid).
        train: the rows it was fitted on.
        holdout: the rows kept out (None for ``holdout=0``).
    """

    version: VersionInfo
    run_id: str
    model_uri: str
    horizon: float
    train: SurvivalData
    holdout: SurvivalData | None


def run_train(params: TrainParams, *, tracking_uri: str | None = None) -> TrainResult:
    """Load and check the data, then train in a run of its own (``mlflow run -e train``)."""
    from mlflow_plugin.registry._adapter import Registry
    from mlflow_plugin.training._data import split_holdout

    registry = Registry(tracking_uri)
    # Bad input (data, columns, holdout, horizon) fails before the run starts.
    with CLOCK("data"):
        dataset = load_data(params.data)
        data = prepare(dataset, params.columns, missing=params.missing)
        train, holdout = split_holdout(data, params.holdout, params.seed)
        if params.horizon is not None:
            horizon = check_train_horizon(params.horizon, train, holdout)
        else:
            try:
                horizon = _auto_horizon(train, holdout)
            except ValueError as exc:
                raise DataError(str(exc)) from None
        check_trainable(params, train, horizon)
    with step_run("train", params.model_name):
        return train_in_run(params, dataset, train, holdout, registry)


def check_trainable(params: TrainParams, train: SurvivalData, horizon: float) -> None:
    """Refuse, before any run starts, rows a model cannot learn from (e.g. all censored).

    Raises:
        DataError: the message :func:`train_in_run` would have failed with.
    """
    from mlflow_plugin.training._model import check_learnable

    try:
        check_learnable(params.model_kind, train.durations, train.events, horizon)
    except ValueError as exc:
        raise DataError(f"training on {params.data!r} failed: {exc}") from None


def check_train_horizon(horizon: float, train: SurvivalData, holdout: SurvivalData | None) -> float:
    """``horizon`` if it lies inside the follow-up of the training rows and of the holdout.

    Raises:
        DataError: it does not (the message names the range).
    """
    from mlflow_plugin.metrics import check_horizon

    sets = [train.durations] + ([] if holdout is None else [holdout.durations])
    try:
        return check_horizon(horizon, sets)
    except ValueError as exc:
        raise DataError(f"{exc} (the training rows and the holdout)") from None


def train_in_run(
    params: TrainParams,
    dataset: Dataset,
    train: SurvivalData,
    holdout: SurvivalData | None,
    registry: Registry,
) -> TrainResult:
    """Fit on ``train``, log the model in the active run, register it as the challenger.

    Raises:
        DataError: the model cannot be fitted on these rows.
    """
    import mlflow

    from mlflow_plugin.training._model import fit_model

    run_id = mlflow.active_run().info.run_id  # type: ignore[union-attr]
    with CLOCK("training"):
        try:
            horizon = params.horizon or _auto_horizon(train, holdout)
            model = fit_model(
                params.model_kind,
                train.frame,
                train.features,
                train.durations,
                train.events,
                penalizer=params.penalizer,
                horizon=horizon,
                buckets=params.buckets,
            )
        except (ValueError, np.linalg.LinAlgError) as exc:  # incl. lifelines' ConvergenceError
            raise DataError(f"training on {params.data!r} failed: {exc}") from exc
        train_c_index = _train_c_index(model, train)
    digest = dataset.digest
    recipe = {**params.recipe(), "horizon": model.horizon, "features": list(train.features)}
    log_params_once(
        {
            "model_name": params.model_name,
            "data": params.data,
            "model_kind": params.model_kind,
            "duration_col": params.columns.duration,
            "event_col": params.columns.event,
            "time_col": params.columns.time or "none",
            "features": ",".join(params.columns.features or ("all",)),
            "horizon": params.horizon or "auto",
            "penalizer": params.penalizer,
            "holdout": params.holdout,
            "missing": params.missing,
            "buckets": params.buckets,
            "seed": params.seed,
        }
    )
    log_params_once(  # written with the step's other params in one batch when it ends
        {
            "resolved_horizon": model.horizon,
            "decision_threshold": round(model.decision_threshold, 6),
            "n_train": len(train),
            "n_holdout": len(holdout) if holdout is not None else 0,
            "data_digest": digest,
        }
    )
    if train_c_index is not None:
        queue_metrics({"train_c_index": train_c_index})
    with CLOCK("tracking"):
        _log_dataset(dataset, train)
    tags = {
        TRAINING_RUN_TAG: run_id,
        DATA_TAG: params.data[:5000],
        DATA_DIGEST_TAG: digest,
        RECIPE_TAG: json.dumps(recipe, sort_keys=True),
        TAG_PREFIX + "model_kind": params.model_kind,
        TAG_PREFIX + "horizon": f"{model.horizon:g}",
    }
    with tempfile.TemporaryDirectory() as tmp:
        with CLOCK("model logging"):
            model_uri, local = _log_model(model, train, tmp)
            # The files as uploaded: hashed for the integrity digest, which is registered with
            # the version, and kept as its cached copy for validate (flows/_model_cache.py).
            tags.update(digest_tags(manifest_of(local)))
        with CLOCK("registry"):
            version = registry.register_version(params.model_name, model_uri, run_id, tags)
            store_copy(registry, version, local)
            _make_challenger(registry, params.model_name, version.version)
    set_tags({VERSION_TAG: version.version, "mlflow_plugin.model_uri": model_uri})
    print(
        f"registered {params.model_name} version {version.version} (challenger) from run {run_id}"
    )
    return TrainResult(version, run_id, model_uri, model.horizon, train, holdout)


def _auto_horizon(train: SurvivalData, holdout: SurvivalData | None) -> float:
    """Inside the holdout's follow-up too, when there is one (see gates.auto_horizon)."""
    from mlflow_plugin.metrics import auto_horizon

    return auto_horizon(train.durations, [] if holdout is None else [holdout.durations])


def fingerprint_columns(data: SurvivalData) -> list[str]:
    """The columns a row is identified by: duration, event, time and feature columns."""
    cols = data.columns
    return [c for c in (cols.duration, cols.event, cols.time, *data.features) if c is not None]


def _write_fingerprint(train: SurvivalData, path: str) -> None:
    """``training_rows.npz`` at ``path``: the training rows' 64-bit hashes, durations and
    events (logged with the model: see :data:`FINGERPRINT_IN_MODEL`)."""
    from mlflow_plugin.training._data import row_hashes

    columns = fingerprint_columns(train)
    source = train.raw if train.raw is not None else train.frame
    np.savez_compressed(
        path,
        hashes=row_hashes(source, columns),
        durations=train.durations,
        events=train.events,
        columns=np.array(columns, dtype=str),
    )


def _train_c_index(model: SurvivalModel, train: SurvivalData) -> float | None:
    from mlflow_plugin.metrics import c_index_score

    try:
        risk = model.predict(None, train.X)["risk"].to_numpy()
        return c_index_score(train.durations, train.events, risk)
    except ValueError:  # undefined on these rows: the gates will say so on the evaluation data
        return None


def _log_dataset(dataset: Dataset, train: SurvivalData) -> None:
    """Show the training rows under "Datasets used" in the MLflow UI."""
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas

    source: Any = dataset.source
    if dataset.lifelines_name:
        from mlflow.data.code_dataset_source import CodeDatasetSource

        source = CodeDatasetSource({"lifelines_dataset": dataset.lifelines_name})
    # Cosmetic (the "Datasets used" panel): never fail a training run over it.
    with warnings.catch_warnings(), contextlib.suppress(Exception):
        warnings.simplefilter("ignore")
        ds = from_pandas(
            train.frame, source=source, name=dataset.name, digest=frame_digest(train.frame)[:8]
        )
        mlflow.log_input(ds, context="training")


def _requirements() -> list[str]:
    out = []
    for name in _REQUIREMENTS:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(name)
    return out


def _log_model(model: SurvivalModel, train: SurvivalData, tmp: str) -> tuple[str, str]:
    """Log ``model`` as a pyfunc (signature, input example, the training-row fingerprint) in
    the active run; return its ``models:/<model_id>`` URI and the local copy of its files.

    What ``mlflow.pyfunc.log_model`` does, with MLflow's public calls, minus its round trips
    that only read back what this process knows (the run twice, the new logged model once):
    create the logged model, link it as the run's output, save the files locally, upload them
    in parallel, mark it ready (docs/ARCHITECTURE.md, "HTTP round trips").
    """
    import os

    import mlflow
    import mlflow.pyfunc
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model, infer_signature

    from mlflow_plugin.training._model import pickled_by_value

    run = mlflow.active_run()
    assert run is not None
    fingerprint = os.path.join(tmp, FINGERPRINT_ARTIFACT)
    _write_fingerprint(train, fingerprint)
    # The signature declares the features as they were read (ints as long, text as string), so
    # predicting on the same kind of frame as the training data just works.
    features = train.inputs.loc[:, list(train.features)]
    example, typed = features.head(5), features.head(50)
    client = mlflow.MlflowClient()
    logged = mlflow.initialize_logged_model(
        name="model",
        source_run_id=run.info.run_id,
        experiment_id=run.info.experiment_id,
    )
    client.log_outputs(run.info.run_id, [LoggedModelOutput(logged.model_id, step=0)])
    local = os.path.join(tmp, "model")
    with warnings.catch_warnings(), _quiet_logger("mlflow.pyfunc"), _quiet_logger("mlflow.models"):
        # Pickling our own object is the point (and it is pickled by value, see _model), so
        # MLflow's warning about pickled python_model objects only adds noise to every run.
        warnings.simplefilter("ignore")
        signature = infer_signature(typed, model.predict(None, typed))
        with pickled_by_value():
            mlflow.pyfunc.save_model(
                local,
                python_model=model,
                artifacts={"training_rows": fingerprint},
                mlflow_model=Model(
                    artifact_path=logged.artifact_location,
                    model_uuid=logged.model_id,
                    run_id=run.info.run_id,
                    model_id=logged.model_id,
                ),
                signature=signature,
                input_example=example,
                pip_requirements=_requirements(),
                metadata={
                    "mlflow_plugin.model_kind": model.kind,
                    "mlflow_plugin.horizon": model.horizon,
                    "mlflow_plugin.decision_threshold": model.decision_threshold,
                    FEATURE_RANGES_KEY: feature_ranges(features),
                },
            )
    upload_dir(local, logged.artifact_location)
    mlflow.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    return f"models:/{logged.model_id}", local


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _make_challenger(registry: Registry, name: str, version: str) -> None:
    """Point ``challenger`` at ``version`` through the controller (under the model's lock, with
    the stage mirror: ``Staging`` for it, the previous challenger un-staged)."""
    from mlflow_plugin.controller import Controller
    from mlflow_plugin.ledger._ledger import Ledger

    Controller(registry, Ledger(registry.uri)).set_challenger(name, version)
