"""Both sides of a rollout analysis, read from the prediction log (and the outcomes beside it).

One :class:`~mlflow_plugin.rollouts._analysis.Sample` per side: the rows of one version on one route in a
time window, counted **per request** (a request failed when any of its rows carries an error,
broke a guardrail when any row is flagged; its latency is the request's). The champion's
backup answers for a failed canary (``fallback`` true) are left out of the baseline: the failed
attempt is already on the canary's side. Matured outcomes, when the version has a horizon and
outcomes were ingested, add the Brier score (:func:`window_metrics`, as monitoring computes it).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from mlflow_plugin.errors import ConfigError
from mlflow_plugin.rollouts._analysis import Sample

if TYPE_CHECKING:
    from mlflow_plugin.monitoring._outcomes import OutcomeStore
    from mlflow_plugin.types import VersionInfo

__all__ = ["route_sample"]


def _table(store: OutcomeStore) -> Any:
    from sqlalchemy import Boolean, DateTime, Float, String, Text, column, table

    return table(
        store.predictions.name,
        column("ts", DateTime(timezone=True)),
        column("model_name", String()),
        column("model_version", String()),
        column("route", String()),
        column("request_id", String()),
        column("fallback", Boolean()),
        column("latency_ms", Float()),
        column("error", Text()),
        column("guardrail_flags", Text()),
    )


def route_sample(
    store: OutcomeStore,
    model: str,
    version: VersionInfo | str,
    route: str,
    start: datetime,
    end: datetime,
    *,
    outcomes: bool = True,
) -> Sample:
    """``version``'s requests on ``route`` in ``[start, end)`` (see the module docstring)."""
    import pandas as pd
    from sqlalchemy import select

    number = version if isinstance(version, str) else version.version
    if not store._has_predictions():
        return Sample()
    p = _table(store)
    query = select(
        p.c.request_id, p.c.latency_ms, p.c.error, p.c.guardrail_flags, p.c.fallback
    ).where(
        p.c.model_name == model,
        p.c.model_version == number,
        p.c.route == route,
        p.c.ts >= start,
        p.c.ts < end,
    )
    with store._reading() as conn:
        result = conn.execute(query)
        frame = pd.DataFrame(result.all(), columns=list(result.keys()))
    if frame.empty:
        return Sample()
    if route == "champion":
        frame = frame[~frame["fallback"].fillna(False).astype(bool)]
    frame = frame.assign(
        failed=frame["error"].notna(),
        flagged=frame["guardrail_flags"].fillna("").astype(str).str.len() > 0,
    )
    per = frame.groupby("request_id").agg(
        failed=("failed", "any"), flagged=("flagged", "any"), latency=("latency_ms", "max")
    )
    brier, matured = None, 0
    if outcomes and not isinstance(version, str):
        brier, matured = _brier(store, version, start, end)
    return Sample(
        requests=len(per),
        errors=int(per["failed"].sum()),
        flagged=int(per["flagged"].sum()),
        latencies=tuple(per.loc[~per["failed"], "latency"].astype(float)),
        brier=brier,
        matured=matured,
    )


def _brier(
    store: OutcomeStore, version: VersionInfo, start: datetime, end: datetime
) -> tuple[float | None, int]:
    """The Brier score of ``version``'s matured outcomes in the window (None: none, or the
    version has no horizon)."""
    from mlflow_plugin.monitoring._monitor import horizon_of, survival_column
    from mlflow_plugin.monitoring._windows import window_metrics

    try:
        horizon = horizon_of(version)
    except ConfigError:
        return None, 0
    frame = store.matched(
        version.name, version.version, start, end, survival_key=survival_column(horizon)
    )
    if frame.empty:
        return None, 0
    metrics, matured = window_metrics(frame, horizon=horizon, decision_threshold=0.5)
    return metrics.get("brier"), matured
