"""``mlflow-plugin``: the command line (click). Honours ``MLFLOW_TRACKING_URI``.

Exit codes: 0 ok, 1 unexpected error, 2 bad input, 3 a gate refused, 4 tracking server
unreachable, 5 an integrity check failed. Errors are one line on stderr; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
from functools import cached_property
from typing import TYPE_CHECKING

import click

from mlflow_plugin.errors import BadInput
from mlflow_plugin.ledger._commands import verify_ledger
from mlflow_plugin.mlflow_io._click import ErrorHandlingGroup, json_option
from mlflow_plugin.types import EVENT_TYPES, STRATEGIES

if TYPE_CHECKING:
    from mlflow_plugin.controller import Controller

__all__ = ["main"]

CSV_COLUMNS = (
    "timestamp",
    "event_type",
    "model_name",
    "version",
    "from_version",
    "actor",
    "message",
)

# Commands that live with their layer, imported only when used (keeps `--help` and the
# controller commands from paying for pandas/lifelines).
_LAZY_COMMANDS = {
    "validate": "mlflow_plugin.training._commands:validate",
    "backtest": "mlflow_plugin.training._commands:backtest",
    "retrain": "mlflow_plugin.training._commands:retrain",
    "serve": "mlflow_plugin.serving._commands:serve",
    "sign": "mlflow_plugin.integrity._commands:sign",
    "verify": "mlflow_plugin.integrity._commands:verify",
    "webhook-receiver": "mlflow_plugin.webhooks._receiver:webhook_receiver",
    "retention": "mlflow_plugin.retention._commands:retention",
    "rollout": "mlflow_plugin.rollouts._commands:rollout",
    "retention-restore": "mlflow_plugin.retention._commands:retention_restore",
    "doctor": "mlflow_plugin.doctor._commands:doctor",
    "outcomes": "mlflow_plugin.operator._commands:outcomes",
    "monitor": "mlflow_plugin.operator._commands:monitor",
    "tick": "mlflow_plugin.operator._commands:tick",
    "operator": "mlflow_plugin.operator._commands:operator",
    "rekey": "mlflow_plugin.encryption._commands:rekey",
    "api": "mlflow_plugin.api._commands:api",
    "policy": "mlflow_plugin.policy._commands:policy",
}


class _Group(ErrorHandlingGroup):
    """A group that imports lazy subcommands on demand and turns our errors into exit codes."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *_LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _LAZY_COMMANDS:
            module, _, attr = _LAZY_COMMANDS[cmd_name].partition(":")
            try:
                return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
            except ImportError:
                return None
        return super().get_command(ctx, cmd_name)


class AppContext:
    """Built once by the group; commands get it with ``@pass_app``."""

    def __init__(self, tracking_uri: str | None) -> None:
        self.tracking_uri = tracking_uri

    @cached_property
    def controller(self) -> Controller:
        from mlflow_plugin.controller import Controller

        # The controller's commands need only the registry and ledger calls: MLflow's REST API
        # without `import mlflow` (1-3 s) on an http(s) server, unless MLFLOW_PLUGIN_REST_CLIENT=off.
        return Controller.from_uri(self.tracking_uri, rest=True)


pass_app = click.make_pass_decorator(AppContext)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    default=None,
    help="Tracking server URI (default: $MLFLOW_TRACKING_URI).",
)
@click.option(
    "--workspace",
    envvar="MLFLOW_WORKSPACE",
    default=None,
    help="Organisation: the MLflow workspace every command works in (default: "
    "$MLFLOW_WORKSPACE, else the server's default workspace).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="mlflow_plugin")
@click.pass_context
def main(ctx: click.Context, tracking_uri: str | None, workspace: str | None, debug: bool) -> None:
    """Retrain, gate, promote and roll back models on open-source MLflow."""
    if workspace:
        _enter_workspace(workspace, tracking_uri)
    ctx.obj = AppContext(tracking_uri)


def _enter_workspace(workspace: str, tracking_uri: str | None) -> None:
    """Check ``--workspace`` (a name MLflow accepts, that exists and that the caller may use:
    else one line, exit 2) and make it the process's workspace."""
    from mlflow_plugin.mlflow_io._client import check_member, resolve_tracking_uri
    from mlflow_plugin.mlflow_io._workspace import check_workspace, use_workspace

    check_workspace(workspace, what="--workspace")
    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):
        check_member(uri, workspace)
    # Process-wide on purpose: MLflow's client, its threads, the serving loader and the
    # processes `mlflow run` starts all read MLFLOW_WORKSPACE.
    use_workspace(workspace)


