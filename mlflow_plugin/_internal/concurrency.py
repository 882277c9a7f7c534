"""Run independent HTTP round trips to the tracking server concurrently."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

__all__ = ["beside", "parallel", "submit"]

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _shared_pool() -> ThreadPoolExecutor:
    """The process's one pool for :func:`parallel`, :func:`beside` and :func:`submit`: made on
    first use, kept for the life of the process.

    Two pools keep their own lifetime on purpose: the REST artifact download's, made per
    download (it may run inside a pooled call, and waiting there for more pool work could
    starve the pool), and the serving batcher's, owned by the model it scores for
    (:mod:`mlflow_plugin.serving._batch_scoring`)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="mlflow_plugin")
        return _pool


def parallel(*calls: Callable[[], Any]) -> list[Any]:
    """Call each of ``calls`` concurrently and return their results in order.

    Every call finishes before this returns; the first failure (in argument order) is then
    raised, so a caller never proceeds while one of its writes is still in flight. Each call
    runs in a copy of the caller's context: the actor and workspace a server bound to the
    request (context variables, which pool threads do not inherit) hold there too.
    """
    if len(calls) <= 1:
        return [call() for call in calls]
    pool = _shared_pool()
    futures = [pool.submit(contextvars.copy_context().run, call) for call in calls]
    wait(futures)
    return [f.result() for f in futures]


def beside(background: Callable[[], Any], foreground: Callable[[], Any]) -> Any:
    """Call ``background`` in a pool thread while ``foreground`` runs in this thread (for a
    call that must stay on the caller's thread, e.g. MLflow's ``end_run``, which pops that
    thread's run stack); return ``foreground``'s result once both are done. A failure is raised
    after both finished (``foreground``'s if both failed)."""
    pool = _shared_pool()
    future = pool.submit(contextvars.copy_context().run, background)
    try:
        result = foreground()
    finally:
        wait([future])
    future.result()
    return result


def submit(call: Callable[[], Any]) -> Future[Any]:
    """Start ``call`` in a pool thread (in a copy of the caller's context); the caller waits for
    the future before it depends on the call. ``call`` must not wait for other pool work."""
    pool = _shared_pool()
    return pool.submit(contextvars.copy_context().run, call)
