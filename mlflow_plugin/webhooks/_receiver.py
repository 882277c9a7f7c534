"""Receive MLflow's registry webhooks and reconcile the models they name.

A person who moves ``champion`` in the registry UI changes what serves without the controller
knowing. ``mlflow-plugin reconcile`` notices on its next run; this receiver notices at once:
MLflow 3's registry webhooks post ``model_version_alias.created``,
``model_version_alias.deleted`` and ``model_version_tag.set`` to ``POST /webhook``, and the
receiver runs :meth:`mlflow_plugin.controller.Controller.reconcile` for the model they name.

- Every delivery is authenticated: ``X-MLflow-Signature`` is ``v1,<base64 HMAC-SHA256>`` of
  ``"{delivery_id}.{timestamp}.{body}"`` with the webhook's secret (compared in constant time),
  and ``X-MLflow-Timestamp`` must be within five minutes of now; a delivery id seen in that
  window is acknowledged and not acted on again. Failures get 401 with a one-line reason,
  bodies that are not a webhook payload 400.
- Reconciles run in background threads, so MLflow gets its answer (202) at once. A burst of
  deliveries for one model coalesces into one run (plus one more if the burst arrived while a
  run was already reading the registry). Reconcile takes the model's promotion lock, so it is
  safe next to promotions; the controller's own alias writes trigger runs that find nothing to do.
- Registered models named ``mlflow_plugin.lock.*`` (the promotion locks) are ignored.
- MLflow has no webhook for stage transitions: ``mlflow-plugin reconcile`` still covers those.

``GET /health`` reports the queue, ``GET /recent`` what the last runs recorded.
:func:`register_webhook` creates (or updates) the webhook on the tracking server.

A delivery's signature, freshness and payload are checked by :mod:`mlflow_plugin.webhooks._delivery`;
the reconcile workers are :mod:`mlflow_plugin.webhooks._reconcile_queue`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import click

# FastAPI reads the handlers' annotations from this module's globals: import at module level
# (the CLI imports this module only for `webhook-receiver`).
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from mlflow_plugin._internal.asgi import BodyLimit, max_body_option, mb_to_bytes
from mlflow_plugin.errors import BadInput, redact
from mlflow_plugin.registry._adapter import LOCK_PREFIX
from mlflow_plugin.settings import WEBHOOK_SECRET_ENV, webhook_secret
from mlflow_plugin.types import Event
from mlflow_plugin.webhooks._delivery import (
    DELIVERY_ID_HEADER,
    EVENTS,
    MAX_AGE_SECONDS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    _SeenDeliveries,
    parse_payload,
    sign,
    verify_signature,
)
from mlflow_plugin.webhooks._reconcile_queue import Reconciled, ReconcileQueue

__all__ = [
    "DELIVERY_ID_HEADER",
    "EVENTS",
    "MAX_AGE_SECONDS",
    "ReconcileQueue",
    "Reconciled",
    "SECRET_ENV",
    "SIGNATURE_HEADER",
    "SignatureError",
    "TIMESTAMP_HEADER",
    "create_app",
    "parse_payload",
    "register_webhook",
    "router",
    "sign",
    "verify_signature",
    "webhook_receiver",
]

_log = logging.getLogger(__name__)

SECRET_ENV = WEBHOOK_SECRET_ENV
WEBHOOK_NAME = "mlflow-plugin-reconcile"
# MLflow's registry payloads are a few hundred bytes: 64 KiB is plenty.
DEFAULT_MAX_BODY_MB = 0.0625


def create_app(
    secret: str,
    reconcile: Callable[[str], list[Event]],
    *,
    max_age: float = MAX_AGE_SECONDS,
    threads: int = 2,
    max_body_mb: float = DEFAULT_MAX_BODY_MB,
) -> FastAPI:
    """The receiver as a FastAPI app; the reconcile workers live as long as the app runs.

    The endpoints are the top-level functions of :data:`router`; they read the secret, the
    replay window and the queue from ``request.app.state``. A delivery that is not authentic
    raises :class:`SignatureError` (401), one that is not a webhook payload :class:`BadInput`
    (400); the exception handlers answer them.

    Args:
        secret: the webhook's shared secret.
        reconcile: called with a model name in a background thread.
        max_age: replay window in seconds for ``X-MLflow-Timestamp``.
        threads: reconcile worker threads.
        max_body_mb: larger bodies get 413, enforced while reading (chunked too), without
            buffering the rest.

    Raises:
        BadInput: the secret is empty.
    """
    if not secret:
        raise BadInput("the webhook secret is empty")
    queue = ReconcileQueue(reconcile, threads=threads)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        queue.start()
        yield
        await asyncio.to_thread(queue.close)

    app = FastAPI(
        title="mlflow-plugin webhook receiver",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(BodyLimit, max_bytes=mb_to_bytes(max_body_mb))
    app.state.queue = queue
    app.state.secret = secret
    app.state.max_age = max_age
    # Twice the window: a timestamp may also lie up to max_age in the future.
    app.state.seen = _SeenDeliveries(2 * max_age)
    app.add_exception_handler(SignatureError, not_authentic)
    app.add_exception_handler(BadInput, not_a_delivery)
    app.include_router(router)
    return app


router = APIRouter()

# The delivery as MLflow sends it, for the schema (``app.openapi()``; the receiver serves no
# docs): the handler reads the raw body, whose bytes the signature covers.
_DELIVERY = {
    "parameters": [
        {"name": name, "in": "header", "required": True, "schema": {"type": "string"}}
        for name in (SIGNATURE_HEADER, TIMESTAMP_HEADER, DELIVERY_ID_HEADER)
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["entity", "action", "data"],
                    "properties": {
                        "entity": {"type": "string"},
                        "action": {"type": "string"},
                        "timestamp": {"type": "string"},
                        "data": {"type": "object"},
                    },
                }
            }
        },
    },
}


@router.post("/webhook", openapi_extra=_DELIVERY)
async def webhook(request: Request) -> JSONResponse:
    """Check a delivery, then queue a reconcile of the model it names (202)."""
    state = request.app.state
    body = await request.body()  # BodyLimit answers 413 while reading an oversized one
    headers = request.headers
    verify_signature(
        state.secret,
        body,
        signature=headers.get(SIGNATURE_HEADER),
        timestamp=headers.get(TIMESTAMP_HEADER),
        delivery_id=headers.get(DELIVERY_ID_HEADER),
        max_age=state.max_age,
    )
    event, model = parse_payload(body)
    if model is None:
        return _reply(200, ignored=event)
    if model.startswith(LOCK_PREFIX):
        return _reply(200, ignored=event, model=model, reason="promotion lock model")
    delivery_id = headers[DELIVERY_ID_HEADER]
    if not state.seen.first_time(delivery_id):
        return _reply(200, duplicate=delivery_id, model=model)
    try:
        queued = state.queue.submit(model)
    except RuntimeError:
        return _reply(503, error="shutting down")
    return _reply(202, event=event, model=model, coalesced=not queued)


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    return _reply(200, status="ok", **request.app.state.queue.snapshot())


@router.get("/recent")
async def recent(request: Request) -> JSONResponse:
    return _reply(200, runs=request.app.state.queue.recent_runs())


async def not_authentic(request: Request, exc: Exception) -> JSONResponse:
    """401: the signature or the timestamp does not check out."""
    _log.warning("webhook rejected: %s", exc)
    return _reply(401, error=str(exc))


async def not_a_delivery(request: Request, exc: Exception) -> JSONResponse:
    """400: the body is not a webhook payload."""
    return _reply(400, error=str(exc))


def _reply(code: int, /, **payload: Any) -> JSONResponse:
    return JSONResponse(payload, status_code=code)


def register_webhook(
    tracking_uri: str | None, url: str, secret: str, *, name: str = WEBHOOK_NAME
) -> str:
    """Create the webhook on the tracking server (or update the one with this name); its id.

    The server needs a SQL backend store. It signs deliveries with ``secret`` and stores it
    encrypted with ``MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY``; without that variable each server
    process makes up its own key, so deliveries fail after a restart or with several workers.

    Raises:
        BadInput: MLflow refused the URL (e.g. a loopback URL without
            ``MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true`` on the server) or the secret is empty.
        RegistryError: the server refused otherwise (e.g. a file backend store).
    """
    from mlflow_plugin.mlflow_io._client import wrap_mlflow_errors
    from mlflow_plugin.registry._adapter import Registry

    if not secret:
        raise BadInput("the webhook secret is empty")
    registry = Registry(tracking_uri)
    client = registry.client
    events: list[Any] = list(EVENTS)  # MLflow types them as a Literal of every event name
    with wrap_mlflow_errors(f"register webhook {url}", registry.uri):
        existing, token = None, None
        while existing is None:
            page = client.list_webhooks(max_results=100, page_token=token)
            existing = next((w for w in page if w.name == name), None)
            token = page.token
            if not token:
                break
        if existing is not None:
            hook = client.update_webhook(
                existing.webhook_id, url=url, events=events, secret=secret, status="ACTIVE"
            )
        else:
            hook = client.create_webhook(
                name=name,
                url=url,
                events=events,
                secret=secret,
                description="mlflow-plugin: reconcile models changed outside the controller",
            )
    return str(hook.webhook_id)


@click.command("webhook-receiver")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5002, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--secret-env",
    default=SECRET_ENV,
    show_default=True,
    help="Environment variable that holds the shared secret (never a CLI argument).",
)
@max_body_option(DEFAULT_MAX_BODY_MB)
@click.option(
    "--register",
    "register_url",
    default=None,
    metavar="URL",
    help="First create/update the webhook on the tracking server, delivering to URL "
    "(this receiver's /webhook as the server reaches it).",
)
@click.pass_context
def webhook_receiver(
    ctx: click.Context,
    host: str,
    port: int,
    secret_env: str,
    max_body_mb: float,
    register_url: str | None,
) -> None:
    """Reconcile models when MLflow's registry webhooks say an alias or tag changed.

    POST /webhook takes MLflow's model_version_alias.created/deleted and model_version_tag.set
    deliveries (HMAC-verified); GET /health, GET /recent.
    """
    import uvicorn

    from mlflow_plugin.controller import Controller

    secret = webhook_secret(secret_env)
    if not secret.strip():
        raise BadInput(
            f"no webhook secret: set ${secret_env} (it is never taken on the command line)"
        )
    tracking_uri = getattr(ctx.obj, "tracking_uri", None)
    controller = Controller.from_uri(tracking_uri)
    uri = controller.registry.uri
    if register_url:
        hook_id = register_webhook(uri, register_url, secret)
        click.echo(
            f"webhook {WEBHOOK_NAME} ({hook_id}) on {uri} delivers to {register_url}", err=True
        )
    if not _log.handlers:  # say what each reconcile recorded, as the `reconcile` command does
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        _log.addHandler(handler)
        _log.setLevel(logging.INFO)
    click.echo(
        f"receiving MLflow webhooks on http://{host}:{port}/webhook; reconciling on {redact(uri)}",
        err=True,
    )
    app = create_app(secret, controller.reconcile, max_body_mb=max_body_mb)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
