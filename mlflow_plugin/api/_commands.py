"""The ``api`` command: serve the REST API with uvicorn."""

from __future__ import annotations

import click

from mlflow_plugin._internal.asgi import DEFAULT_MAX_BODY_MB, max_body_option
from mlflow_plugin.errors import redact

__all__ = ["api"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@max_body_option(DEFAULT_MAX_BODY_MB)
@click.option("--no-docs", is_flag=True, help="Do not serve /docs and /openapi.json.")
@click.option(
    "--archive-uri",
    "archive_uris",
    multiple=True,
    metavar="[ORG=]URI",
    help=(
        "Where retention archives versions before deleting them: URI for every organisation, "
        "ORG=URI for one (repeatable; archives go under URI/ORG/MODEL/vN). Default: "
        "$MLFLOW_PLUGIN_API_ARCHIVE_URIS; none: retention through the API cannot delete."
    ),
)
@click.pass_context
def api(
    ctx: click.Context,
    host: str,
    port: int,
    max_body_mb: float,
    no_docs: bool,
    archive_uris: tuple[str, ...],
) -> None:
    """Serve the REST API (organisations = MLflow workspaces; callers send their MLflow
    credentials, which are forwarded, so MLflow's permissions decide)."""
    import os

    import uvicorn

    from mlflow_plugin.api import ArchiveLocations, create_app
    from mlflow_plugin.errors import BadInput
    from mlflow_plugin.mlflow_io._client import resolve_tracking_uri
    from mlflow_plugin.settings import api_archive_uris

    uri = resolve_tracking_uri(ctx.find_root().params.get("tracking_uri"))
    if not uri.startswith(("http://", "https://")):
        raise BadInput(f"api needs an http(s) tracking server, not {uri!r}")
    archives = ArchiveLocations.parse(archive_uris or api_archive_uris())
    # Each request names its organisation; a process-wide workspace would be a default that a
    # request could silently fall back to.
    os.environ.pop("MLFLOW_WORKSPACE", None)
    # Callers' requests carry their own credentials (scoped clients never read these); the
    # process's own, if any, serve only retention's archive writes (docs/ARCHITECTURE.md).
    app = create_app(uri, max_body_mb=max_body_mb, docs=not no_docs, archives=archives)
    click.echo(
        f"mlflow-plugin api on http://{host}:{port} for {redact(uri)} (docs: /docs)", err=True
    )
    uvicorn.run(app, host=host, port=port, log_level="info")
