"""Which policy file a command uses: the one named, else ``flows/policy.yaml`` in the working
directory (the MLproject's), else the built-in defaults (the same thresholds)."""

from __future__ import annotations

import os
from pathlib import Path

from mlflow_plugin.policy._policy import Policy

__all__ = ["DEFAULT_POLICY", "load_policy"]

DEFAULT_POLICY = os.path.join("flows", "policy.yaml")


def load_policy(path: str | None) -> Policy:
    """The gate policy: ``path``; for blank or ``default``, ``flows/policy.yaml`` when it exists,
    else the built-in defaults (the same thresholds).

    Raises:
        ConfigError: the file is missing (when named explicitly), unreadable, or invalid.
    """
    if path is not None and path.strip() and path.strip().lower() != "default":
        return Policy.from_yaml(path)
    if Path(DEFAULT_POLICY).is_file():
        return Policy.from_yaml(DEFAULT_POLICY)
    return Policy.default()
