"""mlflow_plugin: retrain, gate, promote and roll back models on open-source MLflow.

The public surface is re-exported here. Everything but the errors is imported on first use
(PEP 562), so ``import mlflow_plugin`` stays cheap: MLflow alone takes seconds to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlflow_plugin._internal.lazy import lazy_attributes
from mlflow_plugin.errors import (
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

if TYPE_CHECKING:
    from mlflow_plugin.controller import Controller, Outcome
    from mlflow_plugin.evaluation._evaluate import evaluate_policy
    from mlflow_plugin.ledger._chain import ChainReport
    from mlflow_plugin.ledger._ledger import Ledger
    from mlflow_plugin.metrics import GateReport
    from mlflow_plugin.policy import Policy
    from mlflow_plugin.registry._adapter import Registry
    from mlflow_plugin.serving import ChampionModel, PredictionLog
    from mlflow_plugin.training import PipelineParams, PipelineResult, TrainParams, run_pipeline
    from mlflow_plugin.types import Event, ModelInfo, VersionInfo

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
    "ChainReport": "mlflow_plugin.ledger._chain",
    "ChampionModel": "mlflow_plugin.serving",
    "Controller": "mlflow_plugin.controller",
    "Event": "mlflow_plugin.types",
    "GateReport": "mlflow_plugin.metrics",
    "Ledger": "mlflow_plugin.ledger._ledger",
    "ModelInfo": "mlflow_plugin.types",
    "Outcome": "mlflow_plugin.controller",
    "PipelineParams": "mlflow_plugin.training",
    "PipelineResult": "mlflow_plugin.training",
    "Policy": "mlflow_plugin.policy",
    "PredictionLog": "mlflow_plugin.serving",
    "Registry": "mlflow_plugin.registry._adapter",
    "TrainParams": "mlflow_plugin.training",
    "VersionInfo": "mlflow_plugin.types",
    "evaluate_policy": "mlflow_plugin.evaluation._evaluate",
    "run_pipeline": "mlflow_plugin.training",
}


# PEP 562: the members' modules are imported on first use.
__getattr__, __dir__ = lazy_attributes(globals(), _LAZY, __all__)
