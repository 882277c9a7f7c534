"""The HTTP server: MLflow's scoring protocol in front of a :class:`ChampionModel`.

Built on FastAPI and uvicorn, which MLflow's own scoring server uses, and on that server's request
parsing (``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs``, CSV, Parquet) and
response encoding, so clients of ``mlflow models serve`` work unchanged. Endpoints:

- ``POST /invocations``: score; the body is MLflow's ``{"predictions": ...}``; headers
  ``X-Model-Version``, ``X-Model-Role``, ``X-Request-Id`` (and ``X-Guardrail-Flags``) say who
  answered. Bad requests get 400 with a one-line ``message`` and never reach the model; 503 when
  no version can answer.
- ``GET /ping`` (200 when a version can answer, else 503), ``GET /health`` (JSON: champion,
  fallback, last swap, prediction log), ``GET /version``, ``GET /metrics`` (Prometheus).
- ``POST /refresh``: check the registry now (point an MLflow webhook on alias changes here; the
  body is ignored, so the endpoint cannot be used to inject anything).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

# FastAPI reads the handlers' annotations from this module's globals: import at module level
# (the package imports this module lazily, so ``import mlflow_plugin.serving`` stays light).
from fastapi import FastAPI, Request
from fastapi.responses import Response

from mlflow_plugin._errors import BadInput, ModelUnavailable
from mlflow_plugin.serving._metrics import ServingMetrics

if TYPE_CHECKING:
    from mlflow_plugin.serving._loader import ChampionModel

__all__ = ["create_app"]

_JSON = "application/json"


class _Reply:
    __slots__ = ("body", "headers", "media_type", "reason", "status")

    def __init__(self, status: int, body: str, media_type: str = _JSON,
                 headers: dict[str, str] | None = None, reason: str | None = None) -> None:  # fmt: skip
        self.status = status
        self.body = body
        self.media_type = media_type
        self.headers = headers or {}
        self.reason = reason


def _error(status: int, code: str, message: str, reason: str, request_id: str) -> _Reply:
    line = " ".join(message.split("\n", 1)[0].split())
    line = line if len(line) <= 400 else line[:397] + "..."
    body = json.dumps({"error_code": code, "message": line})
    return _Reply(status, body, headers={"X-Request-Id": request_id}, reason=reason)


def _invoke(model: ChampionModel, body: bytes, content_type: str | None, request_id: str) -> _Reply:
    """Parse, score and encode one request (runs on a worker thread, like MLflow's)."""
    from mlflow.pyfunc import scoring_server as ss

    mime, _, rest = (content_type or ss.CONTENT_TYPE_JSON).partition(";")
    mime = mime.strip().lower()
    charset = rest.strip().lower().removeprefix("charset=").strip() if rest else "utf-8"
    if charset not in ("utf-8", "utf8"):
        return _error(415, "BAD_REQUEST", "only UTF-8 bodies are supported", "unsupported_media_type", request_id)
    metadata = model.metadata
    schema = metadata.get_input_schema() if metadata is not None else None
    unified = False
    params = None
    try:
        if mime == ss.CONTENT_TYPE_JSON:
            parsed = ss._parse_json_data(body, metadata, schema)
            data, params, unified = parsed.data, parsed.params, parsed.is_unified_llm_input
        elif mime == ss.CONTENT_TYPE_CSV:
            data = ss.parse_csv_input(io.StringIO(body.decode("utf-8")), schema=schema)  # type: ignore[arg-type]
        elif mime == ss.CONTENT_TYPE_PARQUET:
            data = ss.parse_parquet_input(io.BytesIO(body))
        else:
            return _error(415, "BAD_REQUEST", f"unsupported content type {mime!r}; use one of "
                          f"{', '.join(ss.CONTENT_TYPES)}", "unsupported_media_type", request_id)  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - whatever the parser raises, the request is bad
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        return _error(400, "BAD_REQUEST", f"bad request: {message}", "bad_request", request_id)
    try:
        prediction = model.score(data, params, request_id=request_id)
    except BadInput as exc:
        return _error(400, "BAD_REQUEST", str(exc), "bad_request", request_id)
    except ModelUnavailable as exc:
        return _error(503, "TEMPORARILY_UNAVAILABLE", str(exc), "unavailable", request_id)
    out = io.StringIO()
    try:
        if unified:
            ss.unwrapped_predictions_to_json(prediction.output, out)
        else:
            ss.predictions_to_json(prediction.output, out)
    except Exception as exc:  # noqa: BLE001
        return _error(500, "INTERNAL_ERROR", f"output could not be encoded: {exc}", "internal", request_id)
    headers = {
        "X-Model-Version": prediction.version,
        "X-Model-Role": prediction.role,
        "X-Request-Id": request_id,
    }
    if prediction.flags:
        headers["X-Guardrail-Flags"] = ",".join(prediction.flags)
    return _Reply(200, out.getvalue(), headers=headers)


def create_app(
    model: ChampionModel, *, metrics: ServingMetrics | None = None, close_model: bool = True
) -> FastAPI:
    """A FastAPI app serving ``model``.

    Args:
        model: what answers.
        metrics: the server's metrics (default a new :class:`ServingMetrics`).
        close_model: close ``model`` (flush the prediction log) when the server shuts down.
    """
    from mlflow.version import VERSION as MLFLOW_VERSION

    from mlflow_plugin import __version__

    meter = metrics or ServingMetrics(model)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if close_model:
            await asyncio.to_thread(model.close)

    app = FastAPI(title=f"mlflow-plugin serve {model.name}", lifespan=lifespan)
    app.state.model = model
    app.state.metrics = meter

    def _json(payload: Any, status: int = 200) -> Response:
        return Response(json.dumps(payload), status_code=status, media_type=_JSON)

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        t0 = time.perf_counter()
        body = await request.body()
        # A caller's id is kept (it joins our log to theirs), within the log's column width.
        request_id = (request.headers.get("x-request-id") or "")[:64] or uuid.uuid4().hex
        reply = await asyncio.to_thread(
            _invoke, model, body, request.headers.get("content-type"), request_id
        )
        meter.observe(reply.status, time.perf_counter() - t0, reply.reason)
        return Response(reply.body, status_code=reply.status, media_type=reply.media_type,
                        headers=reply.headers)  # fmt: skip

    @app.get("/ping")
    async def ping() -> Response:
        ready = model.version is not None
        return Response("\n", status_code=200 if ready else 503, media_type=_JSON)

    @app.get("/health")
    async def health() -> Response:
        state = model.status()
        return _json(state, 503 if state["status"] == "unavailable" else 200)

    @app.get("/version")
    async def version() -> Response:
        return _json({
            "model": model.name, "version": model.version, "mlflow": MLFLOW_VERSION,
            "mlflow_plugin": __version__,
        })  # fmt: skip

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        text, content_type = meter.render()
        return Response(text, media_type=content_type)

    @app.post("/refresh", status_code=202)
    async def refresh() -> Response:
        model.trigger()
        return _json({"status": "scheduled"}, 202)

    return app
