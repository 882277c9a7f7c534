"""``mlflow-plugin api``: the REST API of organisations (MLflow workspaces) over the controller.

See docs/ARCHITECTURE.md ("Organisations") and docs/organisations-and-encryption.md ("Organisations and the REST API").
"""

from __future__ import annotations

from mlflow_plugin.api._app import PREFIX, create_app, error_body
from mlflow_plugin.api._archives import ArchiveLocations
from mlflow_plugin.api._caller import Caller
from mlflow_plugin.api._routes import PIPELINE_TAG, PROTECTED_ALIASES

__all__ = [
    "PIPELINE_TAG",
    "PREFIX",
    "PROTECTED_ALIASES",
    "ArchiveLocations",
    "Caller",
    "create_app",
    "error_body",
]
