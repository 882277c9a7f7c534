"""``mlflow-plugin serve MODEL``: the champion over HTTP, following the registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from mlflow_plugin._internal.asgi import DEFAULT_MAX_BODY_MB, max_body_option
from mlflow_plugin.serving._inputs import INPUT_MODES
from mlflow_plugin.serving._prediction_log import DEFAULT_URI

__all__ = ["serve"]


def _number(flag: str, default: float, kind: click.ParamType, help: str) -> Callable[[Any], Any]:
    """A numeric setting of ``serve``, bounded by ``kind`` and shown with its default."""
    return click.option(flag, default=default, show_default=True, type=kind, help=help)


@click.command()
@click.argument("model")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5001, show_default=True, type=click.IntRange(0, 65535))
@_number(
    "--poll-interval",
    5.0,
    click.FloatRange(min=0.05),
    "Seconds between two reads of the registry (champion, fallback, rollout: one call); "
    "a rollout's change reaches every replica within it.",
)
@click.option(
    "--prediction-log",
    "log_uri",
    default=DEFAULT_URI,
    show_default=True,
    help="SQLAlchemy URI of the prediction log; 'none' to switch it off.",
)
@_number(
    "--log-queue-size",
    10_000,
    click.IntRange(min=1),
    "Queued predictions before new ones are dropped (and counted).",
)
@click.option(
    "--log-features/--no-log-features",
    default=True,
    show_default=True,
    help="Store each row's input features (the digest is stored either way).",
)
@click.option(
    "--key-column",
    default=None,
    help="Input column stored as entity_key, to join predictions to outcomes (and, without an "
    "X-Entity-Key header, the key that keeps an entity on one side of a canary).",
)
@click.option(
    "--guardrails",
    "guard_mode",
    type=click.Choice(["enforce", "observe", "off"]),
    default="enforce",
    show_default=True,
    help="enforce: a breaking output is answered by the fallback or refused; "
    "observe: only counted and flagged.",
)
@click.option(
    "--probability-columns",
    default=None,
    help="Comma-separated probability columns (default: columns named p_*).",
)
@click.option(
    "--latency-budget-ms",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    help="Flag (and count) answers slower than this.",
)
@_number(
    "--event-interval",
    60.0,
    click.FloatRange(min=0),
    "Seconds between two ledger events of the same kind.",
)
@click.option(
    "--input-guardrails",
    "input_mode",
    type=click.Choice(INPUT_MODES),
    default="enforce",
    show_default=True,
    help="enforce: a value far outside the feature's training range is a 400; observe: "
    "counted and flagged; off: no input checks at all (nulls reach the model).",
)
@_number(
    "--mirror-queue",
    1000,
    click.IntRange(min=1),
    "Blue-green: mirrored requests waiting for the preview before new ones are dropped "
    "(and counted).",
)
@max_body_option(DEFAULT_MAX_BODY_MB)
@_number(
    "--request-timeout",
    60.0,
    click.FloatRange(min=0, min_open=True),
    "Seconds from the first byte to the answer before a 503.",
)
@_number(
    "--max-batch-rows",
    256,
    click.IntRange(min=1),
    "Adaptive batching: stop gathering requests at this many rows.",
)
@_number(
    "--max-batch-wait-ms",
    2.0,
    click.FloatRange(min=0),
    "Adaptive batching: longest wait for more requests; 0 turns batching off.",
)
@click.option(
    "--docs/--no-docs", default=False, show_default=True, help="Serve /docs and /openapi.json."
)
@click.option("--access-log/--no-access-log", default=False, show_default=True)
@click.pass_context
def serve(
    ctx: click.Context,
    model: str,
    host: str,
    port: int,
    poll_interval: float,
    log_uri: str,
    log_queue_size: int,
    log_features: bool,
    key_column: str | None,
    guard_mode: str,
    probability_columns: str | None,
    latency_budget_ms: float | None,
    event_interval: float,
    input_mode: str,
    mirror_queue: int,
    max_body_mb: float,
    request_timeout: float,
    max_batch_rows: int,
    max_batch_wait_ms: float,
    docs: bool,
    access_log: bool,
) -> None:
    """Serve models:/MODEL@champion; swap on promotion, fall back on failure.

    POST /invocations speaks MLflow's scoring protocol. GET /ping, /health, /version, /metrics.
    POST /refresh checks the registry at once (for webhooks).
    """
    import logging

    import uvicorn

    from mlflow_plugin.serving._app import create_app
    from mlflow_plugin.serving._guardrails import Guardrails, parse_columns
    from mlflow_plugin.serving._inputs import InputGuard
    from mlflow_plugin.serving._loader import ChampionModel
    from mlflow_plugin.serving._prediction_log import PredictionLog

    if guard_mode == "off":
        guardrails = Guardrails.off(latency_budget_ms)
    else:
        guardrails = Guardrails(
            probability_columns=parse_columns(probability_columns),
            latency_budget_ms=latency_budget_ms,
            enforce=guard_mode == "enforce",
        )
    # The serve log: one timestamped line per swap, fallback, recovery and load failure.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    serving_log = logging.getLogger("mlflow_plugin.serving")
    serving_log.addHandler(handler)
    serving_log.setLevel(logging.INFO)
    serving_log.propagate = False
    tracking_uri = getattr(ctx.obj, "tracking_uri", None)
    prediction_log = None
    if log_uri.strip().lower() not in ("none", "off", ""):
        prediction_log = PredictionLog(
            log_uri, max_queue=log_queue_size, log_features=log_features, key_column=key_column
        )
    try:
        champion = ChampionModel(
            model,
            tracking_uri=tracking_uri,
            poll_interval=poll_interval,
            guardrails=guardrails,
            prediction_log=prediction_log,
            event_interval=event_interval,
            input_guard=InputGuard(input_mode),
            key_column=key_column,
            mirror_queue=mirror_queue,
        )
    except BaseException:
        if prediction_log is not None:
            prediction_log.close()
        raise
    state = champion.status()
    serving = state["serving"]
    click.echo(
        f"serving {model} version {serving['version']} ({serving['role']}) on http://{host}:{port}"
        f" - polling every {poll_interval:g}s",
        err=True,
    )
    app = create_app(
        champion,
        max_body_mb=max_body_mb,
        request_timeout=request_timeout,
        max_batch_rows=max_batch_rows,
        max_batch_wait_ms=max_batch_wait_ms,
        docs=docs,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=access_log)
