"""``mlflow run . -e main -b mlflow_plugin``: MLflow's local project backend, behind a quick check
that the tracking server answers (docs/ARCHITECTURE.md, "mlflow run and a server that is down").

With the server down, ``mlflow run`` with the local backend waits out MLflow's own HTTP retries
(about four minutes) and ends in a traceback. This backend (entry point group
``mlflow.project_backend``, name ``mlflow_plugin``) asks ``<tracking URI>/health`` first with a
short timeout; when nothing answers it prints one line naming the (redacted) URI and exits 4,
like every ``mlflow-plugin`` command; otherwise it hands the run to MLflow's ``LocalBackend``
unchanged. MLflow contacts the server *before* calling any backend only to resolve an experiment
given by name (``--experiment-name``, ``MLFLOW_EXPERIMENT_NAME``) or ``MLFLOW_EXPERIMENT_ID``; those
paths are outside any backend's reach (set ``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0`` there).
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import urlsplit

from mlflow_plugin.errors import redact
from mlflow_plugin.settings import connect_timeout

__all__ = ["PluginBackend", "check_server", "health_timeout"]

#: Exit status when the tracking server cannot be reached (the CLI's "server unreachable").
EXIT_UNREACHABLE = 4


def health_timeout() -> float:
    """``$MLFLOW_PLUGIN_CONNECT_TIMEOUT`` seconds (default 5): how long to wait for the server."""
    return connect_timeout()


def check_server(tracking_uri: str, timeout: float | None = None) -> str | None:
    """None when ``tracking_uri`` is not an HTTP server or its ``/health`` answered (any HTTP
    status counts: the server is there); else one line saying why it could not be reached."""
    parts = urlsplit(tracking_uri)
    if parts.scheme not in ("http", "https"):
        return None  # a local store (file, sqlite, …): nothing to reach
    import requests

    url = tracking_uri.rstrip("/") + "/health"
    try:
        requests.get(url, timeout=timeout or health_timeout(), allow_redirects=False)
    except requests.RequestException as exc:
        reason = type(exc).__name__
        if isinstance(exc, requests.ConnectionError) and "refused" in str(exc).lower():
            reason = "connection refused"
        elif isinstance(exc, requests.Timeout):
            reason = f"no answer within {timeout or health_timeout():g}s"
        return (
            f"mlflow_plugin: tracking server {redact(tracking_uri)} could not be reached "
            f"({reason}); the run was not started"
        )
    return None


def _local_backend() -> Any:
    from mlflow.projects.backend.local import LocalBackend

    return LocalBackend()


class PluginBackend:
    """The ``mlflow_plugin`` project backend: MLflow's local backend after a server check."""

    def run(
        self,
        project_uri: str,
        entry_point: str,
        params: dict[str, Any],
        version: str | None,
        backend_config: dict[str, Any],
        tracking_uri: str,
        experiment_id: str,
    ) -> Any:
        problem = check_server(tracking_uri)
        if problem is not None:
            print(problem, file=sys.stderr, flush=True)
            raise SystemExit(EXIT_UNREACHABLE)
        return _local_backend().run(
            project_uri, entry_point, params, version, backend_config, tracking_uri, experiment_id
        )
