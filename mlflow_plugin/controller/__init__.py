"""The promotion controller: promote, reject, roll back, reconcile, and the fallback config.

- :mod:`._controller`: :class:`Controller`, the operations under the model's lock;
- :mod:`._promotion`, :mod:`._rollback`: promote/set_challenger/reject and rollback;
- :mod:`._recovery`: completing an interrupted operation, gate enforcement against the UI;
- :mod:`._history`: rules read from the ledger (last known good, recorded champion, gates);
- :mod:`._mirror`: the stage mirror's plan;
- :mod:`._protocols`: the registry and ledger interfaces it needs.
"""

from __future__ import annotations

from mlflow_plugin.controller._controller import Controller
from mlflow_plugin.controller._history import GATE_TAGS, last_known_good
from mlflow_plugin.controller._protocols import IntegrityHook, LedgerLike, LockLike, RegistryLike
from mlflow_plugin.types import (
    ENFORCE_GATES_TAG,
    FALLBACK_ENABLED_TAG,
    FALLBACK_PINNED_TAG,
    GATES_BYPASSED_TAG,
    Outcome,
)

__all__ = [
    "Controller",
    "ENFORCE_GATES_TAG",
    "FALLBACK_ENABLED_TAG",
    "FALLBACK_PINNED_TAG",
    "GATES_BYPASSED_TAG",
    "GATE_TAGS",
    "IntegrityHook",
    "LedgerLike",
    "LockLike",
    "Outcome",
    "RegistryLike",
    "last_known_good",
]
