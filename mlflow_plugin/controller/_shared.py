"""What the controller's operation modules share (``_controller``, ``_promotion``,
``_rollback``, ``_recovery``, the rollouts): the result type, the crash tests' failpoint and the
model tags the controller keeps.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

from mlflow_plugin._settings import TAG_PREFIX
from mlflow_plugin._types import Event

__all__ = [
    "ENFORCE_GATES_TAG",
    "FALLBACK_ENABLED_TAG",
    "FALLBACK_PINNED_TAG",
    "GATES_BYPASSED_TAG",
    "Outcome",
    "failpoint",
]

FALLBACK_ENABLED_TAG = TAG_PREFIX + "fallback_enabled"
FALLBACK_PINNED_TAG = TAG_PREFIX + "fallback_pinned"
ENFORCE_GATES_TAG = TAG_PREFIX + "enforce_gates"
GATES_BYPASSED_TAG = TAG_PREFIX + "gates_bypassed"


def failpoint(name: str) -> None:
    """Crash tests only: ``$MLFLOW_PLUGIN_FAILPOINT`` = ``NAME`` dies here (kill -9's exit
    status), ``NAME:stop`` stops the process here (SIGSTOP) until it is continued."""
    wanted = os.environ.get("MLFLOW_PLUGIN_FAILPOINT", "")
    point, _, action = wanted.partition(":")
    if point != name:
        return
    if action == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    else:
        os._exit(137)


@dataclass(frozen=True)
class Outcome:
    """What a controller call did: the event it wrote (None when nothing had to change)."""

    event: Event | None
    message: str
