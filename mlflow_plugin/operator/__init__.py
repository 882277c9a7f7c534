"""The operator: the closed loop (schedule, monitor, triggers, degradation, rollback,
reconcile) as one pass, :meth:`Operator.tick`, run once by ``mlflow-plugin tick`` or in a loop
by ``mlflow-plugin operator``. See ``docs/ARCHITECTURE.md``, "The operator (closed loop)".
"""

from __future__ import annotations

from mlflow_plugin.operator._alerts import Alert, Alerter
from mlflow_plugin.operator._lease import OperatorBusy, OperatorLease
from mlflow_plugin.operator._retrain import (
    RETRAIN_EXPERIMENT,
    Launch,
    Retrainer,
    kubernetes_job_spec,
    main_parameters,
)
from mlflow_plugin.operator._tick import (
    HEARTBEAT_TAG,
    Firing,
    Operator,
    TickContext,
    TickTask,
    utc_now,
)

__all__ = [
    "Alert",
    "Alerter",
    "Firing",
    "HEARTBEAT_TAG",
    "Launch",
    "Operator",
    "OperatorBusy",
    "OperatorLease",
    "RETRAIN_EXPERIMENT",
    "Retrainer",
    "TickContext",
    "TickTask",
    "kubernetes_job_spec",
    "main_parameters",
    "utc_now",
]
