"""The parts of a gate policy below the policy itself: which metrics may be gated and in which
direction, one gate's pass condition, the sanity options and the champion comparison
(:class:`mlflow_plugin.policy.Policy` holds them; ``gates/_policy.py`` parses the file).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CHAMPION_TEST_METHODS",
    "GATE_DIRECTIONS",
    "ChampionTest",
    "GateSpec",
    "SanityPolicy",
]

#: The metrics a gate may be set on, and whether higher is better (``*_score`` vs ``*_loss``).
GATE_DIRECTIONS: Mapping[str, bool] = {
    "brier": False,
    "c_index": True,
    "f1": True,
    "integrated_brier": False,
    "precision": True,
    "recall": True,
}
#: How the candidate-minus-champion interval decides a champion comparison.
CHAMPION_TEST_METHODS = ("point", "non_inferiority", "superiority")


@dataclass(frozen=True)
class GateSpec:
    """The pass condition of one metric.

    Attributes:
        name: the metric (a key of :data:`GATE_DIRECTIONS`).
        threshold: the absolute bound.
        higher_is_better: the metric's direction.
        inclusive: whether ``value == threshold`` passes (default: no, ``C-index > 0.5``).
        min_delta_vs_champion: if set, the candidate must reach ``champion + delta``
            (higher-is-better) or ``champion - delta`` (lower-is-better), equality passing;
            a negative delta tolerates that much degradation.
        min_relative_change_vs_champion: if set, MLflow's ``min_relative_change`` against
            the champion, in ``[0, 1]``.
    """

    name: str
    threshold: float
    higher_is_better: bool
    inclusive: bool = False
    min_delta_vs_champion: float | None = None
    min_relative_change_vs_champion: float | None = None
    above_baseline: bool = False

    @property
    def comparator(self) -> str:
        """The absolute condition as an operator: ``>``, ``>=``, ``<`` or ``<=``."""
        op = ">" if self.higher_is_better else "<"
        return op + ("=" if self.inclusive else "")

    @property
    def compares_with_champion(self) -> bool:
        """Whether the gate also needs the champion's value."""
        return (
            self.min_delta_vs_champion is not None
            or self.min_relative_change_vs_champion is not None
        )

    def to_dict(self) -> dict[str, Any]:
        """The YAML mapping of this gate (every key spelled out)."""
        return {
            "threshold": self.threshold,
            "higher_is_better": self.higher_is_better,
            "inclusive": self.inclusive,
            "min_delta_vs_champion": self.min_delta_vs_champion,
            "min_relative_change_vs_champion": self.min_relative_change_vs_champion,
            "above_baseline": self.above_baseline,
        }


@dataclass(frozen=True)
class SanityPolicy:
    """Options of the sanity gates.

    Attributes:
        probability_atol: absolute tolerance on each probability row's sum.
    """

    probability_atol: float = 1e-6


@dataclass(frozen=True)
class ChampionTest:
    """How a gate that compares with the champion decides, from candidate minus champion
    (``delta``) and its paired-bootstrap interval ``[low, high]`` on rows the champion never saw.

    Attributes:
        method: ``point``: the point values with ``min_delta_vs_champion`` (the interval is
            reported, not used); ``non_inferiority``: the interval's worse end is no worse than
            ``-margin``; ``superiority``: the interval's worse end is better than ``+margin``.
        margin: the tolerated (non-inferiority) or required (superiority) difference, >= 0.
        confidence: the interval's level.
        resamples: bootstrap resamples.
        seed: seeds the resampling.
    """

    method: str = "point"
    margin: float = 0.0
    confidence: float = 0.95
    resamples: int = 200
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "margin": self.margin,
            "confidence": self.confidence,
            "resamples": self.resamples,
            "seed": self.seed,
        }
