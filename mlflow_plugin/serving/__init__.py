"""Serving: the champion of a registered model, hot-swapped, with fallback, guardrails and a log.

- :class:`ChampionModel` loads ``models:/NAME@champion``, follows the alias and falls back.
- :class:`Guardrails` are the rules an output must satisfy.
- :class:`PredictionLog` writes every prediction to a SQL table off the request path.
- :class:`Router` / :class:`RolloutRouter` / :class:`ChampionRouter` decide which loaded version
  answers (and which one scores a mirror of the request, during a blue-green rollout).
- :class:`ServeConfig` holds ``mlflow-plugin serve``'s settings, built once from its options.
- :func:`create_app` is the HTTP server (``mlflow-plugin serve``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlflow_plugin.serving._config import ServeConfig
from mlflow_plugin.serving._guardrails import Guardrails, Violation
from mlflow_plugin.serving._loader import ChampionModel, Prediction
from mlflow_plugin.serving._metrics import ServingMetrics
from mlflow_plugin.serving._prediction_log import PredictionLog, PredictionRecord, prediction_table
from mlflow_plugin.serving._rollout_router import RolloutRouter
from mlflow_plugin.serving._routing import (
    ChampionRouter,
    Deployment,
    Fleet,
    LoadFailure,
    Plan,
    Route,
    Router,
)

__all__ = [
    "ChampionModel",
    "ChampionRouter",
    "Deployment",
    "Fleet",
    "Guardrails",
    "LoadFailure",
    "Plan",
    "Prediction",
    "PredictionLog",
    "PredictionRecord",
    "RolloutRouter",
    "Route",
    "Router",
    "ServeConfig",
    "ServingMetrics",
    "Violation",
    "create_app",
    "prediction_table",
]

if TYPE_CHECKING:
    from mlflow_plugin.serving._app import create_app


def __getattr__(name: str) -> Any:
    # The HTTP layer (FastAPI) is imported only by those who serve over HTTP.
    if name == "create_app":
        from mlflow_plugin.serving._app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
