"""parallel, beside and submit share one process-wide pool, made on first use."""

from __future__ import annotations

import threading

from mlflow_plugin._internal import concurrency
from mlflow_plugin._internal.concurrency import beside, parallel, submit


def _thread() -> str:
    return threading.current_thread().name


class TestSharedPool:
    def test_every_helper_runs_in_the_one_pool(self):
        """The three helpers hand their calls to the same pool's threads."""
        names = [*parallel(_thread, _thread), submit(_thread).result()]
        seen: list[str] = []
        assert beside(lambda: seen.append(_thread()), _thread) == threading.current_thread().name
        assert all(n.startswith("mlflow_plugin") for n in [*names, *seen])
        assert concurrency._shared_pool() is concurrency._shared_pool()
