"""One monitoring pass over a model version: match, window, compute, log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pandas as pd

from mlflow_plugin.errors import ConfigError
from mlflow_plugin.monitoring._windows import Window, window_metrics, window_spans
from mlflow_plugin.settings import TAG_PREFIX

if TYPE_CHECKING:
    from mlflow_plugin.monitoring._outcomes import OutcomeStore
    from mlflow_plugin.monitoring._runs import MonitoringRuns
    from mlflow_plugin.types import VersionInfo

__all__ = ["MonitorReport", "evaluate_windows", "horizon_of", "monitor_version", "survival_column"]


@dataclass(frozen=True)
class MonitorReport:
    """The windows of one version and where they were logged.

    Attributes:
        model, version: what was monitored.
        windows: every window since promotion, oldest first (the last may be incomplete).
        baseline: the frozen baseline metrics.
        run_id: the monitoring run (empty when not logged).
    """

    model: str
    version: str
    windows: list[Window]
    baseline: dict[str, float]
    run_id: str = ""

    @property
    def complete(self) -> list[Window]:
        return [w for w in self.windows if w.complete]

    def as_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "version": self.version,
            "run_id": self.run_id,
            "baseline": self.baseline,
            "windows": [w.as_dict() for w in self.windows],
        }


def horizon_of(version: VersionInfo) -> float:
    """The version's horizon (tag ``mlflow_plugin.horizon``, set by ``train``)."""
    raw = version.tags.get(TAG_PREFIX + "horizon")
    try:
        return float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(
            f"{version.name} version {version.version} has no horizon tag ({TAG_PREFIX}horizon): "
            "only versions trained by mlflow_plugin can be monitored"
        ) from None


def survival_column(horizon: float) -> str:
    """The output column holding P(no event by the horizon) (see ``flows/_model.py``)."""
    return f"p_gt_{horizon:.6g}"


def evaluate_windows(
    store: OutcomeStore,
    version: VersionInfo,
    *,
    origin: datetime,
    now: datetime,
    length: timedelta,
    decision_threshold: float,
) -> list[Window]:
    """Every window of ``version`` from ``origin`` to ``now`` with its metrics and counts."""
    horizon = horizon_of(version)
    spans = window_spans(origin, now, length)
    if not spans:
        return []
    frames = {
        k: store.matched(
            version.name, version.version, start, end, survival_key=survival_column(horizon)
        )
        for k, start, end in spans
    }
    non_empty = [f for f in frames.values() if not f.empty and f["duration"].notna().any()]
    censoring = None
    if non_empty:
        every = pd.concat(non_empty, ignore_index=True)
        every = every[every["duration"].notna()]
        censoring = (
            every["duration"].to_numpy(dtype=float),
            every["event"].to_numpy().astype(bool),
        )
    out = []
    for k, start, end in spans:
        frame = frames[k]
        metrics, matured = window_metrics(
            frame, horizon=horizon, decision_threshold=decision_threshold, censoring=censoring
        )
        counts = store.traffic(version.name, version.version, start, end)
        counts.update(matched=len(frame), matured=matured)
        out.append(Window(k, start, end, end <= now, metrics, counts))
    return out


def monitor_version(
    store: OutcomeStore,
    runs: MonitoringRuns | None,
    version: VersionInfo,
    *,
    promoted_ms: int,
    now: datetime,
    length: timedelta,
) -> MonitorReport:
    """Compute (and, with ``runs``, log) the windows of ``version`` since its promotion."""
    origin = datetime.fromtimestamp(promoted_ms / 1000, tz=UTC)
    run_id, baseline = "", dict[str, float]()
    threshold = 0.5
    if runs is not None:
        run_id, baseline = runs.run_for(version, promoted_ms)
        threshold = runs.decision_threshold(version)
    windows = evaluate_windows(
        store, version, origin=origin, now=now, length=length, decision_threshold=threshold
    )
    if runs is not None and windows:
        runs.log_windows(run_id, windows)
    return MonitorReport(version.name, version.version, windows, baseline, run_id)
