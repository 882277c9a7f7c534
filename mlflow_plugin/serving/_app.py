"""The HTTP server: MLflow's scoring protocol in front of a :class:`ChampionModel`.

Built on FastAPI and uvicorn, which MLflow's own scoring server uses, and on that server's request
parsing (``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs``, CSV, Parquet) and
response encoding, so clients of ``mlflow models serve`` work unchanged. Endpoints:

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
import io
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# FastAPI reads the handlers' annotations from this module's globals: import at module level
# (the package imports this module lazily, so ``import mlflow_plugin.serving`` stays light).
from fastapi import FastAPI, Request
from fastapi.responses import Response

from mlflow_plugin._internal.asgi import BodyLimit, mb_to_bytes
from mlflow_plugin.errors import BadInput, ModelUnavailable
from mlflow_plugin.serving._batching import Batcher
from mlflow_plugin.serving._config import ServeConfig
from mlflow_plugin.serving._metrics import ServingMetrics

if TYPE_CHECKING:
    from mlflow_plugin.serving._loader import ChampionModel, Prediction

__all__ = ["create_app"]

_JSON = "application/json"
# An app built in-process answers each request with its own ``predict`` unless asked to batch;
# ``serve`` batches by default.
_IN_PROCESS = ServeConfig(max_batch_wait_ms=0.0)


class _Reply:
    __slots__ = ("body", "headers", "media_type", "reason", "status")

    def __init__(
        self,
        status: int,
        body: str,
        media_type: str = _JSON,
        headers: dict[str, str] | None = None,
        reason: str | None = None,
    ) -> None:
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


@dataclass
class _Parsed:
    data: Any
    params: Any
    unified: bool
    flags: tuple[str, ...]


def _parse(
    model: ChampionModel, body: bytes, content_type: str | None, request_id: str
) -> _Parsed | _Reply:
    """Parse a request and apply the input guardrails to the raw values.

    The guardrails look at the values as sent, before MLflow's schema cast (which would turn
    ``null`` into a conversion error without a row, and ``1e308`` in a ``long`` column into
    ``-9223372036854775808``); the cast follows when they pass.
    """
    from mlflow.pyfunc import scoring_server as ss

    mime, _, rest = (content_type or ss.CONTENT_TYPE_JSON).partition(";")
    mime = mime.strip().lower()
    charset = rest.strip().lower().removeprefix("charset=").strip() if rest else "utf-8"
    if charset not in ("utf-8", "utf8"):
        return _error(
            415,
            "BAD_REQUEST",
            "only UTF-8 bodies are supported",
            "unsupported_media_type",
            request_id,
        )
    metadata = model.metadata
    schema = metadata.get_input_schema() if metadata is not None else None
    unified = False
    params = None
    guarded = model.input_guard.mode != "off"
    raw_schema = None if guarded else schema
    try:
        if mime == ss.CONTENT_TYPE_JSON:
            parsed = ss._parse_json_data(body, metadata, raw_schema)
            data, params, unified = parsed.data, parsed.params, parsed.is_unified_llm_input
        elif mime == ss.CONTENT_TYPE_CSV:
            data = ss.parse_csv_input(io.StringIO(body.decode("utf-8")), schema=raw_schema)  # type: ignore[arg-type]
        elif mime == ss.CONTENT_TYPE_PARQUET:
            data = ss.parse_parquet_input(io.BytesIO(body))
        else:
            return _error(
                415,
                "BAD_REQUEST",
                f"unsupported content type {mime!r}; use one of {', '.join(ss.CONTENT_TYPES)}",
                "unsupported_media_type",
                request_id,
            )
        flags: tuple[str, ...] = ()
        if guarded:
            flags = model.check_input(data)
            if schema is not None:
                data = _cast(ss, body, mime, metadata, schema, data)
    except BadInput as exc:
        return _error(400, "BAD_REQUEST", str(exc), "bad_request", request_id)
    except Exception as exc:  # noqa: BLE001 - whatever the parser raises, the request is bad
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        return _error(400, "BAD_REQUEST", f"bad request: {message}", "bad_request", request_id)
    return _Parsed(data, params, unified, flags)


def _cast(ss: Any, body: bytes, mime: str, metadata: Any, schema: Any, data: Any) -> Any:
    """Apply the signature's types to checked raw data, as MLflow's parser would have."""
    import pandas as pd
    from mlflow.utils.proto_json_utils import cast_df_types_according_to_schema

    if isinstance(data, pd.DataFrame) and mime != ss.CONTENT_TYPE_PARQUET:
        fast = _numeric_cast(data, schema)
        if fast is not None:
            return fast
        if schema.is_tensor_spec() or not schema.has_input_names():
            return (
                ss._parse_json_data(body, metadata, schema).data
                if mime == ss.CONTENT_TYPE_JSON
                else data
            )
        return cast_df_types_according_to_schema(data, schema)
    if mime == ss.CONTENT_TYPE_JSON:
        return ss._parse_json_data(body, metadata, schema).data
    return data


_NUMPY_TYPES = {"long": "int64", "integer": "int32", "double": "float64", "float": "float32"}


def _numeric_cast(data: Any, schema: Any) -> Any:
    """MLflow's cast for the common case, minus its per-call overhead: every input is a number
    column (already checked finite by the input guardrails). None when it does not apply."""
    if schema.is_tensor_spec() or not schema.has_input_names():
        return None
    try:
        types = {name: str(getattr(t, "name", t)) for name, t in schema.input_types_dict().items()}
    except Exception:  # noqa: BLE001 - anything unusual: MLflow's own cast
        return None
    if not all(t in _NUMPY_TYPES for t in types.values()):
        return None
    wanted = {
        name: _NUMPY_TYPES[kind]
        for name, kind in types.items()
        if name in data.columns and data[name].dtype != _NUMPY_TYPES[kind]
    }
    if not wanted:
        return data
    try:
        return data.astype(wanted)
    except (TypeError, ValueError):
        return None


def _invoke(
    model: ChampionModel,
    body: bytes,
    content_type: str | None,
    request_id: str,
    entity_keys: tuple[str, ...] | None = None,
) -> _Reply:
    """Parse, score and encode one request (runs on a worker thread, like MLflow's)."""
    parsed = _parse(model, body, content_type, request_id)
    if isinstance(parsed, _Reply):
        return parsed
    _attach_keys(parsed.data, entity_keys)
    try:
        prediction = model.score(
            parsed.data, parsed.params, request_id=request_id, input_flags=parsed.flags
        )
    except BadInput as exc:
        return _error(400, "BAD_REQUEST", str(exc), "bad_request", request_id)
    except ModelUnavailable as exc:
        return _error(503, "TEMPORARILY_UNAVAILABLE", str(exc), "unavailable", request_id)
    return _encode(prediction, parsed.unified, request_id)


def _encode(prediction: Prediction, unified: bool, request_id: str) -> _Reply:
    from mlflow.pyfunc import scoring_server as ss

    fast = _fast_json(prediction.output) if not unified else None
    if fast is not None:
        return _Reply(200, fast, headers=_headers(prediction, request_id))
    out = io.StringIO()
    try:
        if unified:
            ss.unwrapped_predictions_to_json(prediction.output, out)
        else:
            ss.predictions_to_json(prediction.output, out)
    except Exception as exc:  # noqa: BLE001
        return _error(
            500, "INTERNAL_ERROR", f"output could not be encoded: {exc}", "internal", request_id
        )
    return _Reply(200, out.getvalue(), headers=_headers(prediction, request_id))


def _headers(prediction: Prediction, request_id: str) -> dict[str, str]:
    headers = {
        "X-Model-Version": prediction.version,
        "X-Model-Role": prediction.role,
        "X-Request-Id": request_id,
    }
    if prediction.flags:
        headers["X-Guardrail-Flags"] = ",".join(prediction.flags)
    return headers


def _fast_json(output: Any) -> str | None:
    """MLflow's ``{"predictions": records}`` for an all-number DataFrame, without its generic
    encoder (the same text: floats and ints print alike; NaN as ``NaN``). None otherwise."""
    import pandas as pd

    if not isinstance(output, pd.DataFrame) or output.columns.dtype.kind != "O":
        return None
    if not all(dt.kind in "fi" for dt in output.dtypes) or not all(
        isinstance(c, str) for c in output.columns
    ):
        return None
    names = list(output.columns)
    rows = [dict(zip(names, row, strict=True)) for row in output.to_numpy(dtype=object).tolist()]
    return json.dumps({"predictions": rows})


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
    from mlflow.version import VERSION as MLFLOW_VERSION

    from mlflow_plugin import __version__

    config = dataclasses.replace(config or _IN_PROCESS, **options)
    max_body_mb = config.max_body_mb
    request_timeout = config.request_timeout
    max_batch_rows = config.max_batch_rows
    max_batch_wait_ms = config.max_batch_wait_ms
    docs = config.docs
    meter = metrics or ServingMetrics(model)
    batcher = (
        Batcher(model, max_rows=max_batch_rows, max_wait_ms=max_batch_wait_ms)
        if max_batch_wait_ms > 0
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
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.add_middleware(BodyLimit, max_bytes=mb_to_bytes(max_body_mb))
    app.state.model = model
    app.state.metrics = meter
    app.state.batcher = batcher

    async def answer(request: Request, request_id: str) -> _Reply:
        body = await request.body()
        content_type = request.headers.get("content-type")
        # X-Entity-Key: one key per input row, comma-separated (joins outcomes to predictions).
        header = request.headers.get("x-entity-key")
        keys = tuple(k.strip() for k in header.split(",")) if header else None
        if batcher is None:
            return await asyncio.to_thread(_invoke, model, body, content_type, request_id, keys)
        t0 = time.perf_counter()
        parsed = await asyncio.to_thread(_parse, model, body, content_type, request_id)
        if isinstance(parsed, _Reply):
            return parsed
        _attach_keys(parsed.data, keys)
        if parsed.params or not _batchable(parsed.data):
            try:
                prediction = await asyncio.to_thread(
                    model.score,
                    parsed.data,
                    parsed.params,
                    request_id=request_id,
                    input_flags=parsed.flags,
                )
            except BadInput as exc:
                return _error(400, "BAD_REQUEST", str(exc), "bad_request", request_id)
            except ModelUnavailable as exc:
                return _error(503, "TEMPORARILY_UNAVAILABLE", str(exc), "unavailable", request_id)
        else:
            try:
                prediction = await batcher.submit(parsed.data, request_id, t0, parsed.flags)
            except BadInput as exc:
                return _error(400, "BAD_REQUEST", str(exc), "bad_request", request_id)
            except ModelUnavailable as exc:
                return _error(503, "TEMPORARILY_UNAVAILABLE", str(exc), "unavailable", request_id)
        return _encode(prediction, parsed.unified, request_id)

    def _json(payload: Any, status: int = 200) -> Response:
        return Response(json.dumps(payload), status_code=status, media_type=_JSON)

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        t0 = time.perf_counter()
        # A caller's id is kept (it joins our log to theirs), within the log's column width.
        request_id = (request.headers.get("x-request-id") or "")[:64] or uuid.uuid4().hex
        try:
            reply = await asyncio.wait_for(answer(request, request_id), request_timeout)
        except TimeoutError:
            reply = _error(
                503,
                "TEMPORARILY_UNAVAILABLE",
                f"request timed out after {request_timeout:g}s",
                "timeout",
                request_id,
            )
        meter.observe(reply.status, time.perf_counter() - t0, reply.reason)
        return Response(
            reply.body, status_code=reply.status, media_type=reply.media_type, headers=reply.headers
        )

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
        return _json(
            {
                "model": model.name,
                "version": model.version,
                "mlflow": MLFLOW_VERSION,
                "mlflow_plugin": __version__,
            }
        )

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        text, content_type = meter.render()
        return Response(text, media_type=content_type)

    @app.post("/refresh", status_code=202)
    async def refresh() -> Response:
        model.trigger()
        return _json({"status": "scheduled"}, 202)

    return app


def _attach_keys(data: Any, keys: tuple[str, ...] | None) -> None:
    """The prediction log reads a request's entity keys from its frame's ``attrs``."""
    from mlflow_plugin.serving._prediction_log import ENTITY_KEYS_ATTR

    if keys and hasattr(data, "attrs"):
        data.attrs[ENTITY_KEYS_ATTR] = keys


def _batchable(data: Any) -> bool:
    import pandas as pd

    return isinstance(data, pd.DataFrame) and len(data) > 0
