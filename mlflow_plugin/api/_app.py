"""The REST API's application: per-request callers, path checks and one JSON error shape.

Every route lives under ``/api/model-deployment/organizations/{organizationId}/``; the
organisation is an MLflow workspace. The caller's HTTP Basic credentials are forwarded to the
tracking server on every request this API makes for them (a :class:`Scope` per request), so
MLflow's permission check is the one that counts: its 401/403 become ours, its 404 too.
Errors are ``{"error": {"code": ..., "message": ...}}``. See docs/ARCHITECTURE.md
("Organisations").
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlflow_plugin._internal.asgi import DEFAULT_MAX_BODY_MB, BodyLimit, mb_to_bytes
from mlflow_plugin.api._archives import ArchiveLocations
from mlflow_plugin.api._caller import Conflict
from mlflow_plugin.errors import (
    BadInput,
    GateFailed,
    IntegrityError,
    MlflowPluginError,
    NotFound,
    PermissionDenied,
    PromotionConflict,
    RegistryError,
    RegistryUnavailable,
)

if TYPE_CHECKING:
    pass

__all__ = ["PREFIX", "create_app", "error_body"]

PREFIX = "/api/model-deployment/organizations/{organizationId}"

# Most specific first: PermissionDenied and NotFound are BadInput too.
_ERRORS: tuple[tuple[type[Exception], int, str], ...] = (
    (PermissionDenied, 403, "permission_denied"),
    (NotFound, 404, "not_found"),
    (BadInput, 400, "bad_input"),
    (GateFailed, 409, "gate_failed"),
    (IntegrityError, 409, "integrity_failed"),
    (PromotionConflict, 409, "conflict"),
    (RegistryUnavailable, 503, "tracking_server_unavailable"),
    (RegistryError, 502, "tracking_server_error"),
)
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
}


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _error(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Basic realm="mlflow"'} if status == 401 else None
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def create_app(
    tracking_uri: str,
    *,
    max_body_mb: float = DEFAULT_MAX_BODY_MB,
    docs: bool = True,
    archives: ArchiveLocations | None = None,
) -> FastAPI:
    """The REST API for the tracking server at ``tracking_uri``.

    Args:
        tracking_uri: an ``http(s)`` MLflow server (with ``--enable-workspaces``; with
            ``--app-name basic-auth`` for permissions).
        max_body_mb: larger request bodies get 413, enforced while reading.
        docs: serve ``/docs`` and ``/openapi.json``.
        archives: where retention archives each organisation's versions (default: nowhere,
            so retention through the API cannot delete).
    """
    from mlflow_plugin import __version__
    from mlflow_plugin.api._routes import router
    from mlflow_plugin.mlflow_io._client import check_tracking_uri

    check_tracking_uri(tracking_uri)
    app = FastAPI(
        title="mlflow-plugin model deployment API",
        version=__version__,
        description=(
            "Organisations are MLflow workspaces. Send your MLflow username and password "
            "(HTTP Basic); MLflow decides what you may do."
        ),
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.tracking_uri = tracking_uri.rstrip("/")
    app.state.archives = archives if archives is not None else ArchiveLocations()

    def too_large(limit: int) -> bytes:
        body = error_body("request_too_large", f"request body larger than {limit} bytes")
        return json.dumps(body).encode()

    app.add_middleware(BodyLimit, max_bytes=mb_to_bytes(max_body_mb), payload=too_large)

    @app.exception_handler(MlflowPluginError)
    async def plugin_error(_: Request, exc: MlflowPluginError) -> JSONResponse:
        if isinstance(exc, Conflict):
            return _error(409, "conflict", exc.message)
        if isinstance(exc, PermissionDenied) and exc.unauthenticated:
            return _error(401, "unauthenticated", exc.message)
        for kind, status, code in _ERRORS:
            if isinstance(exc, kind):
                return _error(status, code, exc.message)
        return _error(500, "internal_error", exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors()[:5]:
            if err.get("type") == "json_invalid":
                problems.append(
                    f"the request body is not valid JSON ({err.get('ctx', {}).get('error', '')})"
                )
                continue
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return _error(400, "bad_request", "; ".join(problems) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        from mlflow_plugin.mlflow_io._client import as_plugin_error

        ours = as_plugin_error(exc, "tracking server call", tracking_uri)
        if isinstance(ours, MlflowPluginError):
            return await plugin_error(_, ours)
        return _error(500, "internal_error", f"{type(exc).__name__} (see the server log)")

    app.include_router(router, prefix=PREFIX)
    return app
