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

from dataclasses import asdict, dataclass
from typing import Annotated, Any

from pydantic import Field, Strict

from mlflow_plugin.policy._validation import WHOLE, Fraction, Number, Section

__all__ = ["RolloutPolicy", "RolloutSection"]


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


class RolloutSection(Section):
    """``rollout``: the thresholds of the canary / blue-green / watch analysis."""

    min_requests: Annotated[int, Strict(), Field(ge=1), WHOLE] = 100
    """Requests per side; fewer: inconclusive (never success)."""
    failure_limit: Annotated[int, Strict(), Field(ge=0), WHOLE] = 0
    """Failed analyses tolerated per step before the abort."""
    inconclusive_limit: Annotated[int, Strict(), Field(ge=0), WHOLE] = 3
    """Inconclusive analyses in a row before the pause."""
    alpha: Annotated[Number, Field(gt=0.0, le=0.5)] = 0.05
    """False-abort rate of the whole rollout (Bonferroni)."""
    max_error_rate_increase: Fraction = 0.01
    """Absolute: canary error rate minus champion error rate."""
    max_guardrail_rate_increase: Fraction = 0.01
    max_p99_latency_ratio: Annotated[Number, Field(ge=1.0)] = 1.5
    """Canary p99 latency over champion p99 latency."""
    brier_increase: Fraction = 0.10
    """Matured outcomes: canary Brier above champion Brier times 1 + this."""
    min_matured: Annotated[int, Strict(), Field(ge=1), WHOLE] = 20
    """Matured outcomes per side before Brier is compared."""

    def policy(self) -> RolloutPolicy:
        return RolloutPolicy(**self.model_dump())
