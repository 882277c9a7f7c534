"""Monitoring: actual outcomes beside the prediction log, matched to predictions, and windowed
performance of a served version against the baseline frozen at its promotion.

Sits beside the ledger and the registry (``docs/ARCHITECTURE.md``, "The operator (closed
loop)"): it reads the prediction log's database and writes monitoring runs; it decides nothing.
Every metric is computed by :mod:`mlflow_plugin.metrics`.
"""

from __future__ import annotations

from mlflow_plugin.monitoring._monitor import (
    MonitorReport,
    evaluate_windows,
    horizon_of,
    monitor_version,
    survival_column,
)
from mlflow_plugin.monitoring._outcomes import IngestResult, OutcomeStore, outcomes_table
from mlflow_plugin.monitoring._runs import (
    MONITORING_EXPERIMENT,
    MonitoringRuns,
    experiment_kind_tags,
)
from mlflow_plugin.monitoring._windows import (
    METRICS,
    Window,
    matured_labels,
    window_metrics,
    window_spans,
)

__all__ = [
    "IngestResult",
    "METRICS",
    "MONITORING_EXPERIMENT",
    "MonitorReport",
    "MonitoringRuns",
    "OutcomeStore",
    "Window",
    "evaluate_windows",
    "experiment_kind_tags",
    "horizon_of",
    "matured_labels",
    "monitor_version",
    "outcomes_table",
    "survival_column",
    "window_metrics",
    "window_spans",
]
