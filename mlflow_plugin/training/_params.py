"""Step parameters as frozen value objects validated by pydantic (pydantic dataclasses).

The MLproject hands every parameter over as text; the CLI as click values. Both end up here, so a
bad value fails the same way, as a :class:`~mlflow_plugin.ConfigError` whose one-line message
names the parameter (``holdout: must be < 1, got 1``), before any data is loaded or any run is
written. Bounds are ``Field`` constraints; the columns' roles are checked by :meth:`Columns.parse`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic.dataclasses import dataclass
from pydantic_core import ArgsKwargs

from mlflow_plugin._internal.validation import config_error
from mlflow_plugin.errors import BadInput, ConfigError
from mlflow_plugin.types import check_model_name, check_strategy, check_version

__all__ = [
    "MODEL_KINDS",
    "PARAMS_CONFIG",
    "BacktestParams",
    "Columns",
    "Folds",
    "StepParams",
    "Strategy",
    "TrainParams",
    "ValidateParams",
    "given",
    "optional_float",
    "optional_version",
    "parse_features",
]

MODEL_KINDS = ("coxph", "classifier")


def _blank(value: object, *words: str) -> bool:
    """None, blank, or one of ``words`` (the MLproject's self-describing defaults: ``auto``...)."""
    if value is None:
        return True
    return isinstance(value, str) and (not value.strip() or value.strip().lower() in words)


def given(value: object, *words: str) -> str | None:
    """``value`` stripped, or None when it is blank or one of ``words``."""
    return None if _blank(value, *words) else str(value).strip()


def optional_float(name: str, value: object, *, positive: bool = False) -> float | None:
    """``value`` as a finite float, or None when blank or ``auto``."""
    if _blank(value, "auto"):
        return None
    try:
        number = float(str(value).strip()) if isinstance(value, str) else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{name}: expected a finite number, got {value!r}")
    if positive and number <= 0:
        raise ConfigError(f"{name}: must be > 0, got {number:g}")
    return number


def optional_version(value: object, *, what: str = "version") -> str | None:
    """A registry version number, or None when blank, ``challenger`` or ``last_good``."""
    if _blank(value, "challenger", "last_good"):
        return None
    return check_version(value, what=what)


def parse_features(value: object) -> tuple[str, ...] | None:
    """``"a, b,c"`` -> ``("a", "b", "c")``; blank or ``all`` means every other column."""
    if _blank(value, "all"):
        return None
    if isinstance(value, list | tuple):
        names = [str(v).strip() for v in value]
    else:
        names = [part.strip() for part in str(value).split(",")]
    names = [n for n in names if n]
    if not names:
        return None
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"features: {duplicates[0]!r} is listed twice")
    return tuple(names)


def _column(name: str, value: object, *, required: bool) -> str | None:
    if _blank(value, "none"):
        if required:
            raise ConfigError(f"{name}: required")
        return None
    return str(value).strip()


def _model_name(name: str) -> str:
    try:
        return check_model_name(name)
    except BadInput as exc:  # as pydantic's error, so that the parameter's name comes first
        raise ValueError(str(exc)) from None


def _data(value: str) -> str:
    if _blank(value):
        raise ValueError("required (a CSV/Parquet path or URI, or a lifelines dataset)")
    return value


def _one_of(*choices: str) -> Callable[[str], str]:
    # Not a Literal: the CLI hands over click's str, and mypy would want the Literal there.
    listed = " or ".join(choices) if len(choices) == 2 else f"one of {', '.join(choices)}"

    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"expected {listed}, got {value!r}")
        return value

    return check


ModelName = Annotated[str, AfterValidator(_model_name)]
Data = Annotated[str, AfterValidator(_data)]
ModelKind = Annotated[str, AfterValidator(_one_of(*MODEL_KINDS))]
Missing = Annotated[str, AfterValidator(_one_of("fail", "drop"))]
Strategy = Annotated[str, AfterValidator(check_strategy)]
Positive = Annotated[float, Field(gt=0)]
Folds = Annotated[int, Field(ge=2, le=50)]

#: The pydantic config of every parameters dataclass: numbers are finite.
PARAMS_CONFIG = ConfigDict(allow_inf_nan=False)


class StepParams:
    """Base of the parameters dataclasses: pydantic's validation error becomes our one-line
    :class:`ConfigError` that names the parameter."""

    @model_validator(mode="wrap")
    @classmethod
    def _as_config_error(cls, data: Any, handler: Any) -> Any:
        if isinstance(data, ArgsKwargs) and data.args:
            # Positional arguments by name, so that an error names the parameter.
            names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
            data = ArgsKwargs(
                (), {**dict(zip(names, data.args, strict=False)), **(data.kwargs or {})}
            )
        try:
            return handler(data)
        except ValidationError as exc:
            raise config_error(exc, root="parameters") from None


