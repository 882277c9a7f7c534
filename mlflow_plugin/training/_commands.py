"""Click commands of the steps.

``validate``, ``backtest`` and ``retrain`` are subcommands of ``mlflow-plugin`` (loaded lazily by
:mod:`mlflow_plugin.cli`); :data:`steps` groups every step (``train``, ``validate``,
``backtest``, ``promote``, ``rollback``, ``main``) for the MLproject entry script
``flows/run.py``. Options are named after the MLproject parameters; the self-describing
defaults (``challenger``, ``auto``, ``none``, ``all``, ``default``, ``last_good``) and blank
values mean "not given".

Exit codes as everywhere: 0 ok, 2 bad input, 3 a gate failed or refused the promotion,
4 tracking server unreachable.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from mlflow_plugin.errors import GateFailed
from mlflow_plugin.mlflow_io._click import ErrorHandlingGroup, given_tracking_uri
from mlflow_plugin.types import STRATEGIES

__all__ = ["backtest", "promote", "retrain", "rollback", "steps", "train", "validate"]


class _Whole(click.ParamType):
    """An integer that also accepts ``4.0``: MLproject ``float`` parameters arrive that way."""

    name = "integer"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            number = float(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not an integer", param, ctx)
        if not number.is_integer():
            self.fail(f"{value!r} is not an integer", param, ctx)
        return int(number)


WHOLE = _Whole()


def _use_given_tracking_uri() -> str | None:
    """``mlflow-plugin --tracking-uri`` when given (then also set for the steps' fluent runs);
    else None: MLflow's own resolution (``MLFLOW_TRACKING_URI``)."""
    uri = given_tracking_uri()
    if uri:
        import mlflow

        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
    return uri or None


def _options(*decorators: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def apply(fn: Any) -> Any:
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return apply


# Every option of the steps shows its default in --help.
_option = functools.partial(click.option, show_default=True)

_model_name = _option(
    "--model-name", "--model", "model_name", default="survival-model", help="Registered model name."
)
_data = _option(
    "--data", default="rossi", help="CSV/Parquet path or URI, or a lifelines dataset name."
)
_version = _option("--version", default="challenger", help="Model version, or challenger.")
_policy = _option(
    "--policy",
    default="default",
    help="Gate policy YAML; default: flows/policy.yaml, else built-in.",
)
_horizon = _option(
    "--horizon", default="auto", help="Time point of the Brier score and of 'event within horizon'."
)
_time_col = _option("--time-col", default="none", help="Time-order column (holdout, backtest).")
_folds = _option("--folds", type=WHOLE, default=4, help="Backtest folds.")
_seed = _option("--seed", type=WHOLE, default=0, help="Random seed.")
_missing = _option(
    "--missing",
    type=click.Choice(["fail", "drop"]),
    default="fail",
    help="Rows with missing values: fail (refuse the data) or drop them (says how many).",
)
_time_scale = _option(
    "--time-scale",
    type=float,
    default=1.0,
    help="Duration units per unit of time_col (per day for dates); rolling-origin censoring.",
)
_strategy = _option("--strategy", type=click.Choice(STRATEGIES), default="all_at_once")
_train_options = _options(
    _model_name,
    _data,
    _option("--model-kind", type=click.Choice(["coxph", "classifier"]), default="coxph"),
    _option("--duration-col", default="week"),
    _option("--event-col", default="arrest"),
    _time_col,
    _option("--features", default="all", help="Comma-separated feature columns."),
    _option("--penalizer", type=float, default=0.1, help="L2 penalty."),
    _option(
        "--holdout",
        type=float,
        default=0.2,
        help="Share of rows kept out of training for validate/backtest.",
    ),
    _horizon,
    _option(
        "--buckets",
        type=WHOLE,
        default=4,
        help="Time buckets up to the horizon in the predicted distribution.",
    ),
    _seed,
    _missing,
    _time_scale,
)


def _train_params(**kw: Any) -> Any:
    from mlflow_plugin.training._params import Columns, TrainParams, optional_float

    return TrainParams(
        model_name=kw["model_name"],
        data=kw["data"],
        model_kind=kw["model_kind"],
        columns=Columns.parse(kw["duration_col"], kw["event_col"], kw["time_col"], kw["features"]),
        penalizer=kw["penalizer"],
        holdout=kw["holdout"],
        horizon=optional_float("horizon", kw["horizon"], positive=True),
        buckets=kw["buckets"],
        seed=kw["seed"],
        missing=kw["missing"],
        time_scale=kw["time_scale"],
    )


@click.command()
@_train_options
def train(**kw: Any) -> None:
    """Fit a model, log it, register a version and make it the challenger."""
    from mlflow_plugin.training._train import run_train

    run_train(_train_params(**kw), tracking_uri=_use_given_tracking_uri())


@click.command()
@_model_name
@_version
@_data
@_policy
@_horizon
@_option("--duration-col", default="auto", help="auto: the version's training column.")
@_option("--event-col", default="auto", help="auto: the version's training column.")
@_missing
def validate(
    model_name: str,
    version: str,
    data: str,
    policy: str,
    horizon: str,
    duration_col: str,
    event_col: str,
    missing: str,
) -> None:
    """Validate a version: sanity gates, C-index and Brier vs the policy and the champion."""
    from mlflow_plugin.training._params import (
        ValidateParams,
        given,
        optional_float,
        optional_version,
    )
    from mlflow_plugin.training._validate import run_validate

    params = ValidateParams(
        model_name=model_name,
        version=optional_version(version),
        data=data,
        policy=given(policy, "default"),
        horizon=optional_float("horizon", horizon, positive=True),
        duration_col=given(duration_col, "auto"),
        event_col=given(event_col, "auto"),
        missing=missing,
    )
    verdict = run_validate(params, tracking_uri=_use_given_tracking_uri())
    _exit_on_failure(verdict)


@click.command()
@_model_name
@_version
@_data
@_time_col
@_horizon
@_folds
@_policy
@_seed
@_missing
@_option(
    "--time-scale",
    default="auto",
    help="Duration units per unit of time_col; auto: the version's recipe, else 1.",
)
def backtest(
    model_name: str,
    version: str,
    data: str,
    time_col: str,
    horizon: str,
    folds: int,
    policy: str,
    seed: int,
    missing: str,
    time_scale: str,
) -> None:
    """Backtest a version's recipe: rolling origin over time_col, else seeded k-fold."""
    from mlflow_plugin.training._backtest import run_backtest
    from mlflow_plugin.training._params import (
        BacktestParams,
        given,
        optional_float,
        optional_version,
    )

    params = BacktestParams(
        model_name=model_name,
        version=optional_version(version),
        data=data,
        time_col=given(time_col, "none"),
        horizon=optional_float("horizon", horizon, positive=True),
        folds=folds,
        policy=given(policy, "default"),
        seed=seed,
        missing=missing,
        time_scale=optional_float("time_scale", time_scale, positive=True),
    )
    verdict = run_backtest(params, tracking_uri=_use_given_tracking_uri())
    _exit_on_failure(verdict)


def _exit_on_failure(verdict: Any) -> None:
    if not verdict.passed:
        raise GateFailed(
            f"{verdict.step} of version {verdict.version} failed: "
            + ", ".join(verdict.report.failed_gates),
            list(verdict.report.failed_gates),
        )


@click.command()
@_model_name
@_version
@_strategy
@click.option("--steps", default="default", help="canary: traffic shares, e.g. 10,25,50,100.")
@click.option("--interval", default="default", help="Rollout analysis interval, e.g. 5m.")
@click.option("--keep-previous", default="default", help="blue_green: keep the old champion.")
@click.option("--watch", default="default", help="all_at_once: post-promotion watch, e.g. 10m.")
def promote(
    model_name: str,
    version: str,
    strategy: str,
    steps: str,
    interval: str,
    keep_previous: str,
    watch: str,
) -> None:
    """Promote a version (default: the challenger) if every gate passed; canary and blue_green
    start a rollout (docs/rollouts.md)."""
    from mlflow_plugin.rollouts._options import rollout_options
    from mlflow_plugin.training._params import given, optional_version
    from mlflow_plugin.training._promote import run_promote

    options = rollout_options(
        strategy, *(given(v, "default", "none") for v in (steps, interval, keep_previous, watch))
    )
    run_promote(
        model_name,
        optional_version(version),
        strategy,
        tracking_uri=_use_given_tracking_uri(),
        **options,
    )


@click.command()
@_model_name
@_option("--to-version", default="last_good", help="Target version, or last_good.")
@click.option("--reason", required=True, help="Why (required; recorded in the ledger).")
def rollback(model_name: str, to_version: str, reason: str) -> None:
    """Move the champion back to the last known good version."""
    from mlflow_plugin.training._params import optional_version
    from mlflow_plugin.training._promote import run_rollback

    run_rollback(
        model_name,
        reason,
        optional_version(to_version, what="to_version"),
        tracking_uri=_use_given_tracking_uri(),
    )


def _run_main(folds: int, policy: str, strategy: str, **kw: Any) -> Any:
    from mlflow_plugin.training._params import given
    from mlflow_plugin.training._pipeline import PipelineParams, run_pipeline

    params = PipelineParams(
        _train_params(**kw), folds=folds, policy=given(policy, "default"), strategy=strategy
    )
    return run_pipeline(params, tracking_uri=_use_given_tracking_uri())


@click.command("main")
@_train_options
@_folds
@_policy
@_strategy
def main_entry(folds: int, policy: str, strategy: str, **kw: Any) -> None:
    """Train, validate, backtest and promote (``mlflow run -e main``). A clean rejection is not
    a crash: the run finishes with ``mlflow_plugin.outcome=rejected`` and exit 0."""
    _run_main(folds, policy, strategy, **kw)


@click.command()
@_train_options
@_folds
@_policy
@_strategy
def retrain(folds: int, policy: str, strategy: str, **kw: Any) -> None:
    """Train, validate, backtest and promote in one process; exit 3 when rejected."""
    result = _run_main(folds, policy, strategy, **kw)
    if not result.promoted and result.outcome != "unchanged":
        raise GateFailed(
            f"{result.model} version {result.version} rejected: " + "; ".join(result.reasons),
            [r.split(" (")[0] for r in result.reasons],
        )


class _EntryPoints(ErrorHandlingGroup):
    """The entry script's group. ``mlflow run`` creates the step's run before the script starts,
    so bad input (exit 2) cannot prevent that run: it is tagged with the error (MLflow then marks
    it FAILED) so that it says why no step ran (docs/ARCHITECTURE.md, "Bad input never starts a
    run")."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit) as exc:
            if getattr(exc, "exit_code", None) == 2:
                why = exc.format_message() if isinstance(exc, click.ClickException) else ""
                _tag_project_run(ctx.invoked_subcommand, why or str(exc.__context__ or ""))
            raise


def _tag_project_run(step: str | None, why: str) -> None:
    """Tag the run ``mlflow run`` created for ``step`` (``MLFLOW_RUN_ID``) with the bad input,
    if the step never started it (still RUNNING, made by ``mlflow run`` for this entry point).

    It is not deleted: MLflow 3's ``mlflow run`` always updates its run after the entry point
    exits (``_maybe_set_run_terminated`` compares a status name with status numbers) and fails
    with a traceback on a deleted run."""
    import contextlib

    from mlflow_plugin.settings import mlflow_run_id

    run_id = mlflow_run_id()
    if not run_id or not step:
        return
    with contextlib.suppress(Exception):  # best effort: the error line is what matters
        import mlflow

        from mlflow_plugin.training._tracking import ERROR_TAG, STEP_TAG

        client = mlflow.MlflowClient()
        run = client.get_run(run_id)
        tags = run.data.tags
        if (
            run.info.status != "RUNNING"
            or tags.get("mlflow.source.type") != "PROJECT"
            or tags.get("mlflow.project.entryPoint") != step
            or STEP_TAG in tags
        ):
            return
        client.set_tag(run_id, ERROR_TAG, "bad input: " + " ".join(why.split())[:5000])


@click.group(cls=_EntryPoints, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def steps(debug: bool) -> None:
    """The MLproject entry points: mlflow run . -e STEP --env-manager local."""


steps.add_command(train)
steps.add_command(validate)
steps.add_command(backtest)
steps.add_command(promote)
steps.add_command(rollback)
steps.add_command(main_entry, name="main")