def _version_arg(value: str | None) -> str | None:
    from mlflow_plugin.types import check_version

    return None if value is None else check_version(value, what="--version")


@main.command()
@click.argument("model")
@click.option(
    "--version", "version", default=None, help="Version to promote (default: challenger)."
)
@click.option("--strategy", type=click.Choice(STRATEGIES), default="all_at_once", show_default=True)
@click.option("--force", is_flag=True, help="Promote even if a gate did not pass (needs --reason).")
@click.option("--reason", default="", help="Why (recorded in the ledger).")
@click.option("--steps", default=None, help="canary: traffic shares in %, e.g. 10,25,50,100.")
@click.option("--interval", default=None, help="canary/blue_green/--watch: analysis every 5m.")
@click.option("--keep-previous", default=None, help="blue_green: keep the old champion 1h.")
@click.option("--watch", default=None, help="all_at_once: watch and roll back for 10m.")
@pass_app
def promote(
    app: AppContext,
    model: str,
    version: str | None,
    strategy: str,
    force: bool,
    reason: str,
    steps: str | None,
    interval: str | None,
    keep_previous: str | None,
    watch: str | None,
) -> None:
    """Make VERSION of MODEL champion if its gates passed (canary and blue_green start a
    rollout that the operator drives; see `mlflow-plugin rollout`)."""
    from mlflow_plugin.rollouts._options import rollout_options

    options = rollout_options(strategy, steps, interval, keep_previous, watch)
    outcome = app.controller.promote(
        model, _version_arg(version), strategy=strategy, force=force, reason=reason, **options
    )
    click.echo(outcome.message)


@main.command()
@click.argument("model")
@click.option("--to-version", default=None, help="Target version (default: last known good).")
@click.option("--reason", required=True, help="Why (required; recorded in the ledger).")
@click.option("--force", is_flag=True, help="Roll back even to a version that failed its gates.")
@pass_app
def rollback(app: AppContext, model: str, to_version: str | None, reason: str, force: bool) -> None:
    """Move MODEL's champion back to the last known good version."""
    outcome = app.controller.rollback(model, reason=reason, to_version=to_version, force=force)
    click.echo(outcome.message)


