"""``mlflow-plugin retention MODEL [--dry-run]`` and ``retention-restore``."""

from __future__ import annotations

import json

import click

from mlflow_plugin.mlflow_io._click import json_option

__all__ = ["retention", "retention_restore"]


def _human(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


@click.command()
@click.argument("model")
@click.option("--dry-run", is_flag=True, help="Print what would happen; change nothing.")
@click.option(
    "--policy",
    default="default",
    show_default=True,
    help="Policy YAML with a retention section; default: flows/policy.yaml.",
)
@json_option
@click.pass_context
def retention(ctx: click.Context, model: str, dry_run: bool, policy: str, as_json: bool) -> None:
    """Archive, then delete, the versions of MODEL the policy's retention rules select."""
    from mlflow_plugin.policy import load_policy
    from mlflow_plugin.retention import apply_retention

    loaded = load_policy(policy)
    progress = None if as_json else (lambda line: click.echo(line, err=True))
    report = apply_retention(ctx.obj.controller, model, loaded, dry_run=dry_run, progress=progress)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    rows = [("version", "action", "size", "reason")]
    rows += [
        (
            d.version,
            d.action + (" (protected)" if d.protected else ""),
            _human(report.sizes.get(d.version)),
            d.reason,
        )
        for d in report.decisions
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    doomed = report.to_delete
    if dry_run:
        total = sum(report.sizes.get(v, 0) for v in doomed)
        click.echo(
            f"dry run: would archive and delete {len(doomed)} version(s) "
            f"({_human(total)} of artifacts); nothing changed"
        )
    elif report.event is None:
        click.echo("nothing to delete")
    else:
        click.echo(
            f"archived {len(report.archived)} to {loaded.retention.archive_uri}, "
            f"deleted {len(report.deleted)} version(s), reclaimed "
            f"{_human(report.bytes_reclaimed)} (ledger run {report.event.run_id})"
        )


@click.command("retention-restore")
@click.argument("model")
@click.option("--version", "version", required=True, help="The archived version.")
@click.option(
    "--archive-uri",
    default=None,
    help=(
        "Archive location; default: the policy's retention.archive_uri, else the one the "
        "ledger's retention event recorded for VERSION."
    ),
)
@click.option("--policy", default="default", show_default=True, help="Policy YAML.")
@click.option("--into", default=None, help="Register into this model (default: MODEL).")
@click.pass_context
def retention_restore(
    ctx: click.Context,
    model: str,
    version: str,
    archive_uri: str | None,
    policy: str,
    into: str | None,
) -> None:
    """Register a new version of MODEL from the verified archive of VERSION."""
    from mlflow_plugin.errors import ConfigError
    from mlflow_plugin.policy import load_policy
    from mlflow_plugin.retention import recorded_archive_uri, restore_version
    from mlflow_plugin.types import check_model_name, check_version

    check_model_name(model)
    version = check_version(version)
    controller = ctx.obj.controller
    uri = (
        archive_uri
        or load_policy(policy).retention.archive_uri
        or recorded_archive_uri(controller.ledger, model, version)
    )
    if not uri:
        raise ConfigError(
            f"no archive of {model} version {version} is recorded in the ledger; "
            "give --archive-uri or a policy with retention.archive_uri"
        )
    restored = restore_version(controller.registry, uri, model, version, into=into)
    click.echo(f"restored {model} version {version} as {restored.name} version {restored.version}")
