"""Work handed off the caller's thread: a queue drained by one daemon thread.

Serving's prediction log, mirror and ledger events each own a bounded :class:`BackgroundQueue`:
a request only puts an item (never waits: a full or closed queue refuses it, the owner counts
the drop); the operator's alert webhooks own an unbounded one (nothing dropped, ``flush`` waits).
The thread takes up to ``max_batch`` items that arrive within ``linger`` seconds of the first
and hands them to the owner's ``handle`` in one call.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["BackgroundQueue"]

_STOP = object()
_log = logging.getLogger("mlflow_plugin")


class BackgroundQueue:
    """A bounded queue and the thread that drains it in batches.

    Args:
        handle: called on the thread with each batch (never empty); what it raises is logged
            and the batch counts as handled (the thread lives on).
        name: the thread's name.
        max_queue: items waiting before :meth:`put` refuses new ones (0: no bound).
        max_batch: items handed over in one call.
        linger: seconds to wait for more items after the first of a batch.
    """

    def __init__(
        self,
        handle: Callable[[list[Any]], None],
        *,
        name: str,
        max_queue: int,
        max_batch: int = 1,
        linger: float = 0.0,
    ) -> None:
        self._handle = handle
        self.name = name
        self.max_batch = max_batch
        self.linger = linger
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.closed = False

    def start(self) -> None:
        """Start the thread (once; later calls do nothing)."""
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def put(self, item: Any) -> bool:
        """Queue ``item`` without waiting; False when the queue is full or closed."""
        if self.closed:
            return False
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            return False
        return True

    def qsize(self) -> int:
        return self._queue.qsize()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued item is handled; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Handle what is queued (up to ``timeout``) and stop the thread."""
        if self.closed:
            return
        self.closed = True
        if self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put(_STOP, timeout=timeout)
            self._thread.join(timeout)

    def _run(self) -> None:
        stop = False
        while not stop:
            items = [self._queue.get()]
            # Gather what arrives within `linger`, up to a batch: one call for many items.
            deadline = time.monotonic() + self.linger
            while len(items) < self.max_batch and items[-1] is not _STOP:
                try:
                    items.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            stop = items[-1] is _STOP
            batch = [item for item in items if item is not _STOP]
            try:
                if batch:
                    self._handle(batch)
            except Exception:  # noqa: BLE001 - one failed batch must not stop the thread
                _log.exception("%s: handling %d queued item(s) failed", self.name, len(batch))
            finally:
                for _ in items:
                    self._queue.task_done()
