"""The fallback's matured metrics on the champion's windows, scored on the logged inputs.

The fallback served none of those requests, so its predictions are made now, offline, on the
features the prediction log stored for the champion's matched rows: the same entities, the
same outcomes, the same windows, the same metric functions.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from mlflow_plugin.monitoring import MonitoringRuns, OutcomeStore, Window
    from mlflow_plugin.types import VersionInfo

__all__ = ["score_fallback"]

_log = logging.getLogger("mlflow_plugin.operator")


def score_fallback(
    store: OutcomeStore,
    registry: Any,
    champion: VersionInfo,
    fallback: str,
    windows: list[Window],
    runs: MonitoringRuns | None,
) -> list[dict[str, float | None]] | None:
    """Per window, the fallback's metrics on the champion's matched rows; None when the inputs
    were not logged or the fallback cannot be loaded or fails to predict."""
    import mlflow.pyfunc

    from mlflow_plugin.monitoring import horizon_of, survival_column, window_metrics

    version = registry.get_version(champion.name, fallback)
    try:
        horizon = horizon_of(version)
        model = mlflow.pyfunc.load_model(f"models:/{champion.name}/{fallback}")
    except Exception as exc:  # noqa: BLE001 - any load failure means "cannot compare"
        _log.warning("fallback v%s of %s could not be loaded: %s", fallback, champion.name, exc)
        return None
    threshold = runs.decision_threshold(version) if runs is not None else 0.5
    champion_survival = survival_column(horizon_of(champion))
    frames = []
    for w in windows:
        frame = store.matched(
            champion.name,
            champion.version,
            w.start,
            w.end,
            survival_key=champion_survival,
            with_features=True,
        )
        if frame.empty or frame["features"].isna().any():
            return None
        frames.append(frame)
    every = pd.concat(frames, ignore_index=True)
    censoring = None
    if every["duration"].notna().any():
        censoring = (
            every["duration"].to_numpy(dtype=float),
            every["event"].to_numpy().astype(bool),
        )
    out = []
    for frame in frames:
        inputs = pd.DataFrame([json.loads(text) for text in frame["features"]])
        try:
            predicted = model.predict(inputs)
            scored = frame.assign(
                risk=pd.to_numeric(predicted["risk"]).to_numpy(),
                survival=pd.to_numeric(predicted[survival_column(horizon)]).to_numpy(),
            )
        except Exception as exc:  # noqa: BLE001 - a fallback that cannot score is no evidence
            _log.warning(
                "fallback v%s of %s failed on logged inputs: %s", fallback, champion.name, exc
            )
            return None
        metrics, _ = window_metrics(
            scored, horizon=horizon, decision_threshold=threshold, censoring=censoring
        )
        out.append(metrics)
    return out
