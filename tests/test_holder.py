"""Whether a lock's or a lease's holder is a process that is gone: one check, aware of PID
namespaces, for the promotion lock and the operator's lease."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from mlflow_plugin._internal.holder import PID_NAMESPACE, dead_local_holder
from mlflow_plugin.operator import OperatorBusy, OperatorLease
from mlflow_plugin.operator._lease import LEASE_TAG
from mlflow_plugin.registry._lock_state import _dead_local_process
from mlflow_plugin.testing import InMemoryRegistry

#: Above Linux's pid_max (2**22): no process has it.
DEAD_PID = str(2**22 + 12345)
#: A PID namespace that is not this process's (inodes of real ones are large numbers).
OTHER_NAMESPACE = "1"


@pytest.fixture()
def host() -> str:
    return socket.gethostname()


class TestDeadLocalHolder:
    def test_a_gone_process_of_this_host_and_namespace_is_dead(self, host):
        """A holder recorded here, in this PID namespace, whose PID is gone is dead."""
        assert dead_local_holder(host, DEAD_PID, PID_NAMESPACE)

    def test_a_live_process_is_not_dead(self, host):
        """This very process is not judged dead."""
        assert not dead_local_holder(host, str(os.getpid()), PID_NAMESPACE)

    def test_another_pid_namespace_on_the_same_host_is_not_judged(self, host):
        """Another container with the same host name: its PID means nothing here."""
        assert not dead_local_holder(host, DEAD_PID, OTHER_NAMESPACE)

    @pytest.mark.skipif(not PID_NAMESPACE, reason="no /proc/self/ns/pid here")
    def test_a_holder_that_did_not_record_its_namespace_is_not_judged(self, host):
        """An older holder (no namespace recorded) waits for its lease to run out."""
        assert not dead_local_holder(host, DEAD_PID, "")

    def test_another_host_or_a_bad_pid_is_not_judged(self, host):
        """Another host, or a PID that is not a number, is never judged dead."""
        assert not dead_local_holder("other-host", DEAD_PID, PID_NAMESPACE)
        assert not dead_local_holder(host, "x12", PID_NAMESPACE)


class TestBothHoldersUseIt:
    def test_the_promotion_lock_owner(self, host):
        """The lock's ``host:pid:token:pidnsN`` owner is judged by the same rule."""
        assert _dead_local_process(f"{host}:{DEAD_PID}:abcd:pidns{PID_NAMESPACE}")
        assert not _dead_local_process(f"{host}:{DEAD_PID}:abcd:pidns{OTHER_NAMESPACE}")

    def _lease(self, registry: InMemoryRegistry, host: str, **fields: str) -> None:
        owner = f"operator@{host}:{DEAD_PID}"
        lease = {"owner": owner, "expires": time.time() + 3600, **fields}
        registry.set_model_tag("m", LEASE_TAG, json.dumps(lease))

    def test_the_operator_lease_records_its_namespace(self):
        """A lease written by an operator carries its PID namespace next to its owner."""
        registry = InMemoryRegistry()
        registry.ensure_model("m")
        with OperatorLease(registry, ["m"], ttl=60) as held:
            lease = json.loads(registry.get_model("m").tags[LEASE_TAG])
            assert lease["owner"] == held.owner
            assert lease.get("pidns", "") == PID_NAMESPACE

    def test_a_dead_operator_of_this_namespace_is_taken_over(self, host):
        """A lease whose holder died here (kill -9) does not block until it expires."""
        registry = InMemoryRegistry()
        registry.ensure_model("m")
        self._lease(registry, host, pidns=PID_NAMESPACE)
        OperatorLease(registry, ["m"], ttl=60).acquire().release()

    def test_an_operator_of_another_namespace_on_this_host_is_not_taken_over(self, host):
        """The same host name and a PID unknown here, but another PID namespace: still busy."""
        registry = InMemoryRegistry()
        registry.ensure_model("m")
        self._lease(registry, host, pidns=OTHER_NAMESPACE)
        with pytest.raises(OperatorBusy, match=f"operator@{host}:{DEAD_PID}"):
            OperatorLease(registry, ["m"], ttl=60).acquire()
