"""``mlflow-plugin outcomes ingest``, ``monitor``, ``tick`` and ``operator``."""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from mlflow_plugin.errors import BadInput, RegistryUnavailable
from mlflow_plugin.mlflow_io._click import given_tracking_uri, json_option

__all__ = ["monitor", "operator", "outcomes", "tick"]

_PREDICTIONS = click.option(
    "--predictions",
    "predictions_uri",
    default="sqlite:///predictions.db",
    show_default=True,
    envvar="MLFLOW_PLUGIN_PREDICTIONS",
    help="SQLAlchemy URI of the prediction log (outcomes go beside it).",
)
_WINDOW = click.option(
    "--window", default="7d", show_default=True, help="Window length: 7d, 12h, 30m ..."
)
_POLICY = click.option(
    "--policy", default=None, help="Policy file (default flows/policy.yaml if present)."
)
_NOW = click.option(
    "--now", default=None, hidden=True, help="Pretend it is this ISO time (replays, tests)."
)


def _window(text: str) -> timedelta:
    from mlflow_plugin.policy import parse_duration

    try:
        return timedelta(seconds=parse_duration(text))
    except ValueError as exc:
        raise BadInput(f"--window: {exc}") from None


def _clock(now: str | None) -> Any:
    from mlflow_plugin.ledger._ledger import parse_since
    from mlflow_plugin.operator._tick import utc_now

    if now is None:
        return utc_now
    fixed = datetime.fromtimestamp(parse_since(now) / 1000, tz=UTC)  # type: ignore[operator]
    return lambda: fixed


@click.group()
def outcomes() -> None:
    """Actual outcomes, matched to logged predictions by entity key."""


@outcomes.command("ingest")
@click.argument("model")
@click.option("--data", required=True, help="CSV or Parquet path/URI.")
@click.option(
    "--entity-col", required=True, help="Column matching the prediction log's entity_key."
)
@click.option("--duration-col", default=None, help="Survival: time to event or last follow-up.")
@click.option("--event-col", default=None, help="Survival: 1 if the event was observed.")
@click.option("--label-col", default=None, help="Classifier: the 0/1 outcome.")
@click.option(
    "--observed-col", default=None, help="When each outcome was known (default: not recorded)."
)
@_PREDICTIONS
def ingest(
    model: str,
    data: str,
    entity_col: str,
    duration_col: str | None,
    event_col: str | None,
    label_col: str | None,
    observed_col: str | None,
    predictions_uri: str,
) -> None:
    """Upsert outcomes of MODEL from DATA (the same file twice changes nothing)."""
    from mlflow_plugin.monitoring import OutcomeStore
    from mlflow_plugin.training._data import load_data
    from mlflow_plugin.types import check_model_name

    check_model_name(model)
    frame = load_data(data).frame
    store = OutcomeStore(predictions_uri)
    try:
        result = store.ingest(
            model,
            frame,
            entity_col=entity_col,
            duration_col=duration_col,
            event_col=event_col,
            label_col=label_col,
            observed_col=observed_col,
        )
    finally:
        store.close()
    click.echo(f"{model}: outcomes {result}")


