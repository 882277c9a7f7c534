"""Step parameters as frozen, validated value objects, and the gate policy lookup.

The MLproject hands every parameter over as text; the CLI as click values. Both end up here, so a
bad value fails the same way, as a :class:`~mlflow_plugin.ConfigError` whose one-line message
names the parameter, before any data is loaded or any run is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mlflow_plugin.errors import ConfigError
from mlflow_plugin.types import check_model_name, check_version

if TYPE_CHECKING:
    pass

__all__ = [
    "MODEL_KINDS",
    "BacktestParams",
    "Columns",
    "TrainParams",
    "ValidateParams",
    "optional_float",
    "check_missing",
    "check_time_scale",
    "given",
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


@dataclass(frozen=True)
class Columns:
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


@dataclass(frozen=True)
class TrainParams:
    """Parameters of the ``train`` step (see the README, "Retrain and promote").

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

    model_name: str
    data: str = "rossi"
    model_kind: str = "coxph"
    columns: Columns = field(default_factory=Columns)
    penalizer: float = 0.1
    holdout: float = 0.2
    horizon: float | None = None
    buckets: int = 4
    seed: int = 0
    missing: str = "fail"
    time_scale: float = 1.0

    def __post_init__(self) -> None:
        _check_name(self.model_name)
        if _blank(self.data):
            raise ConfigError("data: required (a CSV/Parquet path or URI, or a lifelines dataset)")
        check_time_scale(self.time_scale)
        if self.model_kind not in MODEL_KINDS:
            raise ConfigError(
                f"model_kind: expected one of {', '.join(MODEL_KINDS)}, got {self.model_kind!r}"
            )
        if not (math.isfinite(self.penalizer) and self.penalizer >= 0):
            raise ConfigError(f"penalizer: must be >= 0, got {self.penalizer!r}")
        if not (math.isfinite(self.holdout) and 0 <= self.holdout < 1):
            raise ConfigError(f"holdout: must be in [0, 1), got {self.holdout!r}")
        if self.horizon is not None and not (math.isfinite(self.horizon) and self.horizon > 0):
            raise ConfigError(f"horizon: must be > 0, got {self.horizon!r}")
        if not 1 <= self.buckets <= 50:
            raise ConfigError(f"buckets: must be between 1 and 50, got {self.buckets!r}")
        check_missing(self.missing)

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


@dataclass(frozen=True)
class ValidateParams:
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

    model_name: str
    version: str | None = None
    data: str = "rossi"
    policy: str | None = None
    horizon: float | None = None
    duration_col: str | None = None
    event_col: str | None = None
    missing: str = "fail"

    def __post_init__(self) -> None:
        _check_name(self.model_name)
        if _blank(self.data):
            raise ConfigError("data: required")
        check_missing(self.missing)


@dataclass(frozen=True)
class BacktestParams:
    """Parameters of the ``backtest`` step.

    Attributes:
        model_name: registered model whose training recipe is backtested.
        version: version; None means the ``challenger`` alias.
        data: data to backtest on.
        time_col: rolling-origin column; None: the recipe's, else seeded k-fold.
        horizon: "event within horizon" time point; None: policy, then recipe, then data.
        folds: number of folds (>= 2).
        policy: gate policy file (as for validate).
        seed: k-fold seed when there is no time column.
        missing: ``fail`` or ``drop`` rows with missing values.
        time_scale: duration units per unit of the time column (days per unit for a date/time
            column), to censor training follow-up at each rolling-origin cut.
    """

    model_name: str
    version: str | None = None
    data: str = "rossi"
    time_col: str | None = None
    horizon: float | None = None
    folds: int = 4
    policy: str | None = None
    seed: int = 0
    missing: str = "fail"
    time_scale: float | None = None

    def __post_init__(self) -> None:
        _check_name(self.model_name)
        if _blank(self.data):
            raise ConfigError("data: required")
        check_missing(self.missing)
        check_time_scale(self.time_scale)
        if not 2 <= self.folds <= 50:
            raise ConfigError(f"folds: must be between 2 and 50, got {self.folds!r}")


def check_missing(value: str) -> str:
    """``fail`` or ``drop``."""
    if value not in ("fail", "drop"):
        raise ConfigError(f"missing: expected fail or drop, got {value!r}")
    return value


def check_time_scale(value: float | None) -> float | None:
    """None (the recipe's, else 1) or a positive finite number."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ConfigError(f"time_scale: must be > 0, got {value!r}")
    return value


def _check_name(name: str) -> None:
    try:
        check_model_name(name)
    except Exception as exc:  # BadInput -> the parameter's name first
        raise ConfigError(f"model_name: {exc}") from None
