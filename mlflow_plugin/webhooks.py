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
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import click

# FastAPI reads the handlers' annotations from this module's globals: import at module level
# (the CLI imports this module only for `webhook-receiver`).
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from mlflow_plugin._errors import BadInput, MlflowPluginError
from mlflow_plugin._http import BodyLimit, max_body_option, mb_to_bytes
from mlflow_plugin._types import Event
from mlflow_plugin.registry import LOCK_PREFIX

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
    "sign",
    "verify_signature",
    "webhook_receiver",
]

_log = logging.getLogger(__name__)

EVENTS = ("model_version_alias.created", "model_version_alias.deleted", "model_version_tag.set")
MAX_AGE_SECONDS = 300.0
SECRET_ENV = "MLFLOW_PLUGIN_WEBHOOK_SECRET"
WEBHOOK_NAME = "mlflow-plugin-reconcile"
# As in mlflow.webhooks.constants (not imported: that would load all of mlflow for three strings).
SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
_SIGNATURE_VERSION = "v1"
# MLflow's registry payloads are a few hundred bytes: 64 KiB is plenty.
DEFAULT_MAX_BODY_MB = 0.0625


class SignatureError(BadInput):
    """A delivery that is not authentic or not fresh; the message is the one-line reason."""


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The ``X-MLflow-Signature`` MLflow sends with ``body``: ``v1,<base64 HMAC-SHA256>``."""
    signed = b".".join((delivery_id.encode(), timestamp.encode(), body))
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return f"{_SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def verify_signature(
    secret: str,
    body: bytes,
    *,
    signature: str | None,
    timestamp: str | None,
    delivery_id: str | None,
    now: float | None = None,
    max_age: float = MAX_AGE_SECONDS,
) -> None:
    """Check that ``body`` was signed with ``secret`` and that its timestamp is fresh.

    Args:
        secret: the secret the webhook was created with.
        body: the raw request body, exactly as received.
        signature: ``X-MLflow-Signature``; several space-separated signatures may be given
            (Standard Webhooks' convention during a secret rotation), any one must match.
        timestamp: ``X-MLflow-Timestamp``, Unix seconds (part of the signed content).
        delivery_id: ``X-MLflow-Delivery-Id`` (part of the signed content).
        now: the current Unix time (default ``time.time()``).
        max_age: how far, in seconds, the timestamp may lie from ``now`` either way.

    Raises:
        SignatureError: a header is missing, no signature matches, or the timestamp is stale.
    """
    if not signature:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    if not timestamp:
        raise SignatureError(f"missing {TIMESTAMP_HEADER} header")
    if not delivery_id:
        raise SignatureError(f"missing {DELIVERY_ID_HEADER} header")
    expected = sign(secret, delivery_id, timestamp, body).encode()
    # Check every candidate (no early exit) so the time taken says nothing about which matched.
    matched = False
    for candidate in signature.split():
        matched |= hmac.compare_digest(expected, candidate.encode())
    if not matched:
        raise SignatureError("signature does not match the shared secret")
    try:
        sent = int(timestamp)
    except ValueError:
        raise SignatureError(f"{TIMESTAMP_HEADER} is not a Unix time") from None
    age = (time.time() if now is None else now) - sent
    if age > max_age:
        raise SignatureError(f"timestamp is {age:.0f}s old (limit {max_age:.0f}s): possible replay")
    if age < -max_age:
        raise SignatureError(f"timestamp is {-age:.0f}s in the future (limit {max_age:.0f}s)")


def parse_payload(body: bytes) -> tuple[str, str | None]:
    """``(event, model)`` from a webhook body; ``model`` is None for events we do not handle.

    Raises:
        BadInput: the body is not JSON, or not an MLflow webhook payload.
    """
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadInput("body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise BadInput("payload must be a JSON object")
    entity, action, data = payload.get("entity"), payload.get("action"), payload.get("data")
    if not isinstance(entity, str) or not isinstance(action, str) or not isinstance(data, dict):
        raise BadInput("payload needs 'entity' and 'action' strings and a 'data' object")
    event = f"{entity}.{action}"
    if event not in EVENTS:
        return event, None
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BadInput(f"{event} payload has no model 'name'")
    return event, name


@dataclass(frozen=True)
class Reconciled:
    """One reconcile run: the events it recorded, or the error that stopped it."""

    model: str
    triggers: int
    events: list[Event] = field(default_factory=list)
    error: str | None = None
    finished_ms: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "triggers": self.triggers,
            "events": [e.as_dict() for e in self.events],
            "error": self.error,
            "finished_ms": self.finished_ms,
        }


class ReconcileQueue:
    """Runs ``reconcile(model)`` in background threads, coalescing bursts per model.

    A model waits in the queue at most once, however many deliveries name it. A model is never
    reconciled by two threads at once; a delivery that arrives while its model is being
    reconciled queues exactly one more run, since the running one may have read the registry
    before the change.

    Args:
        reconcile: what to run, e.g. ``Controller.from_uri(uri).reconcile``.
        threads: worker threads (different models are reconciled in parallel).
        history: how many finished runs :attr:`recent` keeps.
    """

    def __init__(
        self, reconcile: Callable[[str], list[Event]], *, threads: int = 2, history: int = 100
    ) -> None:
        self._reconcile = reconcile
        self._cond = threading.Condition()
        self._pending: dict[str, int] = {}  # model -> deliveries waiting; insertion order = FIFO
        self._running: set[str] = set()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"webhook-reconcile-{i}", daemon=True)
            for i in range(max(1, threads))
        ]
        self.recent: collections.deque[Reconciled] = collections.deque(maxlen=history)
        self.runs = 0
        self.failures = 0

    def start(self) -> ReconcileQueue:
        for thread in self._threads:
            if not thread.is_alive():
                thread.start()
        return self

    def submit(self, model: str) -> bool:
        """Queue a reconcile of ``model``; False when it joined one already waiting.

        Raises:
            RuntimeError: the queue is closed.
        """
        with self._cond:
            if self._closed:
                raise RuntimeError("the reconcile queue is closed")
            if model in self._pending:
                self._pending[model] += 1
                return False
            self._pending[model] = 1
            self._cond.notify()
            return True

    def snapshot(self) -> dict[str, Any]:
        with self._cond:
            return {
                "pending": list(self._pending),
                "running": sorted(self._running),
                "runs": self.runs,
                "failures": self.failures,
            }

    def recent_runs(self) -> list[dict[str, Any]]:
        """The last finished runs, oldest first, JSON-ready."""
        with self._cond:
            return [r.as_dict() for r in self.recent]

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is queued or running; False if ``timeout`` ran out first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._running, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Accept no more work, finish what is queued (up to ``timeout`` seconds), stop."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _next(self) -> tuple[str, int] | None:
        with self._cond:
            while True:
                model = next((m for m in self._pending if m not in self._running), None)
                if model is not None:
                    self._running.add(model)
                    return model, self._pending.pop(model)
                if self._closed and not self._pending:
                    return None
                self._cond.wait()

    def _work(self) -> None:
        while (item := self._next()) is not None:
            model, triggers = item
            events: list[Event] = []
            error = None
            try:
                events = self._reconcile(model)
            except MlflowPluginError as exc:
                error = str(exc)
                _log.warning("reconcile %s failed: %s", model, error)
            except Exception as exc:  # noqa: BLE001 - one bad run must not stop the worker
                error = f"unexpected {type(exc).__name__}: {exc}"
                _log.exception("reconcile %s failed", model)
            else:
                for event in events:
                    about = f" v{event.version}" if event.version else ""
                    _log.info(
                        "%s: %s%s by %s: %s",
                        model,
                        event.event_type,
                        about,
                        event.actor,
                        event.message,
                    )
                if not events:
                    _log.info("%s: in sync (%d deliveries)", model, triggers)
            result = Reconciled(model, triggers, events, error, int(time.time() * 1000))
            with self._cond:
                self._running.discard(model)
                self.recent.append(result)
                self.runs += 1
                self.failures += error is not None
                self._cond.notify_all()


class _SeenDeliveries:
    """Delivery ids accepted in the replay window (a replay within it is not acted on twice)."""

    def __init__(self, window: float, limit: int = 100_000) -> None:
        self.window = window
        self.limit = limit
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_time(self, delivery_id: str) -> bool:
        now = time.monotonic()
        with self._lock:
            while self._seen:
                oldest, seen_at = next(iter(self._seen.items()))
                if now - seen_at <= self.window and len(self._seen) < self.limit:
                    break
                del self._seen[oldest]
            if delivery_id in self._seen:
                return False
            self._seen[delivery_id] = now
            return True


def create_app(
    secret: str,
    reconcile: Callable[[str], list[Event]],
    *,
    max_age: float = MAX_AGE_SECONDS,
    threads: int = 2,
    max_body_mb: float = DEFAULT_MAX_BODY_MB,
) -> FastAPI:
    """The receiver as a FastAPI app; the reconcile workers live as long as the app runs.

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
    # Twice the window: a timestamp may also lie up to max_age in the future.
    seen = _SeenDeliveries(2 * max_age)

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

    def reply(code: int, /, **payload: Any) -> JSONResponse:
        return JSONResponse(payload, status_code=code)

    @app.post("/webhook")
    async def webhook(request: Request) -> JSONResponse:
        body = await request.body()  # BodyLimit answers 413 while reading an oversized one
        headers = request.headers
        try:
            verify_signature(
                secret,
                body,
                signature=headers.get(SIGNATURE_HEADER),
                timestamp=headers.get(TIMESTAMP_HEADER),
                delivery_id=headers.get(DELIVERY_ID_HEADER),
                max_age=max_age,
            )
            event, model = parse_payload(body)
        except SignatureError as exc:
            _log.warning("webhook rejected: %s", exc)
            return reply(401, error=str(exc))
        except BadInput as exc:
            return reply(400, error=str(exc))
        if model is None:
            return reply(200, ignored=event)
        if model.startswith(LOCK_PREFIX):
            return reply(200, ignored=event, model=model, reason="promotion lock model")
        delivery_id = headers[DELIVERY_ID_HEADER]
        if not seen.first_time(delivery_id):
            return reply(200, duplicate=delivery_id, model=model)
        try:
            queued = queue.submit(model)
        except RuntimeError:
            return reply(503, error="shutting down")
        return reply(202, event=event, model=model, coalesced=not queued)

    @app.get("/health")
    async def health() -> JSONResponse:
        return reply(200, status="ok", **queue.snapshot())

    @app.get("/recent")
    async def recent() -> JSONResponse:
        return reply(200, runs=queue.recent_runs())

    return app


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
    from mlflow_plugin._client import wrap_mlflow_errors
    from mlflow_plugin.registry import Registry

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

    secret = os.environ.get(secret_env, "")
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
        f"receiving MLflow webhooks on http://{host}:{port}/webhook; reconciling on {uri}", err=True
    )
    app = create_app(secret, controller.reconcile, max_body_mb=max_body_mb)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
