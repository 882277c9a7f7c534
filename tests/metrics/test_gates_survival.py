"""Survival gates against their reference libraries, and their input checks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from lifelines.datasets import load_rossi
from sksurv.metrics import brier_score, concordance_index_censored, integrated_brier_score
from sksurv.util import Surv

from mlflow_plugin.metrics import (
    UndefinedMetric,
    c_index_score,
    integrated_brier_loss,
    survival_brier_loss,
)


@pytest.fixture(scope="module")
def rossi() -> pd.DataFrame:
    """lifelines' recidivism data set (432 rows, ``week``/``arrest``)."""
    return load_rossi()


@pytest.fixture(scope="module")
def cox(rossi: pd.DataFrame) -> CoxPHFitter:
    """A Cox model fitted on every rossi row."""
    return CoxPHFitter().fit(rossi, "week", "arrest")


@pytest.fixture()
def tied() -> dict[str, np.ndarray]:
    """Survival data with ties in durations and in risk scores."""
    rng = np.random.default_rng(7)
    n = 300
    return {
        "durations": rng.integers(1, 8, n).astype(float),
        "events": rng.random(n) < 0.6,
        "risk": rng.integers(-2, 3, n).astype(float),
    }


class TestCIndexScore:
    def test_rossi_reference_value(self, rossi: pd.DataFrame, cox: CoxPHFitter) -> None:
        """Cox on rossi scored on its rows gives lifelines' documented 0.6403."""
        risk = cox.predict_partial_hazard(rossi)
        assert round(c_index_score(rossi["week"], rossi["arrest"], risk), 4) == 0.6403

    def test_equals_scikit_survival_with_ties(self, tied: dict[str, np.ndarray]) -> None:
        """Equals scikit-survival's Harrell C on data with tied times and tied scores."""
        expected = concordance_index_censored(tied["events"], tied["durations"], tied["risk"])[0]
        assert c_index_score(**tied) == pytest.approx(expected, abs=1e-12)

    def test_higher_risk_means_earlier_event(self) -> None:
        """Risk that falls with duration scores 1.0; rising risk scores 0.0."""
        durations = [1.0, 2.0, 3.0, 4.0]
        assert c_index_score(durations, [1, 1, 1, 1], [4.0, 3.0, 2.0, 1.0]) == 1.0
        assert c_index_score(durations, [1, 1, 1, 1], [1.0, 2.0, 3.0, 4.0]) == 0.0

    def test_constant_risk_is_one_half(self) -> None:
        """All-tied risk scores give exactly 0.5."""
        assert c_index_score([1, 2, 3], [1, 1, 0], [0.3, 0.3, 0.3]) == 0.5

    def test_accepts_lists_series_and_booleans(self, tied: dict[str, np.ndarray]) -> None:
        """Lists, pandas Series and boolean or 0/1 events give the same value."""
        expected = c_index_score(**tied)
        as_lists = {k: v.tolist() for k, v in tied.items()}
        as_series = {k: pd.Series(v) for k, v in tied.items()}
        as_ints = {**tied, "events": tied["events"].astype(int)}
        for kwargs in (as_lists, as_series, as_ints):
            assert c_index_score(**kwargs) == expected

    def test_no_admissible_pairs_is_undefined(self) -> None:
        """All censored: lifelines' ZeroDivisionError becomes UndefinedMetric."""
        with pytest.raises(UndefinedMetric, match="no admissible pairs") as info:
            c_index_score([1, 2, 3], [0, 0, 0], [0.1, 0.2, 0.3])
        assert info.value.metric == "c_index"
        assert isinstance(info.value.__cause__, ZeroDivisionError)

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"risk": [0.1, 0.2]}, "risk: has 2 rows but durations has 3"),
            ({"events": [1, 0, 2]}, "events: event indicators must be 0/1 or boolean"),
            ({"durations": [1, -2, 3]}, "durations: durations must be >= 0"),
            ({"durations": []}, "durations: is empty"),
            ({"risk": [[0.1], [0.2], [0.3]]}, "risk: expected a 1-D array"),
            ({"risk": ["a", "b", "c"]}, "risk: expected numbers"),
            ({"risk": [0.1, None, 0.3]}, "risk: 1 value(s) are NaN or infinite"),
            ({"durations": pd.Series([1, pd.NA, 3], dtype="Int64")}, "durations: 1 value(s)"),
        ],
    )
    def test_bad_input_names_the_argument(self, kwargs: dict[str, object], message: str) -> None:
        """Bad input raises ValueError whose one-line message names the argument."""
        args = {"durations": [1, 2, 3], "events": [1, 0, 1], "risk": [0.1, 0.2, 0.3], **kwargs}
        with pytest.raises(ValueError) as info:
            c_index_score(**args)  # type: ignore[arg-type]
        assert str(info.value).startswith(message)
        assert "\n" not in str(info.value)


