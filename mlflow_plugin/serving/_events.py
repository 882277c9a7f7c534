"""Ledger events from serving (``error``, ``recovery``), rate-limited and written off the request path.

A flood of failures must not become a flood of audit runs, nor slow requests down: each kind of
event (event type + a key such as ``"predict:v3"``) is written at most once per ``interval``;
the occurrences in between are counted and the next event of that kind says how many there were.
Writing is one HTTP round trip per event, so it happens on a background thread behind a small
bounded queue.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from mlflow_plugin._internal.background import BackgroundQueue

__all__ = ["EventReporter"]

_log = logging.getLogger(__name__)


class _LedgerLike(Protocol):
    def record(self, event_type: str, model: str, **kwargs: Any) -> Any: ...


@dataclass
class _Window:
    last: float
    suppressed: int = 0


@dataclass(frozen=True)
class _Pending:
    event_type: str
    version: str
    from_version: str
    message: str
    extra: dict[str, str]


class EventReporter:
    """Writes serving events for one model to the ledger, at most one per kind per ``interval``.

    Args:
        model: registered model name.
        ledger: where to write; default a :class:`mlflow_plugin.ledger._ledger.Ledger` on
            ``tracking_uri``, created on the writer thread.
        tracking_uri: used when ``ledger`` is None.
        interval: seconds between two events of the same kind.
        max_queue: events waiting to be written before new ones are dropped (counted).
    """

    def __init__(
        self,
        model: str,
        *,
        ledger: _LedgerLike | None = None,
        tracking_uri: str | None = None,
        interval: float = 60.0,
        max_queue: int = 64,
    ) -> None:
        self.model = model
        self.interval = interval
        self.who = f"serving@{socket.gethostname()}"
        self._ledger: Any = ledger
        self._tracking_uri = tracking_uri
        self._windows: dict[tuple[str, str], _Window] = {}
        self._lock = threading.Lock()
        self._counts = {"written": 0, "suppressed": 0, "dropped": 0, "failed": 0}
        self._writer = BackgroundQueue(self._write, name="ledger-events", max_queue=max_queue)
        self._writer.start()

    def report(
        self,
        event_type: str,
        key: str,
        *,
        version: str,
        from_version: str = "",
        message: str,
        extra: dict[str, str] | None = None,
    ) -> bool:
        """Queue one event unless one of the same kind was written within ``interval``."""
        now = time.monotonic()
        with self._lock:
            window = self._windows.get((event_type, key))
            if window is not None and now - window.last < self.interval:
                window.suppressed += 1
                self._counts["suppressed"] += 1
                return False
            suppressed = window.suppressed if window is not None else 0
            self._windows[(event_type, key)] = _Window(now)
        info = dict(extra or {})
        if suppressed:
            message += f" (+{suppressed} more like this in the last {self.interval:g}s)"
            info["suppressed"] = str(suppressed)
        if not self._writer.put(_Pending(event_type, version, from_version, message, info)):
            with self._lock:
                self._counts["dropped"] += 1
            return False
        return True

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def flush(self, timeout: float = 10.0) -> bool:
        return self._writer.flush(timeout)

    def close(self, timeout: float = 10.0) -> None:
        self._writer.close(timeout)

    def _write(self, batch: list[_Pending]) -> None:
        (event,) = batch  # one event a call: max_batch 1
        try:
            if self._ledger is None:
                from mlflow_plugin.controller import Controller

                # The controller's ledger appends under the model's lock: one linear chain.
                self._ledger = Controller.from_uri(self._tracking_uri).ledger
            self._ledger.record(
                event.event_type,
                self.model,
                version=event.version,
                from_version=event.from_version,
                message=event.message,
                who=self.who,
                extra={"source": "serving", **event.extra},
            )
        except Exception as exc:  # noqa: BLE001 - the audit trail must never take serving down
            with self._lock:
                self._counts["failed"] += 1
            _log.warning("could not record %s event for %s: %s", event.event_type, self.model, exc)
            return
        with self._lock:
            self._counts["written"] += 1
