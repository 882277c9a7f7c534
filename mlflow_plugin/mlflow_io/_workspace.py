"""Organisations are MLflow workspaces: the name rules, the active workspace, per-caller scopes.

A process works in one workspace (``--workspace`` / ``MLFLOW_WORKSPACE``, read by MLflow's
client for every request) unless a :class:`Scope` binds a workspace and credentials to one
client: the REST API builds one per request, so two callers (two organisations, two users)
never share either, whatever thread their calls run on. See docs/ARCHITECTURE.md
("Organisations").
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field

from mlflow_plugin.errors import BadInput
from mlflow_plugin.settings import mlflow_workspace

__all__ = [
    "DEFAULT_WORKSPACE",
    "Scope",
    "active_workspace",
    "check_workspace",
    "scoped_key",
    "use_workspace",
]

DEFAULT_WORKSPACE = "default"
# MLflow's own rule (WorkspaceNameValidator: Kubernetes names), kept here so that checking a
# name does not import mlflow; a test holds the two to the same answers.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_RESERVED = frozenset({"workspaces", "api", "ajax-api", "static-files"})


def check_workspace(name: str, *, what: str = "workspace") -> str:
    """``name`` if MLflow accepts it as a workspace name; else BadInput naming the rule."""
    if not isinstance(name, str) or not name:
        raise BadInput(f"{what} must be a non-empty string")
    if name == DEFAULT_WORKSPACE:
        return name
    if not (2 <= len(name) <= 63) or not _NAME.match(name) or name in _RESERVED:
        raise BadInput(
            f"{what} {name!r} is not a workspace name (2-63 lowercase letters, digits and "
            "inner hyphens; not workspaces, api, ajax-api or static-files)"
        )
    return name


def active_workspace() -> str | None:
    """The workspace MLflow's client sends (``X-MLFLOW-WORKSPACE``), None when it sends none."""
    context = sys.modules.get("mlflow.utils.workspace_context")
    if context is None:  # mlflow not loaded: nothing set its context variable, the env rules
        return mlflow_workspace()
    return context.get_request_workspace()  # type: ignore[no-any-return]


def use_workspace(name: str | None) -> None:
    """Make ``name`` the process's workspace (the CLI's ``--workspace``): MLflow's client,
    its threads and the processes it starts (``mlflow run``) all read ``MLFLOW_WORKSPACE``."""
    if name is None:
        return
    os.environ["MLFLOW_WORKSPACE"] = check_workspace(name)


def scoped_key(uri: str, workspace: str | None = None) -> str:
    """A cache key for ``uri`` in a workspace (the active one by default): caches keyed by
    server alone would hand one organisation's ids to another."""
    ws = workspace if workspace is not None else active_workspace()
    return f"{uri}#workspace={ws or ''}"


@dataclass(frozen=True)
class Scope:
    """A workspace and the caller's credentials, bound to the clients built for one caller.

    Args:
        workspace: the workspace every request of the scoped clients names.
        username: HTTP Basic user forwarded to the tracking server (None: no credentials).
        password: its password.
    """

    workspace: str | None
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.workspace is not None:
            check_workspace(self.workspace)
