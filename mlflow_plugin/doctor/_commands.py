"""``mlflow-plugin doctor [MODEL] [--json]``: exit 0 when every check passes, 1 naming the
failures otherwise."""

from __future__ import annotations

import click

from mlflow_plugin.mlflow_io._click import json_option
from mlflow_plugin.settings import doctor_min_free_gb

__all__ = ["doctor"]

_MARK = {"pass": "ok", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


@click.command()
@click.argument("model", required=False)
@json_option
@click.option(
    "--policy",
    default="default",
    show_default=True,
    help="Policy YAML to validate; default: flows/policy.yaml, else built-in.",
)
@click.option(
    "--min-free-gb",
    type=click.FloatRange(min=0),
    show_default=True,
    default=doctor_min_free_gb,
    help="Least free disk space per checked path ($MLFLOW_PLUGIN_DOCTOR_MIN_FREE_GB).",
)
@click.option(
    "--path",
    "paths",
    multiple=True,
    type=click.Path(),
    help="Check free space here (repeatable; default: cwd, temp, archive, prediction log).",
)
@click.option(
    "--backend-store-uri",
    envvar="MLFLOW_BACKEND_STORE_URI",
    default=None,
    help="The server's database, to compare its schema with MLflow's alembic head.",
)
@click.option(
    "--prediction-log",
    default="sqlite:///predictions.db",
    show_default=True,
    help="SQLAlchemy URI of the serving prediction log.",
)
@click.option(
    "--heartbeat-max-age",
    type=click.FloatRange(min=0),
    default=900.0,
    show_default=True,
    help="Seconds after which the operator's heartbeat is stale.",
)
@click.option(
    "--allow-non-sql", is_flag=True, help="A file-store backend is a warning, not a failure."
)
@click.pass_context
def doctor(
    ctx: click.Context,
    model: str | None,
    as_json: bool,
    policy: str,
    min_free_gb: float,
    paths: tuple[str, ...],
    backend_store_uri: str | None,
    prediction_log: str,
    heartbeat_max_age: float,
    allow_non_sql: bool,
) -> None:
    """Check that the tracking server, its stores and each managed model are production-ready."""
    from mlflow_plugin.doctor._checks import DoctorOptions, results_json, run_checks
    from mlflow_plugin.mlflow_io._client import resolve_tracking_uri
    from mlflow_plugin.types import check_model_name

    options = DoctorOptions(
        tracking_uri=resolve_tracking_uri(ctx.obj.tracking_uri),
        models=[check_model_name(model)] if model else None,
        policy=policy,
        min_free_bytes=int(min_free_gb * 1024**3),
        paths=paths,
        backend_store_uri=backend_store_uri,
        prediction_log=prediction_log,
        heartbeat_max_age_s=heartbeat_max_age,
        require_sql=not allow_non_sql,
    )
    results = list(run_checks(options))
    failed = [r.check for r in results if r.status == "fail"]
    if as_json:
        click.echo(results_json(results))
    else:
        rows = [("check", "status", "detail", "how to fix")]
        rows += [(r.check, _MARK[r.status], r.detail, r.fix) for r in results]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            cells = [c.ljust(w) for c, w in zip(row[:3], widths, strict=True)] + [row[3]]
            click.echo("  ".join(cells).rstrip())
    if failed:
        click.echo(f"doctor: {len(failed)} check(s) failed: {', '.join(failed)}", err=True)
        ctx.exit(1)
    if not as_json:
        others = sum(r.status != "pass" for r in results)
        click.echo(
            f"doctor: all checks passed ({len(results) - others} ok"
            + (f", {others} warned or skipped)" if others else ")")
        )
