"""``mlflow-plugin serve MODEL``: the champion over HTTP, following the registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from mlflow_plugin._internal.asgi import max_body_option
from mlflow_plugin.serving._config import ServeConfig
from mlflow_plugin.serving._inputs import INPUT_MODES

__all__ = ["serve"]

_DEFAULTS = ServeConfig()  # every option's default is ServeConfig's (one home)


def _number(
    flag: str, default: float | None, kind: click.ParamType, help: str
) -> Callable[[Any], Any]:
    """A numeric setting of ``serve``, bounded by ``kind`` and shown with its default."""
    return click.option(flag, default=default, show_default=True, type=kind, help=help)


@click.command()
@click.argument("model")
@click.option("--host", default=_DEFAULTS.host, show_default=True, help="Address to listen on.")
@click.option("--port", default=_DEFAULTS.port, show_default=True, type=click.IntRange(0, 65535))
@_number(
    "--poll-interval",
    _DEFAULTS.poll_interval,
    click.FloatRange(min=0.05),
    "Seconds between two reads of the registry (champion, fallback, rollout: one call); "
    "a rollout's change reaches every replica within it.",
)
@click.option(
    "--prediction-log",
    "log_uri",
    default=_DEFAULTS.log_uri,
    show_default=True,
    help="SQLAlchemy URI of the prediction log; 'none' to switch it off.",
)
@_number(
    "--log-queue-size",
    _DEFAULTS.log_queue_size,
    click.IntRange(min=1),
    "Queued predictions before new ones are dropped (and counted).",
)
@click.option(
    "--log-features/--no-log-features",
    default=_DEFAULTS.log_features,
    show_default=True,
    help="Store each row's input features (the digest is stored either way).",
)
@click.option(
    "--key-column",
    default=_DEFAULTS.key_column,
    help="Input column stored as entity_key, to join predictions to outcomes (and, without an "
    "X-Entity-Key header, the key that keeps an entity on one side of a canary).",
)
@click.option(
    "--guardrails",
    "guard_mode",
    type=click.Choice(["enforce", "observe", "off"]),
    default=_DEFAULTS.guard_mode,
    show_default=True,
    help="enforce: a breaking output is answered by the fallback or refused; "
    "observe: only counted and flagged.",
)
@click.option(
    "--probability-columns",
    default=_DEFAULTS.probability_columns,
    help="Comma-separated probability columns (default: columns named p_*).",
)
@click.option(
    "--latency-budget-ms",
    default=_DEFAULTS.latency_budget_ms,
    type=click.FloatRange(min=0, min_open=True),
    help="Flag (and count) answers slower than this.",
)
@_number(
    "--event-interval",
    _DEFAULTS.event_interval,
    click.FloatRange(min=0),
    "Seconds between two ledger events of the same kind.",
)
@click.option(
    "--input-guardrails",
    "input_mode",
    type=click.Choice(INPUT_MODES),
    default=_DEFAULTS.input_mode,
    show_default=True,
    help="enforce: a value far outside the feature's training range is a 400; observe: "
    "counted and flagged; off: no input checks at all (nulls reach the model).",
)
@_number(
    "--mirror-queue",
    _DEFAULTS.mirror_queue,
    click.IntRange(min=1),
    "Blue-green: mirrored requests waiting for the preview before new ones are dropped "
    "(and counted).",
)
@max_body_option(_DEFAULTS.max_body_mb)
@_number(
    "--request-timeout",
    _DEFAULTS.request_timeout,
    click.FloatRange(min=0, min_open=True),
    "Seconds from the first byte to the answer before a 503.",
)
@_number(
    "--max-batch-rows",
    _DEFAULTS.max_batch_rows,
    click.IntRange(min=1),
    "Adaptive batching: stop gathering requests at this many rows.",
)
@_number(
    "--max-batch-wait-ms",
    _DEFAULTS.max_batch_wait_ms,
    click.FloatRange(min=0),
    "Adaptive batching: longest wait for more requests; 0 turns batching off.",
)
@click.option(
    "--docs/--no-docs",
    default=_DEFAULTS.docs,
    show_default=True,
    help="Serve /docs and /openapi.json.",
)
@click.option("--access-log/--no-access-log", default=_DEFAULTS.access_log, show_default=True)
@click.pass_context
def serve(ctx: click.Context, model: str, **options: Any) -> None:
    """Serve models:/MODEL@champion; swap on promotion, fall back on failure.

    POST /invocations speaks MLflow's scoring protocol. GET /ping, /health, /version, /metrics.
    POST /refresh checks the registry at once (for webhooks).
    """
    import logging

    import uvicorn

    from mlflow_plugin.serving._app import create_app
    from mlflow_plugin.serving._loader import ChampionModel

    config = ServeConfig(**options)
    # The serve log: one timestamped line per swap, fallback, recovery and load failure.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    serving_log = logging.getLogger("mlflow_plugin.serving")
    serving_log.addHandler(handler)
    serving_log.setLevel(logging.INFO)
    serving_log.propagate = False
    tracking_uri = getattr(ctx.obj, "tracking_uri", None)
    champion = ChampionModel.from_config(model, config, tracking_uri=tracking_uri)
    serving = champion.status()["serving"]
    click.echo(
        f"serving {model} version {serving['version']} ({serving['role']}) on "
        f"http://{config.host}:{config.port} - polling every {config.poll_interval:g}s",
        err=True,
    )
    app = create_app(champion, config)
    uvicorn.run(
        app, host=config.host, port=config.port, log_level="warning", access_log=config.access_log
    )
