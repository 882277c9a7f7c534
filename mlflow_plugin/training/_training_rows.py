"""What a version's training-row record (``training_rows.npz``: row hashes, durations, events,
columns) tells ``validate``: the rows the censoring distribution is estimated on, and which
evaluation rows the champion was not trained on."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlflow_plugin.training._data import SurvivalData
from mlflow_plugin.training._scoring import _Censoring
from mlflow_plugin.training._tracking import CLOCK
from mlflow_plugin.types import VersionInfo


def _fingerprint(version: VersionInfo) -> dict[str, np.ndarray] | None:
    """The version's ``training_rows.npz`` (hashes, durations, events, columns), if it has one:
    from its files (the cached copy, no request), else from its training run (versions
    registered before the fingerprint moved into the model)."""
    import contextlib
    import os

    import mlflow

    from mlflow_plugin.registry._adapter import Registry
    from mlflow_plugin.training._model_cache import cached_copy
    from mlflow_plugin.training._train import (
        FINGERPRINT_ARTIFACT,
        FINGERPRINT_IN_MODEL,
        TRAINING_RUN_TAG,
    )

    with CLOCK("registry"):
        try:
            registry = Registry()
            local = cached_copy(registry, version.name, version.version, version)
            path: Any = local / FINGERPRINT_IN_MODEL if local is not None else None
            if path is None:  # the cache is off: the one file from the version's files
                with contextlib.suppress(Exception):
                    path = mlflow.artifacts.download_artifacts(
                        artifact_uri=registry.artifact_uri(version.name, version.version)
                        + "/"
                        + FINGERPRINT_IN_MODEL,
                        tracking_uri=registry.uri,
                    )
            if path is None or not os.path.isfile(path):
                run_id = version.tags.get(TRAINING_RUN_TAG) or version.run_id
                if not run_id:
                    return None
                path = mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=FINGERPRINT_ARTIFACT
                )
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        except Exception:  # noqa: BLE001 - no fingerprint (an older or foreign version)
            return None


def _censoring(
    version: VersionInfo, data: SurvivalData, train_rows: SurvivalData | None
) -> _Censoring:
    if train_rows is not None:
        return _Censoring(train_rows.durations, train_rows.events)
    fp = _fingerprint(version)
    if fp is not None and "durations" in fp:
        return _Censoring(fp["durations"].astype(float), fp["events"].astype(bool))
    return _Censoring(
        data.durations,
        data.events,
        f"version {version.version} has no training-row record: the censoring distribution "
        "is estimated on the evaluation rows",
    )


def _unseen(version: VersionInfo, data: SurvivalData) -> tuple[np.ndarray, str]:
    """Positions of the evaluation rows ``version`` was not trained on, and a note."""
    from mlflow_plugin.training._data import row_hashes

    everything = np.arange(len(data))
    fp = _fingerprint(version)
    if fp is None or "hashes" not in fp:
        return everything, (
            f"champion version {version.version} has no training-row fingerprint: "
            "it is compared on every evaluation row"
        )
    columns = [str(c) for c in fp["columns"]]
    source = data.raw if data.raw is not None else data.frame
    try:
        hashes = row_hashes(source, columns)
    except KeyError:  # the rows lack a column it was trained on: none of them is its row
        return everything, ""
    seen = np.isin(hashes, fp["hashes"])
    return np.flatnonzero(~seen), (
        f"{int(seen.sum())} of {len(data)} evaluation rows were in champion version "
        f"{version.version}'s training data and are left out of the comparison"
        if seen.any()
        else ""
    )
