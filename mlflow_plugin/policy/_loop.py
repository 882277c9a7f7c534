"""The closed loop's sections of the policy file: ``triggers``, ``rollback_if`` and ``alerts``.

Validated as pydantic sections (:mod:`mlflow_plugin.policy._validation`: a bad key fails at load
with its dotted path) and kept as frozen dataclasses::

    triggers:
      schedule: "0 2 1 * *"      # cron (UTC): first day of each month, 02:00
      min_history: 180d          # the training data must span this much time (days if a number)
      brier_increase: 0.10       # Brier more than 10 % above the baseline frozen at promotion
      precision_below: 0.5
      recall_below: 0.5
      new_data: data/latest.csv  # retrain when this file's fingerprint changes
      consecutive_windows: 2     # fire only after this many bad windows in a row
      min_matured: 20            # a window with fewer matured predictions is not judged
    rollback_if:                 # the champion is "degraded" when a window breaches these
      brier_increase: 0.25
      precision_below: 0.3
      recall_below: 0.3
      c_index_below: 0.55
      consecutive_windows: 2
      min_matured: 20
    alerts:
      webhook_url: https://hooks.slack.com/services/...   # JSON POST, Slack-compatible text
      timeout: 5
      retries: 3

How the rules are applied lives with the operator (``docs/ARCHITECTURE.md``, "The operator").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, Strict, WithJsonSchema

from mlflow_plugin.policy._validation import WHOLE, Fraction, Number, Section, Text

__all__ = [
    "Alerts",
    "AlertsSection",
    "PerformanceRules",
    "RollbackIf",
    "RulesSection",
    "Triggers",
    "TriggersSection",
    "parse_duration",
]

_DURATION = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
#: The longest duration anything accepts (retention windows, schedules, rollout intervals and
#: watches): ten years. Longer is a typo, and far past it the arithmetic on dates overflows.
MAX_DURATION_S = 3650 * 86400.0


def parse_duration(text: object, *, default_unit: str = "d") -> float:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"45s"``, ``"2w"`` or a bare number (``default_unit``)
    -> seconds.

    Raises:
        ValueError: anything else, or a duration that is not positive or longer than
            :data:`MAX_DURATION_S` (ten years).
    """
    if isinstance(text, bool):
        raise ValueError(f"expected a duration such as 7d or 12h, got {text!r}")
    if isinstance(text, int | float):
        text = f"{text}{default_unit}"
    match = _DURATION.match(str(text)) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"expected a duration such as 7d or 12h, got {text!r}")
    seconds = float(match["n"]) * _UNIT_SECONDS[match["unit"] or default_unit]
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {text!r}")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"a duration must be at most 3650d (ten years), got {text!r}")
    return seconds


@dataclass(frozen=True)
class PerformanceRules:
    """Thresholds on a window's realised metrics; ``None`` means "no such rule".

    Attributes:
        brier_increase: relative increase of the Brier score over the baseline (0.10 = +10 %).
        precision_below: precision under this is bad.
        recall_below: recall under this is bad.
        c_index_below: C-index under this is bad.
        consecutive_windows: bad windows in a row before the rule fires (against flapping).
        min_matured: windows with fewer matured predictions are not judged.
    """

    brier_increase: float | None = None
    precision_below: float | None = None
    recall_below: float | None = None
    c_index_below: float | None = None
    consecutive_windows: int = 1
    min_matured: int = 20

    @property
    def active(self) -> bool:
        return any(
            v is not None
            for v in (
                self.brier_increase,
                self.precision_below,
                self.recall_below,
                self.c_index_below,
            )
        )

    def breaches(
        self, metrics: Mapping[str, float | None], baseline: Mapping[str, float]
    ) -> dict[str, str]:
        """The rules a window's ``metrics`` break: rule name -> evidence (one line each).

        An undefined metric (None) breaks nothing; ``brier_increase`` needs a baseline Brier.
        """
        out: dict[str, str] = {}
        brier, base = metrics.get("brier"), baseline.get("brier")
        if self.brier_increase is not None and brier is not None and base is not None and base > 0:
            limit = base * (1.0 + self.brier_increase)
            if brier > limit:
                out["brier_increase"] = (
                    f"brier {brier:.4f} > {limit:.4f} (baseline {base:.4f} +{self.brier_increase:.0%})"
                )
        for rule, metric in (
            ("precision_below", "precision"),
            ("recall_below", "recall"),
            ("c_index_below", "c_index"),
        ):
            bound = getattr(self, rule)
            value = metrics.get(metric)
            if bound is not None and value is not None and value < bound:
                out[rule] = f"{metric} {value:.4f} < {bound:g}"
        return out


