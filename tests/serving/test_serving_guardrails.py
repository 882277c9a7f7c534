"""Guardrails on generic model outputs (no server)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlflow_plugin import ConfigError
from mlflow_plugin.serving import Guardrails


def rules(violations) -> list[str]:
    return [v.rule for v in violations]


def frame(risk=0.3, low=0.6, high=0.4, n=5) -> pd.DataFrame:
    return pd.DataFrame(
        {"risk": np.full(n, risk), "p_low": np.full(n, low), "p_high": np.full(n, high)}
    )


class TestFrames:
    def test_good_pipeline_output_passes(self):
        """A risk column plus p_* buckets summing to 1 breaks nothing."""
        assert Guardrails().check(frame()) == ()

    def test_nan_and_inf_are_caught(self):
        """NaN or inf anywhere in a numeric column is a non_finite violation."""
        out = frame()
        out.loc[2, "risk"] = np.nan
        out.loc[3, "risk"] = np.inf
        (violation,) = Guardrails().check(out)
        assert violation.rule == "non_finite"
        assert "2 of 15" in violation.detail

    def test_probability_outside_unit_interval(self):
        """A p_* value below 0 or above 1 breaks probability_range, and the gates' row check
        (a distribution row holds probabilities) even though the row sums to 1."""
        assert rules(Guardrails().check(frame(low=1.2, high=-0.2))) == [
            "probability_range",
            "distribution_sum",
        ]

    def test_rows_must_sum_to_one(self):
        """p_* columns form a distribution; a row summing to 1.1 breaks distribution_sum."""
        assert rules(Guardrails().check(frame(low=0.7, high=0.4))) == ["distribution_sum"]

    def test_tolerance_is_configurable(self):
        """A sum off by 1e-4 passes with tolerance 1e-3."""
        out = frame(low=0.6001, high=0.4)
        assert rules(Guardrails().check(out)) == ["distribution_sum"]
        assert Guardrails(tolerance=1e-3).check(out) == ()

    def test_single_probability_column_is_not_a_distribution(self):
        """One p_* column is range-checked but not required to sum to 1."""
        out = pd.DataFrame({"risk": [0.1, 0.2], "p_event": [0.3, 0.4]})
        assert Guardrails().check(out) == ()

    def test_configured_columns_replace_the_prefix(self):
        """probability_columns names the columns; p_* names are then ordinary numbers."""
        out = pd.DataFrame({"prob_a": [0.5, 0.5], "prob_b": [0.5, 0.6], "p_x": [3.0, 4.0]})
        rails = Guardrails(probability_columns=("prob_a", "prob_b"))
        assert rules(rails.check(out)) == ["distribution_sum"]

    def test_configured_distributions(self):
        """Explicit groups: each must sum to 1; () checks no sums."""
        out = pd.DataFrame({"p_a": [0.5], "p_b": [0.5], "p_c": [0.9], "p_d": [0.1]})
        assert Guardrails(distributions=(("p_a", "p_b"), ("p_c", "p_d"))).check(out) == ()
        assert rules(Guardrails().check(out)) == ["distribution_sum"]
        assert Guardrails(distributions=()).check(out) == ()

    def test_mixed_frame_checks_numeric_columns_only(self):
        """String columns next to numbers are ignored, the numbers still checked."""
        out = pd.DataFrame({"label": ["a", "b"], "risk": [0.1, np.nan]})
        assert rules(Guardrails().check(out)) == ["non_finite"]

    def test_empty_frame(self):
        """An empty output breaks nothing."""
        assert Guardrails().check(pd.DataFrame()) == ()


class TestOtherOutputs:
    def test_arrays_lists_and_series(self):
        """Bare arrays, lists and Series are checked for finiteness."""
        rails = Guardrails()
        assert rails.check(np.array([1.0, 2.0])) == ()
        assert rules(rails.check([1.0, float("nan")])) == ["non_finite"]
        assert rules(rails.check(pd.Series([np.inf]))) == ["non_finite"]
        assert rails.check(np.array([1, 2, 3])) == ()
        assert rails.check(["a", "b"]) == ()

    def test_named_probability_series(self):
        """A Series named p_* is range-checked."""
        assert rules(Guardrails().check(pd.Series([1.5], name="p_event"))) == ["probability_range"]

    def test_predict_proba_arrays_on_request(self):
        """array_probabilities treats a 2-D array as rows of a distribution."""
        probs = np.array([[0.2, 0.8], [0.5, 0.6]])
        assert Guardrails().check(probs) == ()
        assert rules(Guardrails(array_probabilities=True).check(probs)) == ["distribution_sum"]

    def test_dict_outputs(self):
        """Each value of a dict output is checked, the key named in the detail."""
        (violation,) = Guardrails().check({"a": [1.0], "b": [np.nan]})
        assert violation.rule == "non_finite" and violation.detail.startswith("b:")


class TestConfig:
    def test_latency_budget(self):
        """Only answers slower than the budget are flagged."""
        rails = Guardrails(latency_budget_ms=50)
        assert rails.check_latency(0.01) is None
        assert rails.check_latency(0.2).rule == "latency_budget"
        assert Guardrails().check_latency(100.0) is None

    @pytest.mark.parametrize(
        "kwargs",
        [{"tolerance": -1}, {"latency_budget_ms": 0}, {"distributions": (("p_a",),)}],
    )
    def test_bad_config_fails_at_construction(self, kwargs):
        """Nonsense settings raise ConfigError naming the setting."""
        with pytest.raises(ConfigError, match="guardrails"):
            Guardrails(**kwargs)

    def test_off_checks_nothing(self):
        """Guardrails.off() lets NaN through."""
        assert Guardrails.off().check(frame(risk=np.nan)) == ()


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, max_side=6),
        elements=st.floats(allow_nan=True, allow_infinity=True),
    )
)
def test_never_raises_and_flags_every_non_finite(values):
    """Any float frame is checked without raising; non_finite is flagged iff a value is not finite."""
    out = pd.DataFrame(values, columns=[f"p_{i}" for i in range(values.shape[1])])
    found = rules(Guardrails().check(out))
    assert ("non_finite" in found) == (not np.isfinite(values).all())


def test_the_pipelines_output_contract():
    """The pipeline's pyfunc output (risk + p_<lo>_<hi> ... p_gt_<t> buckets) is checked as one distribution."""
    from mlflow_plugin.training._model import bucket_columns

    columns = bucket_columns([13.0, 26.0, 52.0])
    probs = np.array([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]])
    out = pd.DataFrame(probs, columns=columns)
    out.insert(0, "risk", [1.3, 0.7])
    assert Guardrails().check(out) == ()
    out.iloc[1, 2] = 0.3
    assert rules(Guardrails().check(out)) == ["distribution_sum"]
