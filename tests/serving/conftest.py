"""Serving fixtures (helpers live in serving_helpers.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from serving_helpers import LiveServer, features, register, shared_model


@pytest.fixture()
def versions(tracking_uri: str, model_name: str):
    """``versions("r1", "r2")`` registers shared models as versions of this test's model."""

    def make(*kinds: str) -> list[str]:
        return [register(tracking_uri, model_name, shared_model(tracking_uri, k)) for k in kinds]

    return make


@pytest.fixture()
def one_row() -> str:
    """One Rossi row as a ``dataframe_split`` request body."""
    return json.dumps({"dataframe_split": features().head(1).to_dict(orient="split")})


@pytest.fixture()
def served(tracking_uri: str, model_name: str) -> Iterator[Any]:
    """``served(app_kwargs=None, **ChampionModel kwargs)`` -> a LiveServer around a new
    ChampionModel (closed after); ``app_kwargs`` go to ``create_app``."""
    from mlflow_plugin.serving import ChampionModel, create_app

    stack: list[LiveServer] = []

    def start(app_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> LiveServer:
        kwargs.setdefault("poll_interval", 0.5)
        model = ChampionModel(model_name, tracking_uri=tracking_uri, **kwargs)
        server = LiveServer(create_app(model, **(app_kwargs or {}))).__enter__()
        server.model = model  # type: ignore[attr-defined]
        stack.append(server)
        return server

    yield start
    for server in reversed(stack):
        server.__exit__()