@dataclass(frozen=True, config=PARAMS_CONFIG)
class Columns(StepParams):
    """Which columns hold what.

    Attributes:
        duration: time to event or censoring.
        event: 1 when the event was observed, 0 when censored.
        time: calendar/order column for time-based holdout and rolling-origin backtests.
        features: feature columns; None means every column but the three above.
    """

    duration: str = "week"
    event: str = "arrest"
    time: str | None = None
    features: tuple[str, ...] | None = None

    @classmethod
    def parse(
        cls,
        duration_col: object = "week",
        event_col: object = "arrest",
        time_col: object = None,
        features: object = None,
    ) -> Columns:
        """The training step's columns, from the MLproject's text (blank or ``none``: no
        column, ``all``: every feature), each column in one role. Columns the steps build from
        a version's recipe are not checked here (the data checks report those)."""
        duration = _column("duration_col", duration_col, required=True)
        event = _column("event_col", event_col, required=True)
        assert duration is not None and event is not None
        time = _column("time_col", time_col, required=False)
        if duration == event:
            raise ConfigError(f"event_col: must differ from duration_col ({duration!r})")
        if time in (duration, event):
            raise ConfigError(f"time_col: {time!r} is already the duration or event column")
        chosen = parse_features(features)
        for name in chosen or ():
            if name in (duration, event, time):
                raise ConfigError(f"features: {name!r} is the duration, event or time column")
        return cls(duration, event, time, chosen)


@dataclass(frozen=True, config=PARAMS_CONFIG)
class TrainParams(StepParams):
    """Parameters of the ``train`` step (see docs/training-and-gates.md, "Retrain and promote").

    Attributes:
        model_name: registered model to add a version to.
        data: CSV/Parquet path or URI, or a lifelines dataset name.
        model_kind: ``coxph`` (lifelines) or ``classifier`` (scikit-learn, event within horizon).
        columns: duration, event, time and feature columns.
        penalizer: L2 penalty (lifelines ``penalizer``; ``C = 1/penalizer`` for the classifier).
        holdout: share of rows kept out of training for validate/backtest in ``main``.
        horizon: time point of "event within horizon"; None picks one from the data.
        buckets: number of time buckets before the horizon in the predicted distribution.
        seed: seeds the random holdout and the backtest folds.
        missing: ``fail`` (refuse data with missing values) or ``drop`` (drop those rows).
        time_scale: duration units per unit of the time column (days per unit for a date/time
            column): the backtest censors training follow-up at each rolling-origin cut.
    """

    model_name: ModelName
    data: Data = "rossi"
    model_kind: ModelKind = "coxph"
    columns: Columns = dataclasses.field(default_factory=Columns)
    penalizer: Annotated[float, Field(ge=0)] = 0.1
    holdout: Annotated[float, Field(ge=0, lt=1)] = 0.2
    horizon: Positive | None = None
    buckets: Annotated[int, Field(ge=1, le=50)] = 4
    seed: int = 0
    missing: Missing = "fail"
    time_scale: Positive = 1.0

    def recipe(self) -> dict[str, object]:
        """What a backtest needs to refit this model: stored as a version tag (JSON)."""
        return {
            "model_kind": self.model_kind,
            "duration_col": self.columns.duration,
            "event_col": self.columns.event,
            "time_col": self.columns.time,
            "features": list(self.columns.features) if self.columns.features else None,
            "penalizer": self.penalizer,
            "holdout": self.holdout,
            "horizon": self.horizon,
            "buckets": self.buckets,
            "seed": self.seed,
            "missing": self.missing,
            "time_scale": self.time_scale,
        }


@dataclass(frozen=True, config=PARAMS_CONFIG)
class ValidateParams(StepParams):
    """Parameters of the ``validate`` step.

    Attributes:
        model_name: registered model.
        version: version to validate; None means the ``challenger`` alias.
        data: evaluation data (path, URI or lifelines dataset name).
        policy: gate policy file; None means ``flows/policy.yaml`` if present, else defaults.
        horizon: Brier time point; None: the policy's, else the model's own horizon.
        duration_col: override of the model's duration column (None: from the version's recipe).
        event_col: override of the model's event column.
        missing: ``fail`` or ``drop`` rows with missing values.
    """

    model_name: ModelName
    version: str | None = None
    data: Data = "rossi"
    policy: str | None = None
    horizon: float | None = None
    duration_col: str | None = None
    event_col: str | None = None
    missing: Missing = "fail"


@dataclass(frozen=True, config=PARAMS_CONFIG)
class BacktestParams(StepParams):
    """Parameters of the ``backtest`` step.

    Attributes:
        model_name: registered model whose training recipe is backtested.
        version: version; None means the ``challenger`` alias.
        data: data to backtest on.
        time_col: rolling-origin column; None: the recipe's, else seeded k-fold.
        horizon: "event within horizon" time point; None: policy, then recipe, then data.
        folds: number of folds (2 to 50).
        policy: gate policy file (as for validate).
        seed: k-fold seed when there is no time column.
        missing: ``fail`` or ``drop`` rows with missing values.
        time_scale: duration units per unit of the time column (days per unit for a date/time
            column), to censor training follow-up at each rolling-origin cut.
    """

    model_name: ModelName
    version: str | None = None
    data: Data = "rossi"
    time_col: str | None = None
    horizon: float | None = None
    folds: Folds = 4
    policy: str | None = None
    seed: int = 0
    missing: Missing = "fail"
    time_scale: Positive | None = None
