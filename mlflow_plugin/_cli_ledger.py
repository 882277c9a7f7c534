"""``mlflow-plugin verify-ledger MODEL``: check a model's hash-chained ledger (exit 5 when an
event was deleted, edited, reordered or forked)."""

from __future__ import annotations

import json

import click

from mlflow_plugin._errors import IntegrityError

__all__ = ["verify_ledger"]


@click.command("verify-ledger")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def verify_ledger(ctx: click.Context, model: str, as_json: bool) -> None:
    """Check MODEL's ledger chain: exit 5 if an event was deleted, edited, reordered or forked."""
    report = ctx.obj.controller.verify_ledger(model)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "model": model,
                    "ok": report.ok,
                    "events": report.events,
                    "problems": report.problems,
                },
                indent=2,
            )
        )
    elif report.ok:
        click.echo(report.summary())
    if not report.ok:
        raise IntegrityError(report.summary())
