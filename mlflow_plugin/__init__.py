"""mlflow_plugin: retrain, gate, promote and roll back models on open-source MLflow.

The public surface is re-exported here. Everything but the errors is imported on first use
(PEP 562), so ``import mlflow_plugin`` stays cheap: MLflow alone takes seconds to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlflow_plugin._errors import (
    BadInput,
    ConfigError,
    DataError,
    GateFailed,
    IntegrityError,
    LockLost,
    MlflowPluginError,
    ModelUnavailable,
    NotFound,
    PermissionDenied,
    PromotionConflict,
    RegistryError,
    RegistryUnavailable,
)
from mlflow_plugin._lazy import lazy_attributes

if TYPE_CHECKING:
    from mlflow_plugin._chain import ChainReport
    from mlflow_plugin._types import Event, ModelInfo, VersionInfo
    from mlflow_plugin.controller import Controller, Outcome
    from mlflow_plugin.evaluation import evaluate_policy
    from mlflow_plugin.flows import PipelineParams, PipelineResult, TrainParams, run_pipeline
    from mlflow_plugin.gates import GateReport, Policy
    from mlflow_plugin.ledger import Ledger
    from mlflow_plugin.registry import Registry
    from mlflow_plugin.serving import ChampionModel, PredictionLog

__version__ = "0.1.0"

__all__ = [
    "BadInput",
    "ChainReport",
    "ChampionModel",
    "ConfigError",
    "Controller",
    "DataError",
    "Event",
    "GateFailed",
    "GateReport",
    "IntegrityError",
    "Ledger",
    "LockLost",
    "MlflowPluginError",
    "ModelInfo",
    "ModelUnavailable",
    "NotFound",
    "Outcome",
    "PermissionDenied",
    "PipelineParams",
    "PipelineResult",
    "Policy",
    "PredictionLog",
    "PromotionConflict",
    "Registry",
    "RegistryError",
    "RegistryUnavailable",
    "TrainParams",
    "VersionInfo",
    "__version__",
    "evaluate_policy",
    "run_pipeline",
]

_LAZY = {
    "ChainReport": "mlflow_plugin._chain",
    "ChampionModel": "mlflow_plugin.serving",
    "Controller": "mlflow_plugin.controller",
    "Event": "mlflow_plugin._types",
    "GateReport": "mlflow_plugin.gates",
    "Ledger": "mlflow_plugin.ledger",
    "ModelInfo": "mlflow_plugin._types",
    "Outcome": "mlflow_plugin.controller",
    "PipelineParams": "mlflow_plugin.flows",
    "PipelineResult": "mlflow_plugin.flows",
    "Policy": "mlflow_plugin.gates",
    "PredictionLog": "mlflow_plugin.serving",
    "Registry": "mlflow_plugin.registry",
    "TrainParams": "mlflow_plugin.flows",
    "VersionInfo": "mlflow_plugin._types",
    "evaluate_policy": "mlflow_plugin.evaluation",
    "run_pipeline": "mlflow_plugin.flows",
}


# PEP 562: the members' modules are imported on first use.
__getattr__, __dir__ = lazy_attributes(globals(), _LAZY, __all__)
