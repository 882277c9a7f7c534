"""Whether the holder of a lock or a lease is a process that is gone: one answer for the
promotion lock (:mod:`mlflow_plugin.registry.lock`) and the operator's lease
(:mod:`mlflow_plugin.operator._lease`).

A holder is recorded with its host name, its PID and its PID namespace (:data:`PID_NAMESPACE`).
Only a holder on this host *and* in this PID namespace can be judged by its PID: two containers
that share a host name (the same ``hostname:`` in a compose file, host networking) number their
processes separately, so another container's live PID 7 is no process, or another one, here.
A holder that recorded no namespace (an older version) is not judged when this process knows its
own: its lease has to run out.
"""

from __future__ import annotations

import os
import socket

__all__ = ["PID_NAMESPACE", "dead_local_holder"]


def _pid_namespace() -> str:
    """This process's PID namespace (the inode of ``/proc/self/ns/pid``; "" where unknown)."""
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except (OSError, AttributeError):
        return ""
    return "".join(ch for ch in link if ch.isdigit())


#: This process's PID namespace, recorded with every holder it writes ("" where unknown).
PID_NAMESPACE = _pid_namespace()


def dead_local_holder(host: str, pid: str, pid_namespace: str) -> bool:
    """True when the holder ran on this host, in this PID namespace, and its process is gone.

    Args:
        host: the holder's host name (``socket.gethostname()`` where it ran).
        pid: its process id, as recorded (text; anything but digits is never judged).
        pid_namespace: its :data:`PID_NAMESPACE` as recorded ("" when it did not say).

    Returns:
        False whenever it cannot be known (another host or namespace, no permission to
        signal the process): the caller then waits for the holder's lease to run out.
    """
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if pid_namespace != PID_NAMESPACE:  # another container (or an older holder that did not say)
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
