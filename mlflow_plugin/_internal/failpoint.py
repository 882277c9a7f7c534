"""Crash tests' failpoints: named places where a test can kill or stop the process.

``$MLFLOW_PLUGIN_FAILPOINT`` = ``NAME`` dies at ``failpoint("NAME")`` (kill -9's exit status),
``NAME:stop`` stops the process there (SIGSTOP) until it is continued. Unset, a failpoint is one
dictionary lookup.
"""

from __future__ import annotations

import os
import signal

__all__ = ["failpoint"]


def failpoint(name: str) -> None:
    """Die (or stop) here when ``$MLFLOW_PLUGIN_FAILPOINT`` names this point."""
    wanted = os.environ.get("MLFLOW_PLUGIN_FAILPOINT", "")
    point, _, action = wanted.partition(":")
    if point != name:
        return
    if action == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    else:
        os._exit(137)
