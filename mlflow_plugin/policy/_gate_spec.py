"""The parts of a gate policy below the policy itself: which metrics may be gated and in which
direction, one gate's pass condition, the sanity options and the champion comparison
(:class:`mlflow_plugin.policy.Policy` holds them), with their sections of the policy file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import ConfigDict, Field, Strict, model_validator

from mlflow_plugin.policy._validation import WHOLE, Fraction, Number, Section, problem

__all__ = [
    "CHAMPION_TEST_METHODS",
    "GATE_DIRECTIONS",
    "ChampionTest",
    "GateName",
    "ChampionTestSection",
    "GateSpec",
    "GatesSection",
    "SanityPolicy",
    "SanitySection",
]

#: The metrics a gate may be set on (the keys of :data:`GATE_DIRECTIONS`).
GateName = Literal["brier", "c_index", "f1", "integrated_brier", "precision", "recall"]
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
ChampionTestMethod = Literal["point", "non_inferiority", "superiority"]
CHAMPION_TEST_METHODS: tuple[str, ...] = get_args(ChampionTestMethod)


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


class _GateSection(Section):
    """``gates.<metric>``: the pass condition of one metric."""

    threshold: Number
    """The absolute bound; a value equal to it fails unless ``inclusive``."""
    higher_is_better: bool | None = Field(default=None, strict=True)
    """Optional; must agree with the metric's direction."""
    inclusive: bool = Field(default=False, strict=True)
    """May the value equal the threshold?"""
    min_delta_vs_champion: Number | None = None
    """The candidate must reach the champion's value plus this (minus, lower-is-better)."""
    min_relative_change_vs_champion: Fraction | None = None
    """MLflow's ``min_relative_change`` against the champion."""
    above_baseline: bool = Field(default=False, strict=True)
    """Must also beat a trivial predictor's value."""

    higher: ClassVar[bool]

    def spec(self, name: str) -> GateSpec:
        return GateSpec(
            name=name,
            threshold=self.threshold,
            higher_is_better=self.higher,
            inclusive=self.inclusive,
            min_delta_vs_champion=self.min_delta_vs_champion,
            min_relative_change_vs_champion=self.min_relative_change_vs_champion,
            above_baseline=self.above_baseline,
        )


class _ScoreGate(_GateSection):
    """A higher-is-better metric bounded by 1 (``*_score``)."""

    threshold: Fraction
    higher: ClassVar[bool] = True


class _LossGate(_GateSection):
    """A lower-is-better metric, bounded below only (``*_loss``: the IPCW Brier scores)."""

    threshold: Annotated[Number, Field(ge=0.0)]
    higher: ClassVar[bool] = False


def _gates_schema(schema: dict[str, Any]) -> None:
    # At least one gate, and a gate is a mapping: GatesSection._check refuses null.
    schema["minProperties"] = 1
    for prop in schema["properties"].values():
        prop.update(next(o for o in prop.pop("anyOf") if o.get("type") != "null"))
        prop.pop("default", None)


class GatesSection(Section):
    """``gates``: one gate per metric, at least one."""

    model_config = ConfigDict(json_schema_extra=_gates_schema)
    null_is_default: ClassVar[bool] = False  # see _check

    brier: _LossGate | None = None
    c_index: _ScoreGate | None = None
    f1: _ScoreGate | None = None
    integrated_brier: _LossGate | None = None
    precision: _ScoreGate | None = None
    recall: _ScoreGate | None = None

    @model_validator(mode="after")
    def _check(self) -> GatesSection:
        if not self.model_fields_set:
            raise problem("at least one gate is required")
        for name in (n for n in type(self).model_fields if n in self.model_fields_set):
            gate: _GateSection | None = getattr(self, name)
            if gate is None:  # `f1:` with nothing under it: a gate left unfinished
                raise problem("expected a mapping, got nothing (null)", name)
            if gate.higher_is_better is not None and gate.higher_is_better != gate.higher:
                direction = "higher" if gate.higher else "lower"
                raise problem(
                    f"{name} is {direction}-is-better, got {gate.higher_is_better}",
                    f"{name}.higher_is_better",
                )
        return self

    def specs(self, order: Mapping[str, object]) -> tuple[GateSpec, ...]:
        """The gates in the order of ``order`` (the document's mapping: gates keep file order)."""
        return tuple(
            getattr(self, name).spec(name) for name in order if name in self.model_fields_set
        )


class SanitySection(Section):
    """``sanity``: options of the sanity gates."""

    probability_atol: Fraction = 1e-6
    """Tolerance on each probability row's sum (write 1.0e-6: YAML 1.1 reads 1e-6 as text)."""

    def policy(self) -> SanityPolicy:
        return SanityPolicy(**self.model_dump())


class ChampionTestSection(Section):
    """``champion_test``: how "not worse than the champion" is decided."""

    method: ChampionTestMethod = "point"
    """point: the point values; non_inferiority / superiority: the bootstrap interval's worse end."""
    margin: Annotated[Number, Field(ge=0.0)] = 0.0
    """Tolerated (non_inferiority) or required (superiority) difference."""
    confidence: Annotated[Number, Field(ge=0.5, le=0.999)] = 0.95
    """Level of the paired-bootstrap interval."""
    resamples: Annotated[int, Strict(), Field(ge=20, le=100000), WHOLE] = 200
    """Bootstrap resamples."""
    seed: Annotated[int, Strict(), Field(ge=0), WHOLE] = 0
    """Seeds the resampling."""

    def policy(self) -> ChampionTest:
        return ChampionTest(**self.model_dump())