class TestSurvivalBrierLoss:
    def test_equals_scikit_survival(self, rossi: pd.DataFrame, cox: CoxPHFitter) -> None:
        """Equals sksurv.metrics.brier_score on rossi at week 26."""
        survival = cox.predict_survival_function(rossi, times=[26]).T[26].to_numpy()
        y = Surv.from_arrays(rossi["arrest"].astype(bool), rossi["week"])
        expected = brier_score(y, y, survival, 26)[1][0]
        ours = survival_brier_loss(
            rossi["week"],
            rossi["arrest"],
            survival,
            26,
            train_durations=rossi["week"],
            train_events=rossi["arrest"],
        )
        assert ours == pytest.approx(expected, rel=1e-12)
        assert 0.0 < ours < 0.25

    @pytest.mark.parametrize("horizon", [0.5, 52.0, 60.0])
    def test_horizon_outside_follow_up(self, rossi: pd.DataFrame, horizon: float) -> None:
        """A horizon outside [min, max) of the test durations is refused, naming horizon."""
        with pytest.raises(ValueError, match=r"^horizon: .* outside the follow-up range"):
            survival_brier_loss(
                rossi["week"],
                rossi["arrest"],
                np.full(len(rossi), 0.8),
                horizon,
                train_durations=rossi["week"],
                train_events=rossi["arrest"],
            )

    def test_test_durations_beyond_training(self) -> None:
        """Test durations past the last training time are refused, naming durations."""
        with pytest.raises(ValueError, match="^durations: maximum 9 exceeds"):
            survival_brier_loss(
                [1, 5, 9],
                [1, 0, 1],
                [0.9, 0.5, 0.2],
                2,
                train_durations=[1, 2, 8],
                train_events=[1, 1, 0],
            )

    def test_all_censored_is_undefined(self) -> None:
        """Every test sample censored: UndefinedMetric, not a number."""
        with pytest.raises(UndefinedMetric, match="events: every sample is censored"):
            survival_brier_loss(
                [1, 5, 9],
                [0, 0, 0],
                [0.9, 0.5, 0.2],
                2,
                train_durations=[1, 5, 9],
                train_events=[1, 0, 1],
            )

    def test_probability_out_of_range(self) -> None:
        """A survival probability above 1 is refused, naming survival_at_horizon."""
        with pytest.raises(ValueError, match="^survival_at_horizon: probabilities must be"):
            survival_brier_loss(
                [1, 5, 9],
                [1, 0, 1],
                [0.9, 1.5, 0.2],
                2,
                train_durations=[1, 5, 9],
                train_events=[1, 0, 1],
            )


class TestIntegratedBrierLoss:
    def test_equals_scikit_survival(self, rossi: pd.DataFrame, cox: CoxPHFitter) -> None:
        """Equals sksurv.metrics.integrated_brier_score on rossi over weeks 5..45."""
        times = np.arange(5.0, 50.0, 5.0)
        matrix = cox.predict_survival_function(rossi, times=times).T.to_numpy()
        y = Surv.from_arrays(rossi["arrest"].astype(bool), rossi["week"])
        expected = integrated_brier_score(y, y, matrix, times)
        ours = integrated_brier_loss(
            rossi["week"],
            rossi["arrest"],
            matrix,
            times,
            train_durations=rossi["week"],
            train_events=rossi["arrest"],
        )
        assert ours == pytest.approx(expected, rel=1e-12)

    @pytest.mark.parametrize(
        ("matrix", "times", "message"),
        [
            ([[0.9, 0.8]] * 3, [4.0, 2.0], "times: must be strictly increasing"),
            ([[0.9]] * 3, [2.0], "times: need at least two time points"),
            ([[0.9, 0.8, 0.7]] * 3, [2.0, 4.0], "survival_matrix: has 3 columns"),
            ([0.9, 0.8, 0.7], [2.0, 4.0], "survival_matrix: expected a 2-D array"),
            ([[0.9, 0.8]] * 3, [2.0, 9.0], "times: 9 is outside the follow-up range"),
        ],
    )
    def test_bad_grid(self, matrix: list[Any], times: list[float], message: str) -> None:
        """Unsorted, too short, misaligned or out-of-range grids are refused by name."""
        with pytest.raises(ValueError) as info:
            integrated_brier_loss(
                [1, 5, 9],
                [1, 0, 1],
                matrix,
                times,
                train_durations=[1, 5, 9],
                train_events=[1, 0, 1],
            )
        assert str(info.value).startswith(message)
