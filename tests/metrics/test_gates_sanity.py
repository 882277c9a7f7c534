"""Sanity gates: finite predictions, well-formed probability rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlflow_plugin.metrics import SanityResult, check_finite, check_probability_rows


class TestCheckFinite:
    def test_finite_passes(self) -> None:
        """Finite predictions of any shape pass with no offender."""
        result = check_finite(np.ones((4, 3)))
        assert result == SanityResult("finite", True, 0, "all 12 predictions are finite")

    @pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
    def test_non_finite_fails(self, bad: float) -> None:
        """NaN or inf fails and the detail gives the count and the first index."""
        result = check_finite(pd.Series([0.1, bad, 0.3, bad]))
        assert not result.passed
        assert result.n_bad == 2
        assert "(first at index 1)" in result.detail

    def test_first_index_of_a_matrix(self) -> None:
        """In a 2-D array the first offender is given as (row, column)."""
        matrix = np.zeros((3, 2))
        matrix[2, 1] = math.nan
        assert "(first at index (2, 1))" in check_finite(matrix).detail

    @pytest.mark.parametrize(
        ("predictions", "message"),
        [([], "predictions: is empty"), (["a"], "predictions: expected numbers")],
    )
    def test_unusable_input_raises(self, predictions: object, message: str) -> None:
        """Empty or non-numeric input is a ValueError, not a failed check."""
        with pytest.raises(ValueError, match=f"^{message}"):
            check_finite(predictions)  # type: ignore[arg-type]


class TestCheckProbabilityRows:
    def test_good_rows_pass(self) -> None:
        """Rows in [0, 1] summing to 1 within atol pass."""
        result = check_probability_rows([[0.2, 0.8], [1.0, 0.0], [0.5, 0.5 + 5e-7]])
        assert result.passed and result.n_bad == 0

    def test_atol_bounds_the_sum(self) -> None:
        """A row off by more than atol fails; a looser atol lets it pass."""
        rows = [[0.2, 0.8 + 1e-3]]
        assert not check_probability_rows(rows).passed
        assert check_probability_rows(rows, atol=1e-2).passed

    @pytest.mark.parametrize(
        "row", [[1.5, -0.5], [0.5, 0.6], [math.nan, 1.0], [math.inf, -math.inf]]
    )
    def test_bad_row_fails(self, row: list[float]) -> None:
        """Out-of-range values, a wrong sum or NaN make the row offend."""
        result = check_probability_rows([[0.5, 0.5], row, [0.1, 0.9]])
        assert not result.passed
        assert result.n_bad == 1
        assert "first: row 1" in result.detail

    def test_long_rows_stay_one_line(self) -> None:
        """The detail of a 1000-class row is elided and stays on one line."""
        rows = np.full((2, 1000), 0.002)
        assert "\n" not in check_probability_rows(rows).detail

    @pytest.mark.parametrize(
        ("probs", "atol", "message"),
        [
            ([0.2, 0.8], 1e-6, "probs: expected a 2-D array"),
            (np.empty((0, 2)), 1e-6, "probs: is empty"),
            ([[0.2, 0.8]], -1.0, "atol: must be >= 0"),
            ([[0.2, 0.8]], "tiny", "atol: expected a number"),
        ],
    )
    def test_unusable_input_raises(self, probs: object, atol: object, message: str) -> None:
        """A wrong shape, empty input or bad atol is a ValueError naming the argument."""
        with pytest.raises(ValueError, match=f"^{message}"):
            check_probability_rows(probs, atol=atol)  # type: ignore[arg-type]