@dataclass(frozen=True)
class Triggers(PerformanceRules):
    """When to retrain: the performance rules plus time and data.

    Attributes:
        schedule: a cron expression, evaluated in UTC.
        min_history: seconds of history the training data must span (None: no check).
        new_data: path or URI whose fingerprint (size, mtime, row count) is watched.
    """

    schedule: str | None = None
    min_history: float | None = None
    new_data: str | None = None


@dataclass(frozen=True)
class RollbackIf(PerformanceRules):
    """When the champion is degraded (and, if the fallback does better, rolled back)."""


@dataclass(frozen=True)
class Alerts:
    """Where alerts go besides the ledger.

    Attributes:
        webhook_url: JSON POST target (Slack-compatible ``text``); None: ledger only.
        timeout: seconds per attempt.
        retries: further attempts after a failure (with backoff).
    """

    webhook_url: str | None = None
    timeout: float = 5.0
    retries: int = 3


def _cron(value: str) -> str:
    from croniter import croniter

    if not croniter.is_valid(value):
        raise ValueError(f"not a cron expression: {value!r}")
    return value


def _webhook_url(value: str) -> str:
    if not re.match(r"^https?://\S+$", value):
        raise ValueError(f"expected an http(s) URL, got {value!r}")
    return value


_Seconds = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema({"type": ["string", "number"], "examples": ["180d", "12h", 30]}),
]


class RulesSection(Section):
    """``rollback_if`` (and the rules of ``triggers``): thresholds on a window's metrics."""

    brier_increase: Annotated[Number, Field(ge=0.0)] | None = None
    """Relative increase of the Brier score over the baseline frozen at promotion (0.10: +10 %)."""
    precision_below: Fraction | None = None
    recall_below: Fraction | None = None
    c_index_below: Fraction | None = None
    consecutive_windows: Annotated[int, Strict(), Field(ge=1), WHOLE] = 1
    """Bad windows in a row before the rule fires."""
    min_matured: Annotated[int, Strict(), Field(ge=1), WHOLE] = 20
    """Windows with fewer matured predictions are not judged."""

    def rollback_if(self) -> RollbackIf:
        return RollbackIf(**self.model_dump())


class TriggersSection(RulesSection):
    """``triggers``: when the operator retrains."""

    schedule: Annotated[Text, AfterValidator(_cron)] | None = None
    """Cron expression, UTC."""
    min_history: _Seconds | None = None
    """The training data must span this much time (days if a number): 180d, 12h, 2w."""
    new_data: Text | None = None
    """Retrain when this file's fingerprint changes (path or URI)."""

    def triggers(self) -> Triggers:
        return Triggers(**self.model_dump())


class AlertsSection(Section):
    """``alerts``: where alerts go besides the ledger."""

    webhook_url: Annotated[Text, AfterValidator(_webhook_url)] | None = None
    """JSON POST target (Slack-compatible text)."""
    timeout: Annotated[Number, Field(gt=0.0)] = 5.0
    """Seconds per attempt."""
    retries: Annotated[int, Strict(), Field(ge=0, le=10), WHOLE] = 3
    """Further attempts after a failure."""

    def alerts(self) -> Alerts:
        return Alerts(**self.model_dump())