@main.command()
@click.argument("model")
@json_option
@pass_app
def status(app: AppContext, model: str, as_json: bool) -> None:
    """Show champion, challenger, fallback, stages and the last event of MODEL."""
    state = app.controller.status(model)
    if as_json:
        click.echo(json.dumps(state, indent=2))
        return
    rows = [
        ("model", state["model"]),
        ("champion", state["champion"] or "-"),
        ("challenger", state["challenger"] or "-"),
        (
            "fallback",
            f"{state['fallback'] or '-'} ({'enabled' if state['fallback_enabled'] else 'disabled'})",
        ),
    ]
    rows += [(f"stage {k}", ", ".join(v) or "-") for k, v in state["stages"].items()]
    rollout = state.get("rollout")
    if rollout:
        rows.append(
            (
                "rollout",
                f"{rollout['strategy']} v{rollout['version']} {rollout['phase']} at "
                f"{rollout['weight']:g}% (mlflow-plugin rollout status {model})",
            )
        )
    last = state["last_event"]
    rows.append(
        (
            "last event",
            f"{last['timestamp']} {last['event_type']} v{last['version']} by "
            f"{last['actor']}: {last['message']}"
            if last
            else "-",
        )
    )
    ledger = state["ledger"]
    chain = "intact" if ledger["ok"] else "BROKEN: " + "; ".join(ledger["problems"])
    rows.append(("ledger", f"{ledger['events']} events, chain {chain}"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key.ljust(width)}  {value}")


@main.command()
@click.option("--model", default=None, help="Only this model.")
@click.option("--event", "event_type", type=click.Choice(EVENT_TYPES), default=None)
@click.option("--since", default=None, help="ISO-8601 date/time (UTC if no zone).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@pass_app
def events(
    app: AppContext, model: str | None, event_type: str | None, since: str | None, fmt: str
) -> None:
    """Export the ledger, oldest first."""
    from mlflow_plugin.ledger._ledger import parse_since

    since_ms = parse_since(since)
    rows = [e.as_dict() for e in app.controller.ledger.events(model, event_type, since_ms)]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow([row[c] for c in CSV_COLUMNS])
        click.echo(buf.getvalue(), nl=False)
    else:
        _table(CSV_COLUMNS, [[str(r[c]) for c in CSV_COLUMNS] for r in rows])


def _table(header: tuple[str, ...], rows: list[list[str]]) -> None:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@main.command("log-event")
@click.option("--event", "event_type", required=True, help=f"One of: {', '.join(EVENT_TYPES)}.")
@click.option("--model", required=True)
@click.option("--version", required=True)
@click.option("--message", required=True)
@pass_app
def log_event(app: AppContext, event_type: str, model: str, version: str, message: str) -> None:
    """Add a manual entry to the ledger."""
    event = app.controller.log_event(event_type, model, version, message)
    click.echo(
        f"recorded {event.event_type} event for {model} version {event.version} ({event.run_id})"
    )


@main.group()
def fallback() -> None:
    """Which version serves when the champion fails."""


@fallback.command("enable")
@click.argument("model")
@click.option("--version", default=None, help="Pin this version (default: previous champion).")
@pass_app
def fallback_enable(app: AppContext, model: str, version: str | None) -> None:
    """Enable the fallback for MODEL."""
    click.echo(app.controller.fallback_enable(model, _version_arg(version)).message)


@fallback.command("disable")
@click.argument("model")
@pass_app
def fallback_disable(app: AppContext, model: str) -> None:
    """Disable the fallback for MODEL."""
    click.echo(app.controller.fallback_disable(model).message)


@fallback.command("status")
@click.argument("model")
@pass_app
def fallback_status(app: AppContext, model: str) -> None:
    """Show the fallback configuration of MODEL as JSON."""
    click.echo(json.dumps(app.controller.fallback_status(model), indent=2))


@main.command()
@click.argument("model", required=False)
@click.option(
    "--enforce",
    is_flag=True,
    default=False,
    help="Revert a champion set outside the controller whose gates did not pass "
    "(default: the model tag mlflow_plugin.enforce_gates).",
)
@pass_app
def reconcile(app: AppContext, model: str | None, enforce: bool | None) -> None:
    """Record changes made outside the controller and repair the stage mirror."""
    from mlflow_plugin.controller import GATES_BYPASSED_TAG

    names = [model] if model else _managed_models(app)
    if not names:
        raise BadInput("no models to reconcile")
    for name in names:
        written = app.controller.reconcile(name, enforce=enforce or None)
        if not written:
            click.echo(f"{name}: in sync")
        for event in written:
            click.echo(f"{name}: {event.event_type} by {event.actor}: {event.message}")
            if event.actor == "registry-ui" and GATES_BYPASSED_TAG in event.extra:
                click.echo(
                    f"warning: {name} version {event.version} was made champion in the registry "
                    f"UI without passing its gates ({event.extra[GATES_BYPASSED_TAG]})",
                    err=True,
                )
        chain = app.controller.ledger.verify_chain(name)
        if not chain.ok:
            click.echo(f"warning: {chain.summary()} (run verify-ledger {name})", err=True)


def _managed_models(app: AppContext) -> list[str]:
    """Models with a champion alias or ledger events (what the controller manages)."""
    names = {e.model for e in app.controller.ledger.events()}
    return sorted(n for n in names if n)


main.add_command(verify_ledger)
