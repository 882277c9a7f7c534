"""Who is asking: one request's organisation (an MLflow workspace) and HTTP Basic credentials,
and the controller that acts for them (see docs/ARCHITECTURE.md, "Organisations")."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, cast

from fastapi import Depends, Request
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from mlflow_plugin.errors import MlflowPluginError
from mlflow_plugin.mlflow_io._workspace import Scope, check_workspace

if TYPE_CHECKING:
    from mlflow_plugin.controller import Controller
    from mlflow_plugin.registry._adapter import Registry

__all__ = ["ANONYMOUS", "Caller", "Conflict", "caller"]

ANONYMOUS = "anonymous"


class Conflict(MlflowPluginError):
    """The request is valid but the model's state refuses it (HTTP 409); nothing was written."""

    exit_code = 2


@dataclass
class Caller:
    """One request's organisation and credentials; builds the controller that acts for it."""

    tracking_uri: str
    workspace: str
    username: str | None
    password: str | None
    #: The organisation's archive location (server configuration; None: none configured).
    archive_uri: str | None = None

    @property
    def actor(self) -> str:
        return self.username or ANONYMOUS

    @cached_property
    def controller(self) -> Controller:
        from mlflow_plugin.controller import Controller

        scope = Scope(self.workspace, self.username, self.password)
        return Controller.from_uri(self.tracking_uri, scope=scope)

    @property
    def registry(self) -> Registry:
        """The controller's registry: the real adapter (``from_uri`` builds one)."""
        return cast("Registry", self.controller.registry)


_basic = HTTPBasic(auto_error=False, description="The caller's MLflow username and password.")


def caller(
    request: Request,
    organizationId: str,
    credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
) -> Caller:
    """The request's caller; a path segment that is not a workspace name is a 400 before
    anything is looked up (``..``, encoded or unicode look-alikes, quotes)."""
    from mlflow_plugin.mlflow_io._client import check_member

    workspace = check_workspace(organizationId, what="organizationId")
    who = Caller(
        request.app.state.tracking_uri,
        workspace,
        credentials.username if credentials else None,
        credentials.password if credentials else None,
        request.app.state.archives.for_org(workspace),
    )
    # Searches answer a non-member with empty pages: refuse outsiders on every route.
    check_member(who.tracking_uri, workspace, Scope(workspace, who.username, who.password))
    return who
