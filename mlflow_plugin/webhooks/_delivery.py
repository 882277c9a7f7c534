"""What a registry webhook delivery is, for :mod:`mlflow_plugin.webhooks._receiver`: its signature and
freshness (MLflow's ``v1`` HMAC scheme), the replay window of its delivery ids, and the model its
payload names.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time

from mlflow_plugin.errors import BadInput

__all__ = [
    "DELIVERY_ID_HEADER",
    "EVENTS",
    "MAX_AGE_SECONDS",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "SignatureError",
    "parse_payload",
    "sign",
    "verify_signature",
]

EVENTS = ("model_version_alias.created", "model_version_alias.deleted", "model_version_tag.set")
MAX_AGE_SECONDS = 300.0
# As in mlflow.webhooks.constants (not imported: that would load all of mlflow for three strings).
SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
_SIGNATURE_VERSION = "v1"


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
    # Unix seconds in ASCII digits, at most 12 of them (a 400-digit number overflowed the
    # float arithmetic below into a 500).
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise SignatureError(f"{TIMESTAMP_HEADER} is not a Unix time")
    sent = int(timestamp)
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
