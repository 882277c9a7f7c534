"""ASGI middleware shared by the HTTP servers (``serve``, ``webhook-receiver``).

:class:`BodyLimit` enforces a request body limit *while the body is read*: a declared
``Content-Length`` over the limit is answered 413 before a byte of the body is read, and a body
without one (chunked) is counted as it arrives and answered 413 the moment it passes the limit;
the rest is never buffered (uvicorn stops reading the socket while the app does not ask for
more, and closes the connection after the answer).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["DEFAULT_MAX_BODY_MB", "BodyLimit", "BodyTooLarge", "max_body_option", "mb_to_bytes"]

DEFAULT_MAX_BODY_MB = 64.0
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyTooLarge(Exception):
    """Raised inside the app's ``receive`` once the body passed the limit (the 413 is sent)."""


def _payload(limit: int) -> bytes:
    message = f"request body larger than {limit} bytes"
    return json.dumps({"error_code": "REQUEST_LIMIT_EXCEEDED", "message": message}).encode()


class BodyLimit:
    """Answer 413 to any request whose body exceeds ``max_bytes`` (see the module docstring)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, payload: Callable[[int], bytes] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)
        self.payload = payload or _payload  # the app's own JSON error shape

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    await self._reject(send)
                    return
        state = {"received": 0, "started": False, "rejected": False}

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    if not state["started"]:
                        state["rejected"] = True
                        await self._reject(send)
                    raise BodyTooLarge(f"request body larger than {limit} bytes")
            return message

        async def guarded_send(message: Message) -> None:
            if state["rejected"]:
                return  # our 413 is the answer; whatever the app tries after it is dropped
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:  # the app may wrap BodyTooLarge (e.g. as a client disconnect)
            if not state["rejected"]:
                raise

    async def _reject(self, send: Send) -> None:
        body = self.payload(self.max_bytes)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def mb_to_bytes(mb: float) -> int:
    return int(mb * 1024 * 1024)


def max_body_option(default: float) -> Callable[[Any], Any]:
    """The ``--max-body-mb`` option of every HTTP server command (defined once)."""
    import click

    return click.option(
        "--max-body-mb",
        default=default,
        show_default=True,
        type=click.FloatRange(min=0, min_open=True),
        help="Larger request bodies get 413, checked while reading (chunked too).",
    )
