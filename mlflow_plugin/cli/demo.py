"""``make demo``: the retrain-and-promote job twice on rossi, then what the ledger shows.

1. ``main`` on the rossi recidivism data: a Cox model is trained, validated, backtested and, as
   every gate passes and there is no champion yet, promoted: the first champion.
2. ``main`` again with a deliberately worse candidate (it only sees two weak features, race and
   marital status): its C-index falls below the champion's on the same holdout, so the gates
   reject it; the champion is untouched and a ``rejected`` event records why.
3. ``mlflow-plugin status`` and ``mlflow-plugin events`` print the result.

Everything is stored in the embedded SQLite store ``./mlflow.db`` (artifacts under ``./mlruns``)
unless ``MLFLOW_TRACKING_URI`` points elsewhere; ``mlflow ui`` shows the evidence.
"""

from __future__ import annotations

import os
import sys
import time

from mlflow_plugin.errors import redact
from mlflow_plugin.settings import mlflow_tracking_uri

__all__ = ["DEMO_EXPERIMENT", "DEMO_MODEL", "main"]

DEMO_MODEL = "rossi-survival"
DEMO_EXPERIMENT = "mlflow_plugin-demo"
_LOCAL_STORE = "sqlite:///mlflow.db"


def _banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def _cli(*args: str) -> None:
    """Run an ``mlflow-plugin`` command in this process, as a user would type it."""
    from mlflow_plugin.cli import main as cli

    print(f"$ mlflow-plugin {' '.join(args)}", flush=True)
    try:
        cli.main(list(args), prog_name="mlflow-plugin", standalone_mode=False)
    except SystemExit as exc:  # ctx.exit() on errors
        if exc.code:
            raise


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the process exit status."""
    started = time.perf_counter()
    uri = mlflow_tracking_uri()
    local = not uri.strip()
    if local:
        uri = os.environ["MLFLOW_TRACKING_URI"] = _LOCAL_STORE
    os.environ.setdefault("MLFLOW_PLUGIN_ACTOR", "demo")

    import logging

    import mlflow

    from mlflow_plugin.training._params import Columns, TrainParams
    from mlflow_plugin.training._pipeline import PipelineParams, run_pipeline

    # MLflow logs a line per database migration on a fresh store; the demo's own output matters.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(DEMO_EXPERIMENT)
    print(f"tracking store: {redact(uri)}  experiment: {DEMO_EXPERIMENT}  model: {DEMO_MODEL}")

    _banner("1/3 retrain on rossi: train -> validate -> backtest -> promote")
    first = run_pipeline(PipelineParams(TrainParams(model_name=DEMO_MODEL, data="rossi")))

    _banner("2/3 a deliberately worse candidate (features race, mar only)")
    weak = TrainParams(
        model_name=DEMO_MODEL, data="rossi", columns=Columns(features=("race", "mar"))
    )
    second = run_pipeline(PipelineParams(weak))

    _banner("3/3 what the registry and the ledger say")
    _cli("status", DEMO_MODEL)
    print()
    _cli("events", "--model", DEMO_MODEL)

    _banner("done")
    print(
        f"version {first.version}: {first.outcome}; version {second.version}: {second.outcome} "
        f"({time.perf_counter() - started:.0f}s)"
    )
    if local:
        print("Look at the evidence:  mlflow ui --backend-store-uri sqlite:///mlflow.db")
    else:
        print(f"Look at the evidence in the MLflow UI of {redact(uri)}")
    print(
        f"  experiment {DEMO_EXPERIMENT!r}: the two pipeline runs, each with its train/validate/"
        "backtest/promote child runs, gate reports and plots"
    )
    print("  experiment 'mlflow_plugin-deployments': the deployment and rejected events")
    print(f"  Models > {DEMO_MODEL}: aliases champion/challenger, stages, gate tags per version")
    return 0


def _run() -> int:
    from mlflow_plugin.errors import MlflowPluginError

    try:
        return main()
    except MlflowPluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(_run())
