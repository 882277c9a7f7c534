"""Adaptive batching: concurrent requests scored by one ``predict`` call.

Single-row requests pay pandas' and pyfunc's fixed cost per call, and a Cox model scores one row
and a hundred in about the same time. Like BentoML's adaptive batching and Triton's dynamic
batcher, :class:`Batcher` queues requests on the event loop; when the scoring slot is free it
takes what is queued, waits at most ``max_wait_ms`` (from the oldest request's arrival) for more
while fewer than ``max_rows`` rows are queued, and hands the batch to
:meth:`ChampionModel.score_batch <mlflow_plugin.serving.ChampionModel.score_batch>` on a worker
thread. Under load, requests pile up while a batch is scored, so batches grow with the load and
an idle server adds at most ``max_wait_ms`` to a request. Each request gets back exactly its own
rows; guardrails, the prediction log and the metrics see each request on its own.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlflow_plugin.errors import ConfigError

if TYPE_CHECKING:
    from mlflow_plugin.serving._loader import ChampionModel, Prediction

__all__ = ["Batcher"]


@dataclass
class _Item:
    frame: Any
    request_id: str
    t0: float
    flags: tuple[str, ...]
    arrived: float
    future: asyncio.Future[Any]


class Batcher:
    """Gathers concurrent requests into batches (see the module docstring).

    Args:
        model: what scores the batches.
        max_rows: stop gathering once this many rows are queued (a larger single request
            still goes alone).
        max_wait_ms: longest wait for more requests once the slot is free; must be > 0.
    """

    def __init__(self, model: ChampionModel, *, max_rows: int, max_wait_ms: float) -> None:
        if max_rows < 1:
            raise ConfigError(f"--max-batch-rows must be >= 1, got {max_rows}")
        if not max_wait_ms > 0:
            raise ConfigError(f"--max-batch-wait-ms must be > 0 to batch, got {max_wait_ms}")
        self.model = model
        self.max_rows = int(max_rows)
        self.max_wait = float(max_wait_ms) / 1000.0
        self._queue: deque[_Item] = deque()
        self._rows = 0
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def submit(
        self, frame: Any, request_id: str, t0: float, flags: tuple[str, ...]
    ) -> Prediction:
        """Score ``frame`` in the next batch; raises what scoring it alone would raise."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._arrived = asyncio.Event()
            self._task = loop.create_task(self._run(), name="batcher")
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append(_Item(frame, request_id, t0, flags, time.monotonic(), future))
        self._rows += len(frame)
        assert self._arrived is not None
        self._arrived.set()
        result = await future
        if isinstance(result, BaseException):
            raise result
        return result  # type: ignore[no-any-return]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass

    async def _run(self) -> None:
        assert self._arrived is not None
        arrived = self._arrived
        while True:
            if not self._queue:
                arrived.clear()
                await arrived.wait()
            # Gather: until max_rows rows are queued or the oldest request waited max_wait.
            while self._rows < self.max_rows:
                remaining = self._queue[0].arrived + self.max_wait - time.monotonic()
                if remaining <= 0:
                    break
                arrived.clear()
                try:
                    await asyncio.wait_for(arrived.wait(), remaining)
                except TimeoutError:
                    break
            batch = self._take()
            if not batch:
                continue
            try:
                results = await asyncio.to_thread(
                    self.model.score_batch, [(i.frame, i.request_id, i.t0, i.flags) for i in batch]
                )
            except Exception as exc:  # noqa: BLE001 - never leave a request waiting
                results = [exc] * len(batch)
            for item, result in zip(batch, results, strict=True):
                if not item.future.done():  # a timed-out request has stopped waiting
                    item.future.set_result(result)

    def _take(self) -> list[_Item]:
        batch: list[_Item] = []
        rows = 0
        while self._queue:
            item = self._queue[0]
            n = len(item.frame)
            if batch and rows + n > self.max_rows:
                break
            self._queue.popleft()
            if item.future.done():  # timed out while queued
                self._rows -= n
                continue
            batch.append(item)
            rows += n
            self._rows -= n
        return batch
