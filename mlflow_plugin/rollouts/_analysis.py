"""The rollout analysis: is the new version (canary, preview, or the freshly switched champion)
worse than the baseline (the champion, or the previous champion) on the same traffic?

Pure statistics (no mlflow, no database): the operator reads both sides from the prediction log
into :class:`Sample` values and asks :func:`judge` for a verdict. The thresholds are the policy's
``rollout`` section (:class:`~mlflow_plugin.policy.RolloutPolicy`, whose module shows them
with their defaults).

A check fails only when the difference is both statistically significant (one-sided, the
candidate worse) and larger than its tolerance, so neither noise on a big sample nor a big
difference on a tiny sample aborts a rollout:

- error and guardrail-violation rates (proportions of requests): Fisher's exact test,
  ``scipy.stats.fisher_exact(..., alternative="greater")``;
- latency: Kayenta's judge, the Mann–Whitney U test (``scipy.stats.mannwhitneyu``,
  ``alternative="greater"``) on the successful requests' latencies, plus the p99 ratio;
- matured outcomes (when both sides have ``min_matured``): the Brier scores' relative increase.

Each judged analysis tests fresh data (the window restarts after a judgement), and the level of
each test is ``alpha / looks`` where ``looks`` bounds the judged analyses of the rollout, so the
chance of aborting a version that is no worse stays below ``alpha`` (Bonferroni). See
docs/ARCHITECTURE.md, "Rollouts".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mlflow_plugin.policy._rollout import RolloutPolicy

__all__ = ["VERDICTS", "Analysis", "Sample", "judge", "latency_test", "rate_test"]

VERDICTS = ("success", "failure", "inconclusive")


@dataclass(frozen=True)
class Sample:
    """One side's traffic in the analysis window.

    Attributes:
        requests: requests answered (or attempted) by the version.
        errors: requests that raised.
        flagged: requests that broke a guardrail.
        latencies: milliseconds of the successful requests.
        brier: Brier score of its matured outcomes (None: not enough matured).
        matured: matured outcomes behind ``brier``.
    """

    requests: int = 0
    errors: int = 0
    flagged: int = 0
    latencies: Sequence[float] = field(default_factory=tuple)
    brier: float | None = None
    matured: int = 0

    def describe(self) -> str:
        return f"{self.requests} requests, {self.errors} errors, {self.flagged} guardrail"


@dataclass(frozen=True)
class Analysis:
    """A verdict (``success``, ``failure`` or ``inconclusive``) and why, one line per check."""

    verdict: str
    reasons: tuple[str, ...]
    metrics: Mapping[str, float | None] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        return f"{self.verdict}: " + "; ".join(self.reasons)


def rate_test(bad: int, n: int, bad_base: int, n_base: int) -> float:
    """One-sided Fisher exact p-value that the candidate's rate ``bad/n`` exceeds the
    baseline's ``bad_base/n_base`` (1.0 when either side is empty)."""
    if n <= 0 or n_base <= 0:
        return 1.0
    from scipy.stats import fisher_exact

    table = [[bad, n - bad], [bad_base, n_base - bad_base]]
    return float(fisher_exact(table, alternative="greater").pvalue)


def latency_test(latencies: Sequence[float], base: Sequence[float]) -> tuple[float, float]:
    """Mann–Whitney U statistic of ``latencies`` and its one-sided p-value that they are
    stochastically greater than ``base`` (``(nan, 1.0)`` when a side is empty)."""
    if len(latencies) == 0 or len(base) == 0:
        return math.nan, 1.0
    from scipy.stats import mannwhitneyu

    result = mannwhitneyu(latencies, base, alternative="greater")
    return float(result.statistic), float(result.pvalue)


def _p99(values: Sequence[float]) -> float | None:
    if len(values) == 0:
        return None
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), 99))


def judge(
    candidate: Sample,
    baseline: Sample,
    policy: RolloutPolicy,
    *,
    looks: int = 1,
    names: tuple[str, str] = ("canary", "champion"),
) -> Analysis:
    """The verdict on ``candidate`` against ``baseline`` (see the module docstring).

    Args:
        looks: how many judged analyses the rollout may have; each test runs at
            ``policy.alpha / looks``.
        names: what to call the two sides in the reasons.
    """
    new, old = names
    if candidate.requests < policy.min_requests or baseline.requests < policy.min_requests:
        return Analysis(
            "inconclusive",
            (
                f"not enough traffic: {new} {candidate.requests}, {old} {baseline.requests} "
                f"requests (min_requests {policy.min_requests})",
            ),
            {"candidate_requests": candidate.requests, "baseline_requests": baseline.requests},
        )
    alpha = policy.alpha / max(1, looks)
    failed: list[str] = []
    passed: list[str] = []
    metrics: dict[str, float | None] = {}
    for what, bad, bad_base, tolerance in (
        ("error rate", candidate.errors, baseline.errors, policy.max_error_rate_increase),
        (
            "guardrail rate",
            candidate.flagged,
            baseline.flagged,
            policy.max_guardrail_rate_increase,
        ),
    ):
        rate, base = bad / candidate.requests, bad_base / baseline.requests
        p = rate_test(bad, candidate.requests, bad_base, baseline.requests)
        key = what.replace(" ", "_")
        metrics.update({key: rate, f"{key}_baseline": base, f"{key}_p": p})
        line = f"{what} {rate:.4f} vs {base:.4f} (Fisher p={p:.3g}, tolerance +{tolerance:g})"
        (failed if p < alpha and rate - base > tolerance else passed).append(line)
    u, p = latency_test(candidate.latencies, baseline.latencies)
    p99, p99_base = _p99(candidate.latencies), _p99(baseline.latencies)
    metrics.update({"p99_ms": p99, "p99_ms_baseline": p99_base, "latency_p": p})
    if p99 is not None and p99_base is not None:
        ratio = p99 / p99_base if p99_base > 0 else (math.inf if p99 > 0 else 1.0)
        line = (
            f"p99 latency {p99:.1f} vs {p99_base:.1f} ms (ratio {ratio:.2f}, "
            f"Mann-Whitney U={u:.0f} p={p:.3g}, limit {policy.max_p99_latency_ratio:g})"
        )
        (failed if p < alpha and ratio > policy.max_p99_latency_ratio else passed).append(line)
    if (
        candidate.brier is not None
        and baseline.brier is not None
        and min(candidate.matured, baseline.matured) >= policy.min_matured
    ):
        limit = baseline.brier * (1.0 + policy.brier_increase)
        metrics.update({"brier": candidate.brier, "brier_baseline": baseline.brier})
        line = f"brier {candidate.brier:.4f} vs {baseline.brier:.4f} (limit {limit:.4f})"
        (failed if candidate.brier > limit else passed).append(line)
    if failed:
        return Analysis("failure", tuple(failed), metrics)
    return Analysis("success", tuple(passed), metrics)
