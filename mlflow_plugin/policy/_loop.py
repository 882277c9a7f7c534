"""The closed loop's sections of the policy file: ``triggers``, ``rollback_if`` and ``alerts``.

Parsed by :class:`mlflow_plugin.policy.Policy` with the same rules as the gates (frozen
dataclasses, a bad key fails at load with its dotted path)::

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
from typing import Any, Protocol

__all__ = ["Alerts", "PerformanceRules", "RollbackIf", "Triggers", "parse_duration"]

_DURATION = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}

_RULE_KEYS = (
    "brier_increase",
    "precision_below",
    "recall_below",
    "c_index_below",
    "consecutive_windows",
    "min_matured",
)
TRIGGER_KEYS = ("schedule", "min_history", "new_data", *_RULE_KEYS)
ROLLBACK_KEYS = _RULE_KEYS
ALERT_KEYS = ("webhook_url", "timeout", "retries")


def parse_duration(text: object, *, default_unit: str = "d") -> float:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"45s"``, ``"2w"`` or a bare number (``default_unit``)
    -> seconds.

    Raises:
        ValueError: anything else, or a duration that is not positive.
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


class _Walker(Protocol):
    def fail(self, path: str, problem: str) -> Any: ...
    def mapping(self, path: str, value: object, allowed: tuple[str, ...]) -> Mapping[str, Any]: ...
    def number(self, path: str, value: object, **bounds: Any) -> float: ...


def _rules(w: _Walker, path: str, doc: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if doc.get("brier_increase") is not None:
        out["brier_increase"] = w.number(f"{path}.brier_increase", doc["brier_increase"], lo=0.0)
    for key in ("precision_below", "recall_below", "c_index_below"):
        if doc.get(key) is not None:
            out[key] = w.number(f"{path}.{key}", doc[key], lo=0.0, hi=1.0)
    for key, lo in (("consecutive_windows", 1), ("min_matured", 1)):
        if doc.get(key) is not None:
            value = w.number(f"{path}.{key}", doc[key], lo=lo)
            if not float(value).is_integer():
                w.fail(f"{path}.{key}", f"expected a whole number, got {doc[key]!r}")
            out[key] = int(value)
    return out


def parse_triggers(w: _Walker, value: object) -> Triggers:
    doc = w.mapping("triggers", value, TRIGGER_KEYS)
    fields = _rules(w, "triggers", doc)
    if doc.get("schedule") is not None:
        from croniter import croniter

        schedule = doc["schedule"]
        if not isinstance(schedule, str) or not croniter.is_valid(schedule):
            w.fail("triggers.schedule", f"not a cron expression: {schedule!r}")
        fields["schedule"] = schedule.strip()
    if doc.get("min_history") is not None:
        try:
            fields["min_history"] = parse_duration(doc["min_history"])
        except ValueError as exc:
            w.fail("triggers.min_history", str(exc))
    if doc.get("new_data") is not None:
        if not isinstance(doc["new_data"], str) or not doc["new_data"].strip():
            w.fail("triggers.new_data", "expected a path or URI")
        fields["new_data"] = doc["new_data"].strip()
    return Triggers(**fields)


def parse_rollback_if(w: _Walker, value: object) -> RollbackIf:
    return RollbackIf(**_rules(w, "rollback_if", w.mapping("rollback_if", value, ROLLBACK_KEYS)))


def parse_alerts(w: _Walker, value: object) -> Alerts:
    doc = w.mapping("alerts", value, ALERT_KEYS)
    fields: dict[str, Any] = {}
    url = doc.get("webhook_url")
    if url is not None:
        if not isinstance(url, str) or not re.match(r"^https?://\S+$", url.strip()):
            w.fail("alerts.webhook_url", f"expected an http(s) URL, got {url!r}")
        fields["webhook_url"] = url.strip()
    if doc.get("timeout") is not None:
        fields["timeout"] = w.number("alerts.timeout", doc["timeout"], lo=0.0, lo_inclusive=False)
    if doc.get("retries") is not None:
        retries = w.number("alerts.retries", doc["retries"], lo=0, hi=10)
        if not float(retries).is_integer():
            w.fail("alerts.retries", f"expected a whole number, got {doc['retries']!r}")
        fields["retries"] = int(retries)
    return Alerts(**fields)
