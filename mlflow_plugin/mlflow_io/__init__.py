"""The edge to MLflow: its Python client and a thin REST client for the controller commands,
the workspace (organisation) scope, and the one place foreign errors become ours.

- :mod:`._client`: making a client, tracking-URI checks, mapping MLflow's errors;
- :mod:`._rest`: :class:`RestClient`, MLflow's REST API without ``import mlflow``;
- :mod:`._workspace`: organisations are MLflow workspaces.

Importing the package is cheap: each member's module is imported on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlflow_plugin._internal.lazy import lazy_attributes

if TYPE_CHECKING:
    from mlflow_plugin.mlflow_io._client import (
        as_plugin_error,
        check_tracking_uri,
        client_errors,
        configure_http_defaults,
        encryption_error,
        make_client,
        redact,
        resolve_tracking_uri,
        run_tags,
        wrap_mlflow_errors,
    )
    from mlflow_plugin.mlflow_io._rest import (
        Experiment,
        ModelVersion,
        PagedList,
        RegisteredModel,
        RestClient,
        RestError,
        Run,
        RunTag,
        rest_client_enabled,
    )
    from mlflow_plugin.mlflow_io._workspace import (
        DEFAULT_WORKSPACE,
        Scope,
        active_workspace,
        check_workspace,
        scoped_key,
        use_workspace,
    )

__all__ = [
    "DEFAULT_WORKSPACE",
    "Experiment",
    "ModelVersion",
    "PagedList",
    "RegisteredModel",
    "RestClient",
    "RestError",
    "Run",
    "RunTag",
    "Scope",
    "active_workspace",
    "as_plugin_error",
    "check_tracking_uri",
    "check_workspace",
    "client_errors",
    "configure_http_defaults",
    "encryption_error",
    "make_client",
    "redact",
    "resolve_tracking_uri",
    "rest_client_enabled",
    "run_tags",
    "scoped_key",
    "use_workspace",
    "wrap_mlflow_errors",
]

_LAZY = {
    "as_plugin_error": "_client",
    "check_tracking_uri": "_client",
    "client_errors": "_client",
    "configure_http_defaults": "_client",
    "encryption_error": "_client",
    "make_client": "_client",
    "redact": "_client",
    "resolve_tracking_uri": "_client",
    "run_tags": "_client",
    "wrap_mlflow_errors": "_client",
    "Experiment": "_rest",
    "ModelVersion": "_rest",
    "PagedList": "_rest",
    "RegisteredModel": "_rest",
    "RestClient": "_rest",
    "RestError": "_rest",
    "Run": "_rest",
    "RunTag": "_rest",
    "rest_client_enabled": "_rest",
    "DEFAULT_WORKSPACE": "_workspace",
    "Scope": "_workspace",
    "active_workspace": "_workspace",
    "check_workspace": "_workspace",
    "scoped_key": "_workspace",
    "use_workspace": "_workspace",
}

# PEP 562: the members' modules are imported on first use.
__getattr__, __dir__ = lazy_attributes(
    globals(), {name: f"{__name__}.{module}" for name, module in _LAZY.items()}, __all__
)
