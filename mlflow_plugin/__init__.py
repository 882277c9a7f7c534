"""mlflow_plugin: retrain, gate, promote and roll back models on open-source MLflow."""

from __future__ import annotations

from mlflow_plugin._errors import (
    BadInput,
    ConfigError,
    DataError,
    GateFailed,
    MlflowPluginError,
    ModelUnavailable,
    NotFound,
    PromotionConflict,
    RegistryError,
    RegistryUnavailable,
)

__version__ = "0.1.0"

__all__ = [
    "BadInput",
    "ConfigError",
    "DataError",
    "GateFailed",
    "MlflowPluginError",
    "ModelUnavailable",
    "NotFound",
    "PromotionConflict",
    "RegistryError",
    "RegistryUnavailable",
    "__version__",
]
