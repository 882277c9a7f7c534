"""Settings read from the environment, in one place."""

from __future__ import annotations

import contextlib
import contextvars
import getpass
import os
from collections.abc import Iterator

from mlflow_plugin.errors import ConfigError

__all__ = [
    "AUDIT_EXPERIMENT_DEFAULT",
    "TAG_PREFIX",
    "acting_as",
    "actor",
    "audit_experiment",
    "env_flag",
    "stage_mirror_enabled",
]

TAG_PREFIX = "mlflow_plugin."
AUDIT_EXPERIMENT_DEFAULT = "mlflow_plugin-deployments"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_flag(name: str, default: bool) -> bool:
    """Read a boolean environment variable; anything but true/false spellings is a ConfigError."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true or false)")


#: The caller a server acts for (the REST API's authenticated user), per request.
_ACTOR: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mlflow_plugin_actor", default=None
)


@contextlib.contextmanager
def acting_as(who: str) -> Iterator[None]:
    """Within the block (this thread, and the calls it hands to
    :func:`mlflow_plugin._internal.concurrency.parallel`), :func:`actor` is ``who``."""
    token = _ACTOR.set(who)
    try:
        yield
    finally:
        _ACTOR.reset(token)


def actor() -> str:
    """Who acts: the caller bound by :func:`acting_as`, else ``$MLFLOW_PLUGIN_ACTOR``, else the
    OS user."""
    bound = _ACTOR.get()
    if bound:
        return bound
    explicit = os.environ.get("MLFLOW_PLUGIN_ACTOR", "").strip()
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def audit_experiment() -> str:
    return os.environ.get("MLFLOW_PLUGIN_AUDIT_EXPERIMENT", "").strip() or AUDIT_EXPERIMENT_DEFAULT


def stage_mirror_enabled() -> bool:
    return env_flag("MLFLOW_PLUGIN_STAGE_MIRROR", True)
