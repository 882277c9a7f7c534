"""Helpers for integration tests: real model versions on the real server."""

from __future__ import annotations

import functools

from mlflow_plugin.registry import Registry

PASSED = {"mlflow_plugin.validation": "passed", "mlflow_plugin.backtest": "passed"}
FAILED = {"mlflow_plugin.validation": "failed", "mlflow_plugin.backtest": "passed"}


@functools.cache
def logged_model_uri(tracking_uri: str) -> str:
    """Log one tiny scikit-learn model on the server (once per server) and return its URI."""
    import mlflow
    import numpy as np
    from sklearn.dummy import DummyClassifier

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("mlflow_plugin-tests")
    X = np.arange(20, dtype=float).reshape(10, 2)
    y = np.array([0, 1] * 5)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            DummyClassifier(strategy="prior").fit(X, y), name="model", pip_requirements=[]
        )
    return str(info.model_uri)


def make_versions(
    tracking_uri: str, model: str, n: int, tags: dict[str, str] | None = None
) -> list[str]:
    """Register ``n`` versions of ``model`` (same artifacts), tagged ``tags`` (default passed)."""
    registry = Registry(tracking_uri)
    source = logged_model_uri(tracking_uri)
    return [
        registry.register_version(
            model, source, None, dict(PASSED if tags is None else tags)
        ).version
        for _ in range(n)
    ]


def log_own_models(tracking_uri: str, n: int) -> list[str]:
    """Log ``n`` tiny models that no other test shares (safe to delete or tamper with)."""
    import mlflow
    import numpy as np
    from sklearn.dummy import DummyClassifier

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("mlflow_plugin-tests")
    X = np.arange(20, dtype=float).reshape(10, 2)
    y = np.array([0, 1] * 5)
    uris = []
    for i in range(n):
        clf = DummyClassifier(strategy="constant", constant=i % 2).fit(X, y)
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(clf, name="model", pip_requirements=[])
        uris.append(str(info.model_uri))
    return uris


def register_own_artifacts(
    tracking_uri: str, model: str, n: int, sources: list[str] | None = None
) -> list[str]:
    """Register ``n`` versions of ``model`` (tags passed), from ``sources`` (one per version)
    or from a freshly logged model each."""
    registry = Registry(tracking_uri)
    sources = sources or log_own_models(tracking_uri, n)
    return [registry.register_version(model, src, None, dict(PASSED)).version for src in sources]