@click.command()
@click.argument("model")
@_PREDICTIONS
@_WINDOW
@_POLICY
@click.option("--version", default=None, help="Version to monitor (default: the champion).")
@json_option
@_NOW
def monitor(
    model: str,
    predictions_uri: str,
    window: str,
    policy: str | None,
    version: str | None,
    as_json: bool,
    now: str | None,
) -> None:
    """Realised performance of MODEL's champion per window, against its frozen baseline."""
    from mlflow_plugin.controller import Controller
    from mlflow_plugin.monitoring import MonitoringRuns, OutcomeStore, monitor_version
    from mlflow_plugin.operator._tick import Operator
    from mlflow_plugin.policy import load_policy

    controller = Controller.from_uri(given_tracking_uri())
    info = controller.registry.get_model(model)
    wanted = version or info.aliases.get("champion")
    if not wanted:
        raise BadInput(f"{model!r} has no champion; pass --version")
    target = controller.registry.get_version(model, wanted)
    runs = MonitoringRuns(controller.registry.uri)
    store = OutcomeStore(predictions_uri)
    loaded = load_policy(policy)
    op = Operator(controller, loaded, store=store, runs=runs, window=_window(window))
    try:
        report = monitor_version(
            store,
            runs,
            target,
            promoted_ms=op._promoted_ms(model, target),
            now=_clock(now)(),
            length=op.window,
        )
        rules = [
            (n, r)
            for n, r in (("triggers", loaded.triggers), ("rollback_if", loaded.rollback_if))
            if r
        ]
        if report.windows:
            runs.log_plot(
                report.run_id,
                f"{model} v{target.version}: realised performance per window",
                report.windows,
                report.baseline,
                rules,
            )
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    click.echo(f"{model} version {target.version}: monitoring run {report.run_id}")
    click.echo(
        "baseline  "
        + (", ".join(f"{k}={v:.4f}" for k, v in sorted(report.baseline.items())) or "-")
    )
    header = (
        "window",
        "start",
        "rows",
        "matured",
        "brier",
        "c_index",
        "precision",
        "recall",
        "errors",
    )
    rows = [
        [
            str(w.index) + ("" if w.complete else "*"),
            w.start.strftime("%Y-%m-%d %H:%M"),
            str(w.counts["rows"]),
            str(w.counts["matured"]),
            *(_fmt(w.metrics.get(m)) for m in ("brier", "c_index", "precision", "recall")),
            f"{w.rates['error_rate']:.1%}",
        ]
        for w in report.windows
    ]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    if any(not w.complete for w in report.windows):
        click.echo("* window still open")


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"


@dataclass(frozen=True)
class _Loop:
    """What ``tick`` and ``operator`` are both given (see :func:`_loop_options`)."""

    models: tuple[str, ...]
    policy: str | None
    predictions_uri: str
    window: str
    project: str
    backend: str
    backend_config: str | None


def _build(loop: _Loop, wait: bool, now: str | None) -> Any:
    from mlflow_plugin.controller import Controller
    from mlflow_plugin.monitoring import MonitoringRuns, OutcomeStore
    from mlflow_plugin.operator._retrain import Retrainer
    from mlflow_plugin.operator._tick import Operator
    from mlflow_plugin.policy import load_policy

    loaded = load_policy(loop.policy)
    length = _window(loop.window)  # bad input first, before the server is asked anything
    controller = Controller.from_uri(given_tracking_uri())
    _probe(controller)
    retrainer = Retrainer(
        controller.registry.uri,
        project_uri=loop.project,
        backend=loop.backend,
        backend_config=loop.backend_config,
        synchronous=wait,
    )
    return Operator(
        controller,
        loaded,
        store=OutcomeStore(loop.predictions_uri),
        runs=MonitoringRuns(controller.registry.uri),
        retrainer=retrainer,
        window=length,
        models=list(loop.models) or None,
        clock=_clock(now),
        policy_path=loop.policy,
    )


def _probe(controller: Any) -> None:
    """Fail fast (exit 4) when the tracking server is down, before any work."""
    controller.ledger.experiment_id()


def _loop_options(fn: Any) -> Any:
    """The options of :class:`_Loop`, handed to the command as its first argument ``loop``."""

    @functools.wraps(fn)
    def command(**kwargs: Any) -> Any:
        loop = _Loop(**{name: kwargs.pop(name) for name in _Loop.__dataclass_fields__})
        return fn(loop, **kwargs)

    for option in reversed(
        [
            click.option(
                "--model",
                "models",
                multiple=True,
                help="Manage this model (repeatable; default: every model in the ledger).",
            ),
            _POLICY,
            _PREDICTIONS,
            _WINDOW,
            click.option(
                "--project",
                default=".",
                show_default=True,
                help="MLflow project of the main entry point.",
            ),
            click.option(
                "--backend",
                type=click.Choice(["local", "kubernetes"]),
                default="local",
                show_default=True,
            ),
            click.option(
                "--backend-config",
                default=None,
                help="JSON file: MLflow's backend config (kubernetes).",
            ),
        ]
    ):
        command = option(command)
    return command


