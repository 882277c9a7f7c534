"""The rollout analysis statistics (pure; references are published values)."""

from __future__ import annotations

import pytest

from mlflow_plugin import ConfigError
from mlflow_plugin.policy import Policy, RolloutPolicy
from mlflow_plugin.rollouts._analysis import Sample, judge, latency_test, rate_test

POLICY = RolloutPolicy(min_requests=50)


class TestReferences:
    def test_fisher_exact_lady_tasting_tea(self):
        """Fisher's tea-tasting table [[3, 1], [1, 3]]: one-sided p = 17/70 (Fisher 1935)."""
        assert rate_test(3, 4, 1, 4) == pytest.approx(17 / 70, rel=1e-9)

    def test_mann_whitney_exact_reference(self):
        """The scipy documentation's example (males vs females): U = 17, two-sided exact
        p = 0.1111, so one-sided 'greater' p = 0.0556 (Conover, Practical Nonparametric
        Statistics)."""
        males = [19, 22, 16, 29, 24]
        females = [20, 11, 17, 12]
        u, p = latency_test(males, females)
        assert u == 17
        assert p == pytest.approx(0.0556, abs=1e-4)

    def test_empty_sides_are_not_significant(self):
        """An empty side gives p = 1: nothing to test."""
        assert rate_test(0, 0, 1, 10) == 1.0
        assert latency_test([], [1.0])[1] == 1.0


def _side(n: int, errors: int = 0, flagged: int = 0, latency: float = 10.0) -> Sample:
    lat = tuple(latency + (i % 7) * 0.1 for i in range(n - errors))
    return Sample(requests=n, errors=errors, flagged=flagged, latencies=lat)


class TestJudge:
    def test_below_min_requests_is_inconclusive_never_success(self):
        """Too little traffic on either side is inconclusive, even with a perfect canary."""
        verdict = judge(_side(10), _side(500), POLICY)
        assert verdict.verdict == "inconclusive" and "min_requests 50" in verdict.summary
        assert judge(_side(500), _side(0), POLICY).verdict == "inconclusive"

    def test_error_rate_failure(self):
        """30 % errors against none: a significant and material increase fails."""
        verdict = judge(_side(200, errors=60), _side(400), POLICY)
        assert verdict.verdict == "failure" and "error rate 0.3000" in verdict.summary

    def test_noise_within_tolerance_passes(self):
        """Equal error rates (1 %) and latencies pass."""
        verdict = judge(_side(300, errors=3), _side(300, errors=3), POLICY)
        assert verdict.verdict == "success", verdict.summary

    def test_significant_but_immaterial_increase_passes(self):
        """A significant increase below the tolerance (0.5 % on big samples) is not a failure."""
        big = RolloutPolicy(min_requests=50, max_error_rate_increase=0.01)
        verdict = judge(_side(100_000, errors=600), _side(100_000, errors=100), big)
        assert verdict.metrics["error_rate_p"] < 1e-6
        assert verdict.verdict == "success"

    def test_guardrail_and_latency_failures(self):
        """Guardrail violations and a 3x slower canary each fail on their own."""
        assert judge(_side(200, flagged=40), _side(200), POLICY).verdict == "failure"
        slow = judge(_side(200, latency=30.0), _side(200, latency=10.0), POLICY)
        assert slow.verdict == "failure" and "p99 latency" in slow.summary

    def test_matured_outcomes_compare_brier(self):
        """With enough matured outcomes on both sides, a Brier 20 % worse fails."""
        a = Sample(100, 0, 0, (1.0,) * 100, brier=0.24, matured=30)
        b = Sample(100, 0, 0, (1.0,) * 100, brier=0.20, matured=30)
        assert judge(a, b, POLICY).verdict == "failure"
        few = Sample(100, 0, 0, (1.0,) * 100, brier=0.24, matured=5)
        assert judge(few, b, POLICY).verdict == "success"

    def test_bonferroni_looks_make_each_test_stricter(self):
        """A borderline difference fails one look but not one of 100 looks."""
        cand, base = _side(400, errors=14), _side(400, errors=2)
        assert judge(cand, base, POLICY, looks=1).verdict == "failure"
        assert judge(cand, base, POLICY, looks=100).verdict == "success"


class TestPolicySection:
    def test_defaults_and_round_trip(self):
        """The default policy carries the rollout defaults; a custom section round-trips."""
        assert Policy.default().rollout == RolloutPolicy()
        doc = {"gates": {"f1": {"threshold": 0.4}}, "rollout": {"min_requests": 20, "alpha": 0.01}}
        policy = Policy.from_dict(doc)
        assert policy.rollout.min_requests == 20 and policy.rollout.alpha == 0.01
        assert Policy.from_dict(policy.to_dict()) == policy

    @pytest.mark.parametrize(
        "section,message",
        [
            ({"min_request": 5}, "rollout.min_request: unknown key"),
            ({"min_requests": 0}, "rollout.min_requests"),
            ({"failure_limit": 1.5}, "whole number"),
            ({"alpha": 0.9}, "rollout.alpha"),
            ({"max_p99_latency_ratio": 0.5}, "rollout.max_p99_latency_ratio"),
            ("yes", "rollout: expected a mapping"),
        ],
    )
    def test_bad_sections_fail_with_their_path(self, section, message):
        """Unknown keys and out-of-range values fail at load with the dotted path."""
        with pytest.raises(ConfigError, match=message):
            Policy.from_dict({"gates": {"f1": {"threshold": 0.4}}, "rollout": section})
