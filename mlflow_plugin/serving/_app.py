"""The HTTP server: MLflow's scoring protocol in front of a :class:`ChampionModel`.

Built on FastAPI and uvicorn, which MLflow's own scoring server uses, and on that server's request
parsing and response encoding (:mod:`._protocol`), so clients of ``mlflow models serve`` work
unchanged. The endpoints are the top-level functions of :data:`router`; each reads what it needs
(``model``, ``metrics``, ``batcher``, ``config``) from ``request.app.state``, which
:func:`create_app` fills. A refused request raises; the exception handlers answer it. Endpoints:

- ``POST /invocations``: score; the body is MLflow's ``{"predictions": ...}``; headers
  ``X-Model-Version``, ``X-Model-Role``, ``X-Request-Id`` (and ``X-Guardrail-Flags``) say who
  answered. Bad requests get 400 with a one-line ``message`` and never reach the model; 503 when
  no version can answer. ``X-Entity-Key`` (one key per row, comma-separated) is logged as the
  rows' ``entity_key``; its first key keeps the request on one side of a canary rollout, on every
  replica. ``X-Model-Role`` is ``champion``, ``canary``, ``fallback`` or ``previous``.
- ``GET /ping`` (200 when a version can answer, else 503), ``GET /health`` (JSON: champion,
  fallback, rollout, last swap, prediction log), ``GET /version``, ``GET /metrics`` (Prometheus).
- ``POST /refresh``: check the registry now (point an MLflow webhook on alias changes here; the
  body is ignored, so the endpoint cannot be used to inject anything).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

# FastAPI reads the handlers' annotations from this module's globals: import at module level
# (the package imports this module lazily, so ``import mlflow_plugin.serving`` stays light).
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

from mlflow_plugin._internal.asgi import BodyLimit, mb_to_bytes
from mlflow_plugin.errors import BadInput, ModelUnavailable
from mlflow_plugin.serving._batching import Batcher
from mlflow_plugin.serving._config import ServeConfig
from mlflow_plugin.serving._metrics import ServingMetrics
from mlflow_plugin.serving._protocol import (
    JSON,
    Refused,
    Reply,
    attach_keys,
    batchable,
    encode,
    error_reply,
    invoke,
    parse,
)

if TYPE_CHECKING:
    from mlflow_plugin.serving._loader import ChampionModel

__all__ = ["create_app", "router"]

# An app built in-process answers each request with its own ``predict`` unless asked to batch;
# ``serve`` batches by default.
_IN_PROCESS = ServeConfig(max_batch_wait_ms=0.0)

router = APIRouter()


def create_app(
    model: ChampionModel,
    config: ServeConfig | None = None,
    *,
    metrics: ServingMetrics | None = None,
    close_model: bool = True,
    **options: Any,
) -> FastAPI:
    """A FastAPI app serving ``model``.

    Args:
        model: what answers.
        config: the server's settings (``max_body_mb``, ``request_timeout``, ``max_batch_rows``,
            ``max_batch_wait_ms``, ``docs``); default :class:`ServeConfig`'s, with adaptive
            batching off (each request is its own ``predict`` call).
        metrics: the server's metrics (default a new :class:`ServingMetrics`).
        close_model: close ``model`` (flush the prediction log) when the server shuts down.
        **options: :class:`ServeConfig` fields that replace ``config``'s
            (``create_app(model, max_body_mb=1)``).

    Raises:
        ConfigError: ``max_body_mb`` or ``request_timeout`` is not > 0.
    """
    config = dataclasses.replace(config or _IN_PROCESS, **options)
    batcher = (
        Batcher(model, max_rows=config.max_batch_rows, max_wait_ms=config.max_batch_wait_ms)
        if config.max_batch_wait_ms > 0
        else None
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if batcher is not None:
            await batcher.close()
        if close_model:
            await asyncio.to_thread(model.close)

    app = FastAPI(
        title=f"mlflow-plugin serve {model.name}",
        lifespan=lifespan,
        docs_url="/docs" if config.docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if config.docs else None,
    )
    app.add_middleware(BodyLimit, max_bytes=mb_to_bytes(config.max_body_mb))
    app.state.model = model
    app.state.metrics = metrics or ServingMetrics(model)
    app.state.batcher = batcher
    app.state.config = config
    app.add_exception_handler(BadInput, bad_input)
    app.add_exception_handler(ModelUnavailable, unavailable)
    app.add_exception_handler(Refused, refused)
    app.include_router(router)
    return app


# -- endpoints -----------------------------------------------------------------------------
# MLflow's scoring request, for the schema (``/openapi.json``): the handler reads the raw body
# (:mod:`._protocol` parses it as MLflow's scoring server does), so FastAPI cannot infer it.
_ROWS = {"type": "array", "items": {"type": "array"}}
_SCORING_REQUEST = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {
                "schema": {
                    "type": "object",
                    "properties": {
                        "dataframe_split": {
                            "type": "object",
                            "properties": {
                                "columns": {"type": "array", "items": {"type": "string"}},
                                "index": {"type": "array"},
                                "data": _ROWS,
                            },
                        },
                        "dataframe_records": {"type": "array", "items": {"type": "object"}},
                        "instances": {"type": "array"},
                        "inputs": {},
                        "params": {"type": "object"},
                    },
                }
            },
            "text/csv": {"schema": {"type": "string"}},
        },
    },
    "parameters": [
        {"name": "X-Entity-Key", "in": "header", "required": False, "schema": {"type": "string"}},
        {"name": "X-Request-Id", "in": "header", "required": False, "schema": {"type": "string"}},
    ],
}


@router.post("/invocations", openapi_extra=_SCORING_REQUEST)
async def invocations(request: Request) -> Response:
    """Score a request (see :mod:`._protocol`); refusals go to the exception handlers."""
    request.state.t0 = time.perf_counter()
    # A caller's id is kept (it joins our log to theirs), within the log's column width.
    request.state.request_id = (request.headers.get("x-request-id") or "")[:64] or uuid.uuid4().hex
    timeout = request.app.state.config.request_timeout
    try:
        reply = await asyncio.wait_for(_answer(request), timeout)
    except TimeoutError:
        raise Refused(
            503, "TEMPORARILY_UNAVAILABLE", f"request timed out after {timeout:g}s", "timeout"
        ) from None
    return _respond(request, reply)


@router.get("/ping")
async def ping(request: Request) -> Response:
    ready = request.app.state.model.version is not None
    return Response("\n", status_code=200 if ready else 503, media_type=JSON)


@router.get("/health")
async def health(request: Request) -> Response:
    state = request.app.state.model.status()
    return _json(state, 503 if state["status"] == "unavailable" else 200)


@router.get("/version")
async def version(request: Request) -> Response:
    from mlflow.version import VERSION as MLFLOW_VERSION

    from mlflow_plugin import __version__

    model = request.app.state.model
    return _json(
        {
            "model": model.name,
            "version": model.version,
            "mlflow": MLFLOW_VERSION,
            "mlflow_plugin": __version__,
        }
    )


@router.get("/metrics")
async def metrics_endpoint(request: Request) -> Response:
    text, content_type = request.app.state.metrics.render()
    return Response(text, media_type=content_type)


@router.post("/refresh", status_code=202)
async def refresh(request: Request) -> Response:
    request.app.state.model.trigger()
    return _json({"status": "scheduled"}, 202)


# -- exception handlers: a refused request's reply ----------------------------------------
async def bad_input(request: Request, exc: Exception) -> Response:
    """400: the request cannot be parsed, or the input guardrails or the model refuse it."""
    return _refuse(request, 400, "BAD_REQUEST", str(exc), "bad_request")


async def unavailable(request: Request, exc: Exception) -> Response:
    """503: no version can answer."""
    return _refuse(request, 503, "TEMPORARILY_UNAVAILABLE", str(exc), "unavailable")


async def refused(request: Request, exc: Exception) -> Response:
    """The status a :class:`Refused` names (an unreadable body's 400, 415, 500, a timeout's 503)."""
    assert isinstance(exc, Refused)
    return _refuse(request, exc.status, exc.code, exc.message, exc.reason)


# -- helpers -------------------------------------------------------------------------------
async def _answer(request: Request) -> Reply:
    """Parse, score (alone, or batched with concurrent requests) and encode one request."""
    model: ChampionModel = request.app.state.model
    batcher: Batcher | None = request.app.state.batcher
    request_id: str = request.state.request_id
    body = await request.body()
    content_type = request.headers.get("content-type")
    # X-Entity-Key: one key per input row, comma-separated (joins outcomes to predictions).
    header = request.headers.get("x-entity-key")
    keys = tuple(k.strip() for k in header.split(",")) if header else None
    if batcher is None:
        return await asyncio.to_thread(invoke, model, body, content_type, request_id, keys)
    t0 = time.perf_counter()
    parsed = await asyncio.to_thread(parse, model, body, content_type)
    attach_keys(parsed.data, keys)
    if parsed.params or not batchable(parsed.data):
        prediction = await asyncio.to_thread(
            model.score,
            parsed.data,
            parsed.params,
            request_id=request_id,
            input_flags=parsed.flags,
        )
    else:
        prediction = await batcher.submit(parsed.data, request_id, t0, parsed.flags)
    return encode(prediction, parsed.unified, request_id)


def _refuse(request: Request, status: int, code: str, message: str, reason: str) -> Response:
    return _respond(request, error_reply(status, code, message, reason, request.state.request_id))


def _respond(request: Request, reply: Reply) -> Response:
    """The reply as a response, counted in the metrics (status, latency, reason)."""
    elapsed = time.perf_counter() - request.state.t0
    request.app.state.metrics.observe(reply.status, elapsed, reply.reason)
    return Response(
        reply.body, status_code=reply.status, media_type=reply.media_type, headers=reply.headers
    )


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status_code=status, media_type=JSON)
