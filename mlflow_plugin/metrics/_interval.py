"""The candidate-minus-champion difference with its interval (standard library only, cheap)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ChampionComparison"]


@dataclass(frozen=True)
class ChampionComparison:
    """Candidate minus champion on the same rows, with a paired-bootstrap interval.

    Attributes:
        metric: ``c_index`` or ``brier``.
        delta: candidate value minus champion value.
        ci_low: lower end of the interval.
        ci_high: upper end of the interval.
        confidence: the interval's level (0.95).
        resamples: bootstrap resamples.
        n_rows: rows both models were scored on (the champion never saw them).
        method: how the interval was made.
    """

    metric: str
    delta: float
    ci_low: float
    ci_high: float
    confidence: float
    resamples: int
    n_rows: int
    method: str = "paired bootstrap"

    def metrics(self) -> dict[str, float]:
        """``<metric>_vs_champion`` and its ``_ci_low`` / ``_ci_high``."""
        name = f"{self.metric}_vs_champion"
        return {name: self.delta, f"{name}_ci_low": self.ci_low, f"{name}_ci_high": self.ci_high}

    def describe(self) -> str:
        """``Δ +0.0123, 95% CI [-0.0400, 0.0650], 86 rows``."""
        return (
            f"Δ {self.delta:+.4g}, {self.confidence:.0%} CI [{self.ci_low:+.4g}, "
            f"{self.ci_high:+.4g}] on {self.n_rows} rows the champion never saw"
        )
