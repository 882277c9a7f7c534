"""Settings read from the environment, in one place."""

from __future__ import annotations

import getpass
import os

from mlflow_plugin._errors import ConfigError

__all__ = [
    "AUDIT_EXPERIMENT_DEFAULT",
    "TAG_PREFIX",
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


def actor() -> str:
    """Who acts: ``$MLFLOW_PLUGIN_ACTOR``, else the OS user."""
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
