"""``mlflow-plugin verify-ledger MODEL``: check a model's hash-chained ledger (exit 5 when an
event was deleted, edited, reordered or forked); ``--migrate`` seals events written before the
chain existed into it (docs/ARCHITECTURE.md, "The ledger")."""

from __future__ import annotations

import json

import click

from mlflow_plugin.errors import BadInput, IntegrityError
from mlflow_plugin.mlflow_io._click import json_option

__all__ = ["verify_ledger"]


@click.command("verify-ledger")
@click.argument("model")
@json_option
@click.option(
    "--migrate",
    is_flag=True,
    help="First seal the events written before the hash chain existed into it, oldest first.",
)
@click.option(
    "--dry-run", is_flag=True, help="With --migrate: print what it would do, write nothing."
)
@click.option(
    "--force",
    is_flag=True,
    help="With --migrate: re-link an existing chain behind the older events (rewrites its seq "
    "and hashes).",
)
@click.pass_context
def verify_ledger(
    ctx: click.Context, model: str, as_json: bool, migrate: bool, dry_run: bool, force: bool
) -> None:
    """Check MODEL's ledger chain: exit 5 if an event was deleted, edited, reordered or forked."""
    if (dry_run or force) and not migrate:
        raise BadInput("--dry-run and --force go with --migrate")
    controller = ctx.obj.controller
    migration = None
    if migrate:
        migration = controller.migrate_ledger(model, dry_run=dry_run, force=force)
        if not as_json:
            for line in migration.writes:
                click.echo(("would tag " if dry_run else "tagged ") + line)
            click.echo(migration.summary())
        if dry_run:
            if as_json:
                click.echo(json.dumps({"model": model, "migration": _plan(migration)}, indent=2))
            return
    report = controller.verify_ledger(model)
    if as_json:
        out = {
            "model": model,
            "ok": report.ok,
            "events": report.events,
            "problems": report.problems,
        }
        if migration is not None:
            out["migration"] = _plan(migration)
        click.echo(json.dumps(out, indent=2))
    elif report.ok:
        click.echo(report.summary())
    if not report.ok:
        raise IntegrityError(report.summary())


def _plan(migration: object) -> dict[str, object]:
    return {
        key: getattr(migration, key) for key in ("legacy", "sealed", "relinked", "writes", "done")
    }
