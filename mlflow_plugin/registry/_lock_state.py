"""The state of a promotion lock as its registered model's tags carry it, whether its holder is
still alive, and the lock's settings (docs/ARCHITECTURE.md, "The promotion lock").

:class:`mlflow_plugin.registry.lock.ModelLock` writes these tags and judges a lock stale by
them; :func:`lock_status` reports them (``Registry.lock_status``).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlflow_plugin._internal.holder import dead_local_holder
from mlflow_plugin.errors import NotFound, PermissionDenied
from mlflow_plugin.settings import TAG_PREFIX, env_seconds, lock_lease
from mlflow_plugin.types import check_model_name

if TYPE_CHECKING:
    from mlflow_plugin.registry._adapter import Registry

__all__ = ["LOCK_PREFIX", "env_seconds", "lock_lease", "lock_model_name", "lock_status"]

LOCK_PREFIX = "mlflow_plugin.lock."
_LOCK_OWNER = TAG_PREFIX + "lock_owner"
_LOCK_EXPIRES = TAG_PREFIX + "lock_expires"
_LOCK_INTENT = TAG_PREFIX + "lock_intent"
_LOCK_TOKEN = TAG_PREFIX + "lock_token"
_LOCK_MODEL = TAG_PREFIX + "lock_model"


def lock_status(registry: Registry, name: str) -> dict[str, Any] | None:
    """See :meth:`mlflow_plugin.registry._adapter.Registry.lock_status`."""
    check_model_name(name)
    lock_name = lock_model_name(name)
    leftovers = _lock_leftovers(registry, lock_name)
    try:
        info = registry.get_model(lock_name)
    except NotFound:
        if not leftovers:
            return None
        return {
            "model": name,
            "lock_model": lock_name,
            "holder": "",
            "token": "",
            "intent": {},
            "lease_expires": 0.0,
            "stale": True,
            "leftovers": leftovers,
        }
    state = _LockState.from_tags(info.tags)
    return {
        "model": name,
        "lock_model": lock_name,
        "holder": state.owner,
        "token": state.token,
        "intent": state.intent,
        "lease_expires": state.expires,
        "expires": state.expires,
        "stale": state.stale(),
        "leftovers": leftovers,
    }


def _lock_leftovers(registry: Registry, lock_name: str) -> list[str]:
    """Copies ``<lock>.stale.<token>`` a breaker renamed but could not delete (crashed)."""
    # lock_name is ASCII (a prefix and a hex digest): safe inside a filter string.
    pattern = f"name LIKE '{lock_name}.stale.%'"
    found = registry._do("lock leftovers", registry.client.search_registered_models, pattern)
    return sorted(rm.name for rm in found)


def lock_model_name(model: str) -> str:
    """The registered model that is ``model``'s lock: ASCII whatever the model's name."""
    return LOCK_PREFIX + hashlib.sha256(model.encode("utf-8")).hexdigest()[:40]


@dataclass(frozen=True)
class _LockState:
    owner: str
    token: str
    expires: float
    intent: dict[str, str]

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> _LockState:
        try:
            expires = float(tags.get(_LOCK_EXPIRES, "0"))
        except ValueError:
            expires = 0.0
        try:
            intent = json.loads(tags.get(_LOCK_INTENT, "{}"))
        except ValueError:
            intent = {}
        owner = tags.get(_LOCK_OWNER, "")
        return cls(owner, tags.get(_LOCK_TOKEN, "") or owner, expires, intent)

    def stale(self) -> bool:
        return time.time() >= self.expires or _dead_local_process(self.owner)


def _lock_vanished(name: str, exc: PermissionDenied) -> bool:
    """MLflow's basic-auth answers 403, not 404, when a user reads a model that does not
    exist: for a lock model (which every member of the workspace may read) that means it was
    released meanwhile. A creation refused is still refused (``acquire`` does not come here)."""
    return name.startswith(LOCK_PREFIX) and not exc.unauthenticated


def _dead_local_process(owner: str) -> bool:
    """The holder ``host:pid:token[:pidnsN]`` ran on this host, in this PID namespace, and its
    process is gone (:func:`mlflow_plugin._internal.holder.dead_local_holder`)."""
    parts = owner.split(":")
    host, pid_text = parts[0], parts[1] if len(parts) > 1 else ""
    namespace = next((p[len("pidns") :] for p in parts[3:] if p.startswith("pidns")), "")
    return dead_local_holder(host, pid_text, namespace)
