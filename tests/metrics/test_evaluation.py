"""evaluate_policy: MLflow's MetricThreshold semantics, strict thresholds, undefined outcomes."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlflow_plugin.evaluation._evaluate import evaluate_policy
from mlflow_plugin.metrics import GateStatus, SanityResult, UndefinedMetric
from mlflow_plugin.policy import Policy


def _policy(name: str = "c_index", **gate: Any) -> Policy:
    return Policy.from_dict({"gates": {name: {"threshold": 0.5, **gate}}})


def _status(policy: Policy, value: Any, champion: Any = None, name: str = "c_index") -> GateStatus:
    champion_metrics = None if champion is None else {name: champion}
    return evaluate_policy(policy, {name: value}, champion_metrics).gate(name).status


PASSED, FAILED, UNDEFINED = GateStatus.PASSED, GateStatus.FAILED, GateStatus.UNDEFINED
unit = st.floats(0.0, 1.0)


class TestThresholdEquality:
    def test_equal_value_fails_a_strict_threshold(self) -> None:
        """C-index exactly 0.5 fails 'C-index > 0.5'; the next double up passes."""
        policy = Policy.default()
        assert _status(policy, 0.5) is FAILED
        assert _status(policy, math.nextafter(0.5, 1.0)) is PASSED

    def test_equal_value_fails_a_strict_lower_is_better_threshold(self) -> None:
        """Brier exactly 0.3 fails 'Brier < 0.3'; the next double down passes."""
        policy = Policy.default()
        assert _status(policy, 0.3, name="brier") is FAILED
        assert _status(policy, math.nextafter(0.3, 0.0), name="brier") is PASSED

    def test_inclusive_threshold_passes_on_equality(self) -> None:
        """With inclusive: true the value may equal the threshold (MLflow's own >=)."""
        assert _status(_policy(inclusive=True), 0.5) is PASSED
        assert _status(_policy("brier", inclusive=True), 0.5, name="brier") is PASSED

    def test_equal_to_champion_passes(self) -> None:
        """'>= champion - 0.0': equalling the champion passes, a hair below fails."""
        policy = Policy.default()
        assert _status(policy, 0.64, champion=0.64) is PASSED
        assert _status(policy, math.nextafter(0.64, 0.0), champion=0.64) is FAILED

    def test_negative_delta_tolerates_a_drop(self) -> None:
        """min_delta_vs_champion: -0.01 lets the candidate be 0.01 below the champion."""
        policy = _policy(min_delta_vs_champion=-0.01)
        assert _status(policy, 0.635, champion=0.64) is PASSED
        assert _status(policy, 0.625, champion=0.64) is FAILED

    def test_positive_delta_uses_mlflow_min_absolute_change(self) -> None:
        """A positive delta requires that much improvement (MLflow's min_absolute_change)."""
        policy = _policy(min_delta_vs_champion=0.02)
        assert _status(policy, 0.66, champion=0.64) is PASSED
        assert _status(policy, 0.65, champion=0.64) is FAILED

    def test_lower_is_better_champion_comparison(self) -> None:
        """For Brier the candidate must be <= champion - delta."""
        policy = _policy("brier", min_delta_vs_champion=0.0)
        assert _status(policy, 0.2, champion=0.2, name="brier") is PASSED
        assert _status(policy, 0.21, champion=0.2, name="brier") is FAILED

    def test_relative_change_is_mlflows(self) -> None:
        """min_relative_change_vs_champion: 0.1 needs 10% over |champion|."""
        policy = _policy(min_relative_change_vs_champion=0.1)
        assert _status(policy, 0.66, champion=0.6) is PASSED
        assert _status(policy, 0.65, champion=0.6) is FAILED

    @settings(max_examples=200, deadline=None)
    @given(value=unit, threshold=unit, higher=st.booleans(), inclusive=st.booleans())
    def test_matches_the_documented_inequality(
        self, value: float, threshold: float, higher: bool, inclusive: bool
    ) -> None:
        """Over random floats the verdict is exactly value >|>=|<|<= threshold."""
        name = "c_index" if higher else "brier"
        policy = Policy.from_dict(
            {"gates": {name: {"threshold": threshold, "inclusive": inclusive}}}
        )
        if higher:
            expected = value >= threshold if inclusive else value > threshold
        else:
            expected = value <= threshold if inclusive else value < threshold
        assert (_status(policy, value, name=name) is PASSED) is expected


class TestUndefined:
    @pytest.mark.parametrize(
        "value",
        [None, math.nan, math.inf, -math.inf, UndefinedMetric("c_index", "no admissible pairs")],
    )
    def test_undefined_values_never_pass(self, value: Any) -> None:
        """None, NaN, inf and UndefinedMetric make the gate undefined and the report fail."""
        report = evaluate_policy(_policy(inclusive=True), {"c_index": value})
        assert report.gate("c_index").status is UNDEFINED
        assert report.gate("c_index").value is None
        assert not report.passed

    def test_missing_metric_is_undefined(self) -> None:
        """A gate whose metric was not computed is undefined, with the reason."""
        report = evaluate_policy(Policy.default(), {"c_index": 0.7})
        assert report.gate("f1").status is UNDEFINED
        assert report.gate("f1").reason == "missing"
        assert report.failed_gates == ("f1", "precision", "brier")

    def test_reason_of_undefined_metric_is_kept(self) -> None:
        """The UndefinedMetric's reason is the row's reason."""
        report = evaluate_policy(
            _policy(), {"c_index": UndefinedMetric("c_index", "no admissible pairs")}
        )
        assert report.gate("c_index").reason == "no admissible pairs"

    @settings(max_examples=50, deadline=None)
    @given(
        value=st.sampled_from([None, math.nan, math.inf]),
        threshold=unit,
        inclusive=st.booleans(),
        champion=st.none() | unit,
    )
    def test_undefined_never_passes(
        self, value: Any, threshold: float, inclusive: bool, champion: float | None
    ) -> None:
        """Whatever the threshold and the champion, an undefined value never passes."""
        policy = Policy.from_dict(
            {
                "gates": {
                    "c_index": {
                        "threshold": threshold,
                        "inclusive": inclusive,
                        "min_delta_vs_champion": -1.0,
                    }
                }
            }
        )
        assert _status(policy, value, champion=champion) is UNDEFINED

    def test_champion_without_the_metric_is_undefined(self) -> None:
        """A champion lacking the metric makes a champion comparison undefined."""
        report = evaluate_policy(Policy.default(), {"c_index": 0.7}, {"f1": 0.5})
        assert report.gate("c_index").status is UNDEFINED
        assert "cannot compare with the champion" in report.gate("c_index").reason

    def test_no_champion_checks_the_threshold_only(self) -> None:
        """Without a champion (first model) only the absolute threshold applies."""
        report = evaluate_policy(_policy(min_delta_vs_champion=0.0), {"c_index": 0.7})
        assert report.gate("c_index").status is PASSED
        assert report.gate("c_index").reason.endswith("no champion yet")

    def test_failed_threshold_wins_over_missing_champion(self) -> None:
        """A value below the threshold is failed even when the champion value is missing."""
        assert _status(Policy.default(), 0.4, champion=math.nan) is FAILED


class TestEvaluatePolicy:
    def test_full_report(self) -> None:
        """Each row carries value, threshold, comparator, champion value and bound."""
        report = evaluate_policy(
            Policy.default(),
            {"c_index": 0.66, "f1": 0.5, "precision": 0.6, "brier": 0.2, "extra": 1.0},
            {"c_index": 0.65},
        )
        assert report.passed
        row = report.gate("c_index")
        assert (row.value, row.threshold, row.comparator) == (0.66, 0.5, ">")
        assert (row.champion_value, row.champion_bound) == (0.65, 0.65)
        assert [r.name for r in report.gates] == ["c_index", "f1", "precision", "brier"]

    def test_sanity_results_become_rows(self) -> None:
        """Sanity results are appended; a failed one fails the report."""
        metrics = {"c_index": 0.7, "f1": 0.5, "precision": 0.6, "brier": 0.2}
        bad = SanityResult("probability_rows", False, 3, "3 of 10 rows ...")
        report = evaluate_policy(Policy.default(), metrics, sanity=[bad])
        assert report.failed_gates == ("probability_rows",)
        row = report.gate("probability_rows")
        assert (row.value, row.threshold, row.comparator) == (3.0, 0.0, "==")

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (({"gates": {}}, {}), "policy: expected a Policy"),
            ((Policy.default(), [0.5]), "candidate_metrics: expected a mapping"),
            ((Policy.default(), {"f1": "0.5"}), "candidate_metrics.f1: expected a number"),
            (
                (Policy.default(), {}, {"c_index": True}),
                "champion_metrics.c_index: expected a number",
            ),
        ],
    )
    def test_bad_arguments(self, args: tuple[Any, ...], message: str) -> None:
        """Wrong kinds of arguments raise ValueError naming them."""
        with pytest.raises(ValueError, match=f"^{message}"):
            evaluate_policy(*args)

    def test_mlflow_logs_are_quiet(self) -> None:
        """MLflow's per-call INFO lines are not emitted, and its logger level is restored."""
        import logging

        import mlflow  # noqa: F401  (configures mlflow's loggers first, as in real use)

        class Records(logging.Handler):
            def __init__(self) -> None:
                super().__init__(logging.DEBUG)
                self.records: list[logging.LogRecord] = []

            def emit(self, record: logging.LogRecord) -> None:
                self.records.append(record)

        logger = logging.getLogger("mlflow.models.evaluation.validation")
        handler, before = Records(), logger.level
        logger.addHandler(handler)
        try:
            evaluate_policy(Policy.default(), {"c_index": 0.7})
        finally:
            logger.removeHandler(handler)
        assert handler.records == []
        assert logger.level == before


class TestImportCost:
    def test_importing_evaluation_and_gates_is_light(self) -> None:
        """Importing evaluation and the gate types loads neither mlflow nor the metric libraries."""
        code = (
            "import sys, mlflow_plugin.evaluation, mlflow_plugin.metrics, mlflow_plugin.policy;"
            "heavy = [m for m in ('mlflow', 'sklearn', 'lifelines', 'sksurv') if m in sys.modules];"
            "print(','.join(heavy))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == ""

    def test_gates_never_import_mlflow(self) -> None:
        """Computing every gate leaves mlflow unimported."""
        code = (
            "import sys; from mlflow_plugin import metrics as g;"
            "g.c_index_score([1, 2, 3], [1, 0, 1], [3, 2, 1]);"
            "g.survival_brier_loss([1, 2, 3], [1, 0, 1], [.9, .5, .1], 1.5,"
            " train_durations=[1, 2, 3], train_events=[1, 0, 1]);"
            "g.f1_score([0, 1], [.2, .8]); g.brier_loss([0, 1], [.2, .8]);"
            "g.check_finite([1.0]); g.check_probability_rows([[.5, .5]]);"
            "from mlflow_plugin.policy import Policy; Policy.default();"
            "print('mlflow' in sys.modules)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "False"
