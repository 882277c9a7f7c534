"""``mlflow-plugin sign MODEL --version V`` and ``mlflow-plugin verify MODEL --version V``."""

from __future__ import annotations

import json

import click

from mlflow_plugin.errors import IntegrityError
from mlflow_plugin.mlflow_io._click import json_option

__all__ = ["sign", "verify"]


def _registry(ctx: click.Context):  # type: ignore[no-untyped-def]
    from mlflow_plugin.registry._adapter import Registry

    return Registry(getattr(ctx.obj, "tracking_uri", None))


@click.command()
@click.argument("model")
@click.option("--version", "version", required=True, help="Version to sign.")
@click.option(
    "--force",
    is_flag=True,
    help="Re-sign a version whose files no longer match its digest (needs --reason).",
)
@click.option("--reason", default="", help="Why (recorded in the ledger).")
@click.pass_context
def sign(ctx: click.Context, model: str, version: str, force: bool, reason: str) -> None:
    """Record the SHA-256 digest of VERSION's artifacts (an event under your name)."""
    from mlflow_plugin.integrity._manifest import sign_version
    from mlflow_plugin.ledger._ledger import Ledger
    from mlflow_plugin.types import check_model_name, check_version

    check_model_name(model)
    v = check_version(version, what="--version")
    registry = _registry(ctx)
    manifest, _ = sign_version(registry, Ledger(registry.uri), model, v, force=force, reason=reason)
    click.echo(
        f"signed {model} version {v}: sha256 {manifest.digest} ({len(manifest.files)} files)"
    )


@click.command()
@click.argument("model")
@click.option("--version", "version", required=True, help="Version to verify.")
@json_option
@click.pass_context
def verify(ctx: click.Context, model: str, version: str, as_json: bool) -> None:
    """Check VERSION's artifacts against its recorded digest (exit 5 on a mismatch)."""
    from mlflow_plugin.integrity._manifest import verify_version
    from mlflow_plugin.types import check_model_name, check_version

    check_model_name(model)
    v = check_version(version, what="--version")
    report = verify_version(_registry(ctx), model, v)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "model": model,
                    "version": v,
                    "ok": report.ok,
                    "digest": report.digest,
                    "actual": report.actual,
                    "trusted_on_first_use": report.trusted_on_first_use,
                    "problems": report.problems,
                },
                indent=2,
            )
        )
    if not report.ok:
        raise IntegrityError(f"{model} version {v}: {report.summary()}", report.problems)
    if report.trusted_on_first_use:
        if not as_json:
            click.echo(
                f"{model} version {v}: no digest recorded (sha256 of the files now: "
                f"{report.actual}); run `mlflow-plugin sign` to record it"
            )
        return
    if not as_json:
        click.echo(f"{model} version {v}: {report.summary()}")
