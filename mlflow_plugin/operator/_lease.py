"""The operator's single-instance guard: a lease in a registered-model tag.

``mlflow_plugin.operator_lease`` holds ``{"owner": "kind@host:pid", "expires": epoch,
"pidns": "..."}`` (the holder's PID namespace, where known). Taking it happens under the model's
lock, so two operators (on any machines) cannot both hold a model; a lease that expired, or whose
holder was a process of this host and PID namespace that is gone
(:func:`mlflow_plugin._internal.holder.dead_local_holder`), is taken over. ``tick`` takes a short
lease for its pass.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from mlflow_plugin._internal.holder import PID_NAMESPACE, dead_local_holder
from mlflow_plugin.errors import MlflowPluginError

__all__ = ["LEASE_TAG", "OperatorBusy", "OperatorLease"]

LEASE_TAG = "mlflow_plugin.operator_lease"


def _dead_here(owner: str, pid_namespace: str) -> bool:
    """Whether ``owner`` (``kind@host:pid``, of PID namespace ``pid_namespace``) is a process
    of this host and PID namespace that no longer exists."""
    host, _, pid = owner.partition("@")[2].rpartition(":")
    return dead_local_holder(host, pid, pid_namespace)


class OperatorBusy(MlflowPluginError):
    """Another operator holds a model (exit 1)."""


class OperatorLease:
    """Leases on ``models`` for ``ttl`` seconds, renewed by :meth:`renew`."""

    def __init__(
        self, registry: Any, models: list[str], ttl: float, *, kind: str = "operator"
    ) -> None:
        self.registry = registry
        self.models = list(models)
        self.ttl = ttl
        self.owner = f"{kind}@{socket.gethostname()}:{os.getpid()}"
        self.held: list[str] = []

    def acquire(self) -> OperatorLease:
        """Take every model's lease or none.

        Raises:
            OperatorBusy: a live lease of another owner exists (its owner is named).
        """
        try:
            for model in self.models:
                self._take(model)
        except BaseException:
            self.release()
            raise
        return self

    def renew(self) -> None:
        for model in list(self.held):
            self._take(model)

    def _take(self, model: str) -> None:
        # A live lease of another operator is refused before waiting for the model lock: that
        # operator may hold the lock pass after pass, and the answer is "busy" anyway. The
        # check is repeated under the lock before the lease is written (renewing a lease we
        # hold only makes that one).
        if model not in self.held:
            self._refuse_if_busy(model)
        with self.registry.lock(model, intent={"op": "operator_lease", "version": ""}):
            self._refuse_if_busy(model)
            lease: dict[str, Any] = {"owner": self.owner, "expires": time.time() + self.ttl}
            if PID_NAMESPACE:
                lease["pidns"] = PID_NAMESPACE
            value = json.dumps(lease)
            self.registry.set_model_tag(model, LEASE_TAG, value)
            if model not in self.held:
                self.held.append(model)

    def _refuse_if_busy(self, model: str) -> None:
        raw = self.registry.get_model(model).tags.get(LEASE_TAG)
        if not raw:
            return
        try:
            lease = json.loads(raw)
        except ValueError:
            lease = {}
        owner = str(lease.get("owner", ""))
        namespace = str(lease.get("pidns", ""))
        live = float(lease.get("expires", 0)) > time.time() and not _dead_here(owner, namespace)
        if owner != self.owner and live:
            raise OperatorBusy(
                f"{model} is already managed by {lease.get('owner')} (lease until "
                f"{time.strftime('%H:%M:%S', time.gmtime(float(lease['expires'])))} UTC); "
                "one operator per model"
            )

    def release(self) -> None:
        for model in self.held:
            try:
                raw = self.registry.get_model(model).tags.get(LEASE_TAG, "")
                if raw and json.loads(raw).get("owner") == self.owner:
                    self.registry.delete_model_tag(model, LEASE_TAG)
            except Exception:  # noqa: BLE001 - the lease expires by itself
                pass
        self.held = []

    def __enter__(self) -> OperatorLease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
