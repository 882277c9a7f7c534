"""The webhook receiver's reconcile workers (:mod:`mlflow_plugin.webhooks._receiver`): background
threads that run ``reconcile(model)``, coalescing a burst of deliveries for one model into one
run (plus one more if the burst arrived while a run was already reading the registry).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlflow_plugin.errors import MlflowPluginError
from mlflow_plugin.types import Event

__all__ = ["ReconcileQueue", "Reconciled"]

# The receiver's log, whichever of its modules writes the line.
_log = logging.getLogger("mlflow_plugin.webhooks")


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
