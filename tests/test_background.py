"""The queue and thread behind serving's writers and the operator's alert webhooks."""

from __future__ import annotations

import logging
import threading

from mlflow_plugin._internal.background import BackgroundQueue


def test_a_failing_batch_is_logged_and_the_thread_lives_on(caplog):
    handled: list[int] = []

    def handle(batch: list[int]) -> None:
        if 1 in batch:
            raise TypeError("a handler bug")
        handled.extend(batch)

    q = BackgroundQueue(handle, name="test-failing", max_queue=10)
    q.start()
    with caplog.at_level(logging.ERROR, logger="mlflow_plugin"):
        assert q.put(1)
        assert q.flush(timeout=5.0)  # the failed item counts as handled: flush does not wedge
        assert q.put(2) and q.put(3)
        assert q.flush(timeout=5.0)
    assert handled == [2, 3]
    assert "test-failing: handling 1 queued item(s) failed" in caplog.text
    assert "TypeError: a handler bug" in caplog.text
    q.close()


def test_a_closed_queue_refuses_and_a_full_one_too():
    release = threading.Event()
    q = BackgroundQueue(lambda batch: release.wait(5.0), name="test-full", max_queue=1)
    q.start()
    assert q.put("taken by the thread")
    for _ in range(100):  # the thread took the first item and waits inside handle
        if q.qsize() == 0:
            break
        threading.Event().wait(0.01)
    assert q.put("waits in the queue")
    assert not q.put("one too many")
    release.set()
    q.close()
    assert q.closed
    assert not q.put("after close")


def test_an_unbounded_queue_drops_nothing_and_flush_waits_for_all():
    seen: list[int] = []
    gate = threading.Event()

    def handle(batch: list[int]) -> None:
        gate.wait(5.0)
        seen.extend(batch)

    q = BackgroundQueue(handle, name="test-unbounded", max_queue=0, max_batch=64, linger=0.01)
    q.start()
    assert all(q.put(i) for i in range(5000))
    assert not q.flush(timeout=0.05)  # still held at the gate
    gate.set()
    assert q.flush(timeout=10.0)
    assert seen == list(range(5000))
    q.close()