@click.command()
@_loop_options
@click.option(
    "--wait/--no-wait", default=True, show_default=True, help="Wait for a retraining run to end."
)
@json_option
@_NOW
def tick(loop: _Loop, wait: bool, as_json: bool, now: str | None) -> None:
    """One pass of the operator (for cron, systemd timers or a Kubernetes CronJob)."""
    from mlflow_plugin.operator._lease import OperatorLease

    _service_logging()
    op = _build(loop, wait, now)
    names = op.managed_models()
    with OperatorLease(op.controller.registry, names, ttl=6 * 3600.0, kind="tick"):
        done = op.tick()
        op.alerter.flush(timeout=30.0)
    if as_json:
        click.echo(json.dumps(done, indent=2))
        return
    for model, actions in done.items():
        click.echo(f"{model}: " + ("nothing to do" if not actions else actions[0]))
        for line in actions[1:]:
            click.echo(f"  {line}")
    if not done:
        click.echo("no models to manage")


@click.command()
@_loop_options
@click.option(
    "--interval",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=1.0),
    help="Seconds between two passes.",
)
def operator(loop: _Loop, interval: float) -> None:
    """Run the closed loop until stopped: one pass every --interval seconds (one process)."""
    from mlflow_plugin.operator._lease import OperatorLease

    _service_logging()
    stopping = _stop_on_signals()
    log = logging.getLogger("mlflow_plugin.operator")
    op = _build(loop, False, None)
    names = op.managed_models()
    lease = OperatorLease(op.controller.registry, names, ttl=max(3 * interval, 300.0)).acquire()
    log.info(
        "operator %s managing %s, a pass every %gs",
        lease.owner,
        ", ".join(names) or "no models",
        interval,
    )
    try:
        while not stopping.is_set():
            started = time.monotonic()
            try:
                op.tick()
                lease.renew()
            except RegistryUnavailable as exc:  # a service keeps going; the next pass retries
                log.warning("pass skipped: %s", exc)
            stopping.wait(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        pass
    finally:
        log.info("operator stopping")
        op.alerter.flush(timeout=10.0)
        lease.release()


def _stop_on_signals() -> threading.Event:
    """SIGTERM (what service managers send) and SIGINT both end the loop the way Ctrl-C does:
    the pass in flight is interrupted, queued alerts get a last chance, the lease is released.

    Installed explicitly: a process started in the background by a non-interactive shell, or
    by a supervisor that ignores SIGINT, inherits ``SIG_IGN`` for it, and Python then leaves
    it ignored, so the operator could only be stopped by SIGKILL (leaving its lease behind).
    The handler also sets the returned event, which the loop checks after every pass: the
    ``KeyboardInterrupt`` it raises lands wherever the main thread is, and where that is a
    weakref callback or a ``__del__`` Python prints and drops it ("Exception ignored in"), so
    the interrupt alone could be lost (seen under load). A second signal while stopping is
    ignored: the alert flush (at most 10 s) and the lease release still run.
    """
    import signal

    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        if stopping.is_set():  # a second signal must not cut the alert flush or lease release
            return
        stopping.set()
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    return stopping


def _service_logging() -> None:
    """A timestamped line per state change (UTC), like a service."""
    logger = logging.getLogger("mlflow_plugin.operator")
    if not logger.handlers:
        handler = logging.StreamHandler()
        formatter = logging.Formatter(
            "%(asctime)sZ %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S"
        )
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
