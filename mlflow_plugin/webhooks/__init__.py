"""MLflow registry webhooks: the receiver (``mlflow-plugin webhook-receiver``) that checks each
delivery's signature and reconciles the model it names.

- :mod:`._receiver`: the ASGI app and the command;
- :mod:`._delivery`: signatures, freshness, payloads;
- :mod:`._reconcile_queue`: the background reconcile workers.

Importing the package is cheap: each member's module is imported on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlflow_plugin._internal.lazy import lazy_attributes

if TYPE_CHECKING:
    from mlflow_plugin.webhooks._receiver import (
        DELIVERY_ID_HEADER,
        EVENTS,
        MAX_AGE_SECONDS,
        SECRET_ENV,
        SIGNATURE_HEADER,
        TIMESTAMP_HEADER,
        Reconciled,
        ReconcileQueue,
        SignatureError,
        create_app,
        parse_payload,
        register_webhook,
        sign,
        verify_signature,
        webhook_receiver,
    )

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

_LAZY = {
    "DELIVERY_ID_HEADER": "_receiver",
    "EVENTS": "_receiver",
    "MAX_AGE_SECONDS": "_receiver",
    "ReconcileQueue": "_receiver",
    "Reconciled": "_receiver",
    "SECRET_ENV": "_receiver",
    "SIGNATURE_HEADER": "_receiver",
    "SignatureError": "_receiver",
    "TIMESTAMP_HEADER": "_receiver",
    "create_app": "_receiver",
    "parse_payload": "_receiver",
    "register_webhook": "_receiver",
    "sign": "_receiver",
    "verify_signature": "_receiver",
    "webhook_receiver": "_receiver",
}

# PEP 562: the members' modules are imported on first use.
__getattr__, __dir__ = lazy_attributes(
    globals(), {name: f"{__name__}.{module}" for name, module in _LAZY.items()}, __all__
)
