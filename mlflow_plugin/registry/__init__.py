"""The model registry as the controller sees it, and the per-model promotion lock.

- :mod:`._adapter`: :class:`Registry`, aliases, stages and tags of registered models;
- :mod:`.lock`: :class:`ModelLock`, the fenced, leased promotion lock held in the registry itself;
- :mod:`._lock_state`: a lock's state as tags, and whether its holder is alive.

Importing the package is cheap: each member's module is imported on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlflow_plugin._internal.lazy import lazy_attributes

if TYPE_CHECKING:
    from mlflow_plugin.registry._adapter import (
        LOCK_PREFIX,
        ModelLock,
        Registry,
        StaleLock,
        lock_lease,
        lock_model_name,
        wrap_mlflow_errors,
    )
    from mlflow_plugin.registry._lock_state import (
        env_seconds,
        lock_status,
    )

__all__ = [
    "LOCK_PREFIX",
    "ModelLock",
    "Registry",
    "StaleLock",
    "env_seconds",
    "lock_lease",
    "lock_model_name",
    "lock_status",
    "wrap_mlflow_errors",
]

_LAZY = {
    "LOCK_PREFIX": "_adapter",
    "ModelLock": "_adapter",
    "Registry": "_adapter",
    "StaleLock": "_adapter",
    "lock_lease": "_adapter",
    "lock_model_name": "_adapter",
    "wrap_mlflow_errors": "_adapter",
    "env_seconds": "_lock_state",
    "lock_status": "_lock_state",
}

# PEP 562: the members' modules are imported on first use.
__getattr__, __dir__ = lazy_attributes(
    globals(), {name: f"{__name__}.{module}" for name, module in _LAZY.items()}, __all__
)
