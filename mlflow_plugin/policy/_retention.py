"""The policy's ``retention`` section: which registered versions may be archived and deleted.

Rules are ordered, in the style of container-registry lifecycle policies: each version that is
not protected is decided by the first rule that selects it; a version no rule selects gets the
``default`` action (``keep`` unless set to ``delete``)::

    retention:
      archive_uri: file:///srv/mlflow-archive  # where versions are copied before deletion
      protect_window: 90d     # a version that was champion this recently is never deleted
      always_keep: [baseline] # aliases kept in addition to champion, fallback, challenger,
                              # canary and preview (those five cannot be removed)
      rules:
        - keep_last: 3                 # keep the 3 newest versions still undecided
        - min_metric: {c_index: 0.6}   # delete versions whose c_index is worse than 0.6
        - max_age: 180d                # delete versions older than 180 days
      default: keep                    # keep | delete: versions no rule selected

Durations are a number of days or text with a unit: ``90d``, ``12h``, ``30m``, ``2w``, ``45s``.
``min_metric`` follows each metric's direction (:data:`GATE_DIRECTIONS`): for ``brier`` it
selects versions whose Brier score is above the bound. A version without the metric is never
selected by ``min_metric`` (retention does not delete on missing evidence).
How the rules are applied: :func:`mlflow_plugin.retention.plan_retention`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema, model_validator

from mlflow_plugin.policy._gate_spec import GateName
from mlflow_plugin.policy._loop import MAX_DURATION_S
from mlflow_plugin.policy._validation import Number, Section, Text, problem

__all__ = [
    "PROTECTED_ALIASES",
    "KeepLast",
    "MaxAge",
    "MinMetric",
    "RetentionPolicy",
    "RetentionRule",
    "RetentionSection",
    "format_duration",
]

#: Aliases whose versions retention never deletes, whatever the policy says.
PROTECTED_ALIASES = ("champion", "fallback", "challenger", "canary", "preview")
DEFAULT_PROTECT_WINDOW_S = 90 * 86400.0

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


@dataclass(frozen=True)
class KeepLast:
    """Keep the ``count`` newest versions that earlier rules left undecided."""

    count: int

    def describe(self) -> str:
        return f"keep_last {self.count}"


@dataclass(frozen=True)
class MinMetric:
    """Delete versions whose metric is worse than its bound (``bounds``: metric -> bound)."""

    bounds: tuple[tuple[str, float], ...]

    def describe(self) -> str:
        return "min_metric " + ", ".join(f"{m} {b:g}" for m, b in self.bounds)


@dataclass(frozen=True)
class MaxAge:
    """Delete versions registered more than ``seconds`` ago."""

    seconds: float

    def describe(self) -> str:
        return f"max_age {format_duration(self.seconds)}"


RetentionRule = KeepLast | MinMetric | MaxAge


@dataclass(frozen=True)
class RetentionPolicy:
    """A validated ``retention`` section (the default keeps everything).

    Attributes:
        rules: ordered rules; the first that selects a version decides it.
        default: ``keep`` or ``delete``: the action for versions no rule selected.
        always_keep: aliases whose versions are never deleted (includes
            :data:`PROTECTED_ALIASES`).
        protect_window_s: a version that was champion within this many seconds is kept.
        archive_uri: artifact-store URI (``file://``, a path, ``s3://``...) the versions are
            copied to before deletion; required as soon as the policy can delete.
    """

    rules: tuple[RetentionRule, ...] = ()
    default: str = "keep"
    always_keep: tuple[str, ...] = PROTECTED_ALIASES
    protect_window_s: float = DEFAULT_PROTECT_WINDOW_S
    archive_uri: str | None = None

    @property
    def can_delete(self) -> bool:
        return self.default == "delete" or any(not isinstance(r, KeepLast) for r in self.rules)

    def to_dict(self) -> dict[str, Any]:
        rules: list[dict[str, Any]] = []
        for rule in self.rules:
            if isinstance(rule, KeepLast):
                rules.append({"keep_last": rule.count})
            elif isinstance(rule, MinMetric):
                rules.append({"min_metric": dict(rule.bounds)})
            else:
                rules.append({"max_age": format_duration(rule.seconds)})
        return {
            "archive_uri": self.archive_uri,
            "protect_window": format_duration(self.protect_window_s),
            "always_keep": [a for a in self.always_keep if a not in PROTECTED_ALIASES],
            "rules": rules,
            "default": self.default,
        }


def format_duration(seconds: float) -> str:
    """The shortest exact spelling: ``90d``, ``12h``, ``45s``."""
    for unit in ("w", "d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _duration(value: object) -> float:
    """A number of days, or text with a unit (``90d``, ``12h``, ``2w``) -> seconds (>= 0, at
    most :data:`~mlflow_plugin.policy._loop.MAX_DURATION_S`: ``1e308`` days would overflow the
    date arithmetic)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 90d, got {value!r}")
    if isinstance(value, int | float):
        try:
            seconds = float(value) * 86400.0
        except OverflowError:  # an integer beyond any float
            seconds = float("inf")
    elif isinstance(value, str) and (match := _DURATION_RE.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"expected a duration such as 90d, 12h or 2w, got {value!r}")
    if seconds < 0:
        raise ValueError("must not be negative")
    if not seconds <= MAX_DURATION_S:  # NaN too
        shown = value if not isinstance(value, int) or abs(value) < 10**12 else "a huge number"
        raise ValueError(f"must be at most 3650d (ten years), got {shown!r}")
    return seconds


def _positive(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return value


def _some_metric(bounds: dict[str, float]) -> dict[str, float]:
    if not bounds:
        raise ValueError("expected at least one metric: bound")
    return bounds


_Seconds = Annotated[
    float,
    BeforeValidator(_duration),
    WithJsonSchema({"type": ["string", "number"], "examples": ["90d", "12h", "2w"]}),
]


class _RuleSection(Section):
    """One retention rule: exactly one of its keys."""

    keep_last: Annotated[int, Field(ge=1), BeforeValidator(_positive)] | None = None
    """Keep this many of the newest versions still undecided."""
    min_metric: Annotated[dict[GateName, Number], AfterValidator(_some_metric)] | None = None
    """Delete versions whose metric is worse than its bound (by the metric's direction)."""
    max_age: _Seconds | None = None
    """Delete versions older than this (days if a number)."""

    @model_validator(mode="after")
    def _one(self) -> _RuleSection:
        if len(self.model_fields_set) != 1:
            raise problem(f"expected exactly one of {', '.join(type(self).model_fields)}")
        return self

    def rule(self) -> RetentionRule:
        if self.keep_last is not None:
            return KeepLast(self.keep_last)
        if self.min_metric is not None:
            return MinMetric(tuple(self.min_metric.items()))
        assert self.max_age is not None
        return MaxAge(self.max_age)


class RetentionSection(Section):
    """``retention``: which registered versions may be archived and deleted."""

    archive_uri: Text | None = None
    """Where versions are copied before deletion; required as soon as the policy can delete."""
    protect_window: _Seconds = Field(default="90d", validate_default=True)
    """A version that was champion this recently is never deleted (days if a number)."""
    always_keep: list[Text] = []
    """Aliases kept in addition to champion, fallback, challenger, canary and preview."""
    rules: list[_RuleSection] = []
    """Ordered rules; the first that selects a version decides it."""
    default: Literal["keep", "delete"] = "keep"
    """The action for versions no rule selected."""

    @model_validator(mode="after")
    def _archive_when_deleting(self) -> RetentionSection:
        if self.archive_uri is None and self.policy().can_delete:
            raise problem("required when a rule or the default deletes versions", "archive_uri")
        return self

    def policy(self) -> RetentionPolicy:
        extra = [a for a in self.always_keep if a not in PROTECTED_ALIASES]
        return RetentionPolicy(
            rules=tuple(rule.rule() for rule in self.rules),
            default=self.default,
            always_keep=PROTECTED_ALIASES + tuple(dict.fromkeys(extra)),
            protect_window_s=self.protect_window,
            archive_uri=self.archive_uri,
        )
