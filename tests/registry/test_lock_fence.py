"""The promotion lock's deadline fence (docs/ARCHITECTURE.md, "The promotion lock"): with a fake
monotonic clock, first over a fake registry (no server), then over a real one."""

from __future__ import annotations

import os
import socket

import pytest

from mlflow_plugin._internal.holder import PID_NAMESPACE as _PID_NAMESPACE
from mlflow_plugin.errors import LockLost, NotFound
from mlflow_plugin.registry._adapter import Registry
from mlflow_plugin.registry._lock_state import _dead_local_process
from mlflow_plugin.registry.lock import ModelLock
from mlflow_plugin.testing import count_http_calls
from mlflow_plugin.types import ModelInfo

from helpers import make_versions


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeRegistry:
    """Just what the lock's ownership read needs: the lock model's token, and a read count."""

    def __init__(self) -> None:
        self._held: dict = {}
        self.uri = "fake://"
        self.token = ""
        self.reads = 0

    def get_model(self, name: str) -> ModelInfo:
        self.reads += 1
        if not self.token:
            raise NotFound(name)
        return ModelInfo(name, {}, {"mlflow_plugin.lock_token": self.token})


def _held_lock(lease: float = 8.0) -> tuple[ModelLock, FakeRegistry, FakeClock]:
    registry, clock = FakeRegistry(), FakeClock()
    lock = ModelLock(
        registry,  # type: ignore[arg-type]
        "m",
        intent={},
        lease=lease,
        timeout=1.0,
        heartbeat=False,
        clock=clock,
    )
    registry.token = lock.token
    lock._acquired(clock.now)  # created at t=100: lease 8 s, margin 2 s, fence at 106
    return lock, registry, clock


def test_inside_the_fence_check_costs_nothing():
    lock, registry, clock = _held_lock()
    clock.now = 105.9
    assert lock.fenced()
    lock.check()
    assert registry.reads == 0


def test_past_the_fence_without_renewal_refuses():
    """No renewal landed: past the fence the lease itself is too close to its end."""
    lock, registry, clock = _held_lock()
    clock.now = 106.5
    with pytest.raises(LockLost, match="lease ran out"):
        lock.check()
    assert registry.reads == 0


def test_renewal_in_time_moves_the_fence():
    lock, registry, clock = _held_lock()
    lock._renewed(started=103.0, answered=104.0)  # answered before the fence (106)
    clock.now = 108.9  # fence now 103 + 8 - 2 = 109
    lock.check()
    assert registry.reads == 0


def test_late_renewal_does_not_move_the_fence_and_check_reads():
    """A renewal answered after the fence keeps the lease (valid until 115) but not the fence:
    past it, check() reads the token and refuses, nothing written, if it changed."""
    lock, registry, clock = _held_lock()
    lock._renewed(started=105.0, answered=106.5)
    assert lock._fence == 106.0
    clock.now = 107.0
    lock.check()
    assert registry.reads == 1
    registry.token = "somebody-else"
    with pytest.raises(LockLost, match="another process holds it now"):
        lock.check()
    assert not lock.fenced()


def test_a_lost_lock_is_refused_even_inside_the_fence():
    lock, _, clock = _held_lock()
    lock._lost = "the lock was taken over"
    with pytest.raises(LockLost, match="taken over"):
        lock.check()


def test_pid_namespace_is_part_of_the_holder():
    """Two containers on one host may have the same host name and PIDs: a holder is judged
    dead by its PID only in the same PID namespace."""
    host = socket.gethostname()
    dead_pid = 2**22 + 12345  # above pid_max: no such process
    lock, _, _ = _held_lock()
    if _PID_NAMESPACE:
        assert lock.owner.endswith(f":pidns{_PID_NAMESPACE}")
    ns = f":pidns{_PID_NAMESPACE}" if _PID_NAMESPACE else ""
    assert _dead_local_process(f"{host}:{dead_pid}:abcd{ns}")
    assert not _dead_local_process(f"{host}:{os.getpid()}:abcd{ns}")
    assert not _dead_local_process(f"{host}:{dead_pid}:abcd:pidns1")
    assert not _dead_local_process(f"other-host:{dead_pid}:abcd{ns}")


@pytest.mark.integration
def test_fence_on_the_real_registry(tracking_uri, model_name):
    """Inside the fence no request; past it one read, and a lock taken over is refused."""
    make_versions(tracking_uri, model_name, 1)
    registry = Registry(tracking_uri)
    clock = FakeClock()
    lock = registry.lock(model_name, lease=30.0, heartbeat=False)
    lock._clock = clock
    with lock:
        with count_http_calls() as calls:
            lock.check()
        assert calls.total == 0
        lock._renewed(started=clock.now + 20, answered=clock.now + 40)  # late: fence stays
        clock.now += 29.0  # past the fence (128), within the renewed lease (150)
        with count_http_calls() as calls:
            lock.check()
        assert calls.count("registered-models/get") == 1
        registry.client.set_registered_model_tag(
            lock.lock_name, "mlflow_plugin.lock_token", "another-holder"
        )
        with pytest.raises(LockLost, match="nothing written"):
            lock.check()
    # release() left the other holder's lock alone
    assert registry.lock_status(model_name)["token"] == "another-holder"
    registry.client.delete_registered_model(lock.lock_name)
