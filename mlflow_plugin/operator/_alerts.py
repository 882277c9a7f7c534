"""Alerts: an ``alert`` ledger event for every trigger firing and every degradation, and, when
the policy's ``alerts.webhook_url`` is set, a JSON POST with Slack-compatible ``text``.

The POST is made by a background thread with retries and backoff, so a slow or dead receiver
never blocks the loop; :meth:`Alerter.flush` waits (bounded) before a one-shot ``tick`` exits.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlflow_plugin._internal.background import BackgroundQueue

if TYPE_CHECKING:
    from mlflow_plugin.controller import LedgerLike
    from mlflow_plugin.policy import Alerts

__all__ = ["Alert", "Alerter"]

_log = logging.getLogger("mlflow_plugin.operator")


@dataclass(frozen=True)
class Alert:
    """One alert.

    Attributes:
        model, version: what it is about.
        kind: ``retrain_triggered`` or ``degraded`` (or ``rollback``).
        text: one line for a person (the Slack message).
        details: structured evidence (sent as ``details`` in the JSON body).
    """

    model: str
    version: str
    kind: str
    text: str
    details: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        return {
            "text": f"[mlflow_plugin] {self.text}",
            "model": self.model,
            "version": self.version,
            "kind": self.kind,
            "details": self.details,
        }


class Alerter:
    """Writes ``alert`` events and delivers webhooks off the caller's thread.

    Args:
        ledger: where ``alert`` events go.
        config: the policy's ``alerts`` section.
    """

    def __init__(self, ledger: LedgerLike, config: Alerts) -> None:
        self.ledger = ledger
        self.config = config
        self.delivered: list[dict[str, Any]] = []
        self.failed: list[tuple[dict[str, Any], str]] = []
        # Unbounded: an alert is never dropped; one POST (with its retries) per call.
        self._webhooks = BackgroundQueue(self._deliver_all, name="alerts", max_queue=0)

    def send(self, alert: Alert) -> None:
        """Record the ``alert`` event now; queue the webhook (never waits for it)."""
        self.ledger.record(
            "alert",
            alert.model,
            version=alert.version,
            message=alert.text[:1000],
            extra={"alert_kind": alert.kind},
        )
        _log.warning("alert %s %s v%s: %s", alert.kind, alert.model, alert.version, alert.text)
        if self.config.webhook_url:
            self._webhooks.start()
            self._webhooks.put(alert.payload())

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until queued webhooks are delivered or given up; False on timeout."""
        return self._webhooks.flush(timeout)

    def _deliver_all(self, payloads: list[dict[str, Any]]) -> None:
        for payload in payloads:
            self._deliver(payload)

    def _deliver(self, payload: dict[str, Any]) -> None:
        import requests

        url = self.config.webhook_url
        assert url is not None
        body = json.dumps(payload)
        error = ""
        for attempt in range(self.config.retries + 1):
            try:
                response = requests.post(
                    url,
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=self.config.timeout,
                )
                if response.status_code < 300:
                    self.delivered.append(payload)
                    return
                error = f"HTTP {response.status_code}"
                if 400 <= response.status_code < 500 and response.status_code != 429:
                    break  # the receiver refuses this body: retrying cannot help
            except requests.RequestException as exc:
                error = type(exc).__name__
            if attempt < self.config.retries:
                time.sleep(min(0.5 * 2**attempt, 8.0))
        self.failed.append((payload, error))
        _log.error(
            "alert webhook %s failed after %d attempts: %s", url, self.config.retries + 1, error
        )
