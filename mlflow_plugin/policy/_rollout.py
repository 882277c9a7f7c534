"""The policy's ``rollout`` section (:class:`RolloutPolicy`): the analysis thresholds of canary
and blue-green rollouts. What the thresholds mean, and the tests that apply them, are in
:mod:`mlflow_plugin.rollouts._analysis`::

    rollout:
      min_requests: 100              # per side; fewer = inconclusive (never success)
      failure_limit: 0               # failed analyses tolerated per step before the abort
      inconclusive_limit: 3          # inconclusive analyses in a row before the pause
      alpha: 0.05                    # false-abort rate of the whole rollout (Bonferroni)
      max_error_rate_increase: 0.01  # absolute: canary error rate - champion error rate
      max_guardrail_rate_increase: 0.01
      max_p99_latency_ratio: 1.5     # canary p99 / champion p99
      brier_increase: 0.10           # matured outcomes: canary Brier > champion Brier * 1.10
      min_matured: 20                # matured outcomes per side before Brier is compared
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

__all__ = ["ROLLOUT_KEYS", "RolloutPolicy", "parse_rollout"]

ROLLOUT_KEYS = (
    "min_requests",
    "failure_limit",
    "inconclusive_limit",
    "alpha",
    "max_error_rate_increase",
    "max_guardrail_rate_increase",
    "max_p99_latency_ratio",
    "brier_increase",
    "min_matured",
)


@dataclass(frozen=True)
class RolloutPolicy:
    """The thresholds of the rollout analysis (see the module docstring)."""

    min_requests: int = 100
    failure_limit: int = 0
    inconclusive_limit: int = 3
    alpha: float = 0.05
    max_error_rate_increase: float = 0.01
    max_guardrail_rate_increase: float = 0.01
    max_p99_latency_ratio: float = 1.5
    brier_increase: float = 0.10
    min_matured: int = 20

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Walker(Protocol):
    def fail(self, path: str, problem: str) -> Any: ...
    def mapping(self, path: str, value: object, allowed: tuple[str, ...]) -> Mapping[str, Any]: ...
    def number(self, path: str, value: object, **bounds: Any) -> float: ...


_WHOLE = {"min_requests": 1, "failure_limit": 0, "inconclusive_limit": 0, "min_matured": 1}


def parse_rollout(w: _Walker, value: object) -> RolloutPolicy:
    """The ``rollout`` section (every key optional; unknown keys fail with their path)."""
    doc = w.mapping("rollout", value, ROLLOUT_KEYS)
    fields: dict[str, Any] = {}
    for key, raw in doc.items():
        if raw is None:
            continue
        path = f"rollout.{key}"
        if key in _WHOLE:
            number = w.number(path, raw, lo=_WHOLE[key])
            if not float(number).is_integer():
                w.fail(path, f"expected a whole number, got {raw!r}")
            fields[key] = int(number)
        elif key == "alpha":
            fields[key] = w.number(path, raw, lo=0.0, hi=0.5, lo_inclusive=False)
        elif key == "max_p99_latency_ratio":
            fields[key] = w.number(path, raw, lo=1.0)
        else:
            fields[key] = w.number(path, raw, lo=0.0, hi=1.0)
    return RolloutPolicy(**fields)
