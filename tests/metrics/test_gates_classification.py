"""Classification gates against scikit-learn, zero division and their input checks."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from sklearn import metrics as skm

from mlflow_plugin.metrics import (
    UndefinedMetric,
    brier_loss,
    f1_score,
    precision_score,
    recall_score,
)

AT_THRESHOLD: dict[str, tuple[Callable[..., float], Callable[..., float]]] = {
    "f1": (f1_score, skm.f1_score),
    "precision": (precision_score, skm.precision_score),
    "recall": (recall_score, skm.recall_score),
}


@pytest.fixture()
def labelled() -> tuple[np.ndarray, np.ndarray]:
    """500 binary labels and loosely informative probabilities."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.3 * y + 0.7 * rng.random(500), 0.0, 1.0)
    return y, p


class TestBrierLoss:
    def test_equals_scikit_learn(self, labelled: tuple[np.ndarray, np.ndarray]) -> None:
        """Equals sklearn.metrics.brier_score_loss."""
        y, p = labelled
        assert brier_loss(y, p) == pytest.approx(skm.brier_score_loss(y, p), rel=1e-12)

    def test_single_class(self) -> None:
        """All-negative labels are scored against class 1, not refused."""
        assert brier_loss([0, 0, 0], [0.1, 0.2, 0.3]) == pytest.approx((0.01 + 0.04 + 0.09) / 3)

    def test_probability_out_of_range(self) -> None:
        """A probability below 0 is refused, naming y_prob."""
        with pytest.raises(ValueError, match=r"^y_prob: probabilities must be within \[0, 1\]"):
            brier_loss([0, 1], [-0.1, 0.5])


class TestAtThreshold:
    @pytest.mark.parametrize("name", sorted(AT_THRESHOLD))
    @pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
    def test_equals_scikit_learn(
        self, labelled: tuple[np.ndarray, np.ndarray], name: str, threshold: float
    ) -> None:
        """Equals scikit-learn on labels predicted as y_prob >= threshold."""
        ours, theirs = AT_THRESHOLD[name]
        y, p = labelled
        expected = theirs(y, (p >= threshold).astype(int), zero_division=0.0)
        assert ours(y, p, threshold=threshold) == pytest.approx(expected, rel=1e-12)

    @pytest.mark.parametrize("name", sorted(AT_THRESHOLD))
    def test_boolean_labels(self, labelled: tuple[np.ndarray, np.ndarray], name: str) -> None:
        """Boolean labels score as 0/1 labels."""
        ours, _ = AT_THRESHOLD[name]
        y, p = labelled
        assert ours(y.astype(bool), p) == ours(y, p)

    def test_threshold_is_inclusive(self) -> None:
        """A probability equal to the threshold is predicted positive."""
        assert recall_score([1], [0.5], threshold=0.5) == 1.0

    @pytest.mark.parametrize("name", sorted(AT_THRESHOLD))
    @pytest.mark.parametrize("zero_division", [0.0, 1.0])
    def test_zero_division_value(self, name: str, zero_division: float) -> None:
        """With no positives at all, the explicit zero_division value comes back."""
        ours, _ = AT_THRESHOLD[name]
        assert ours([0, 0], [0.1, 0.2], zero_division=zero_division) == zero_division

    @pytest.mark.parametrize("name", sorted(AT_THRESHOLD))
    def test_zero_division_nan_is_undefined(self, name: str) -> None:
        """zero_division=nan surfaces as UndefinedMetric, never as a NaN value."""
        ours, _ = AT_THRESHOLD[name]
        with pytest.raises(UndefinedMetric, match=f"^{name}: undefined, zero division"):
            ours([0, 0], [0.1, 0.2], zero_division=math.nan)

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"zero_division": 0.5}, "zero_division: must be 0.0, 1.0 or nan"),
            ({"zero_division": "warn"}, "zero_division: must be 0.0, 1.0 or nan"),
            ({"threshold": 1.5}, "threshold: must be <= 1"),
            ({"threshold": math.nan}, "threshold: expected a finite number"),
            ({"y_true": [0, 2]}, "y_true: labels must be 0/1 or boolean, got 2 at index 1"),
            ({"y_true": [0.0, 0.5]}, "y_true: labels must be 0/1 or boolean, got 0.5"),
            ({"y_true": [0, 1, 1]}, "y_prob: has 2 rows but y_true has 3"),
            ({"y_prob": [0.2, math.inf]}, "y_prob: 1 value(s) are NaN or infinite"),
        ],
    )
    def test_bad_input_names_the_argument(self, kwargs: dict[str, object], message: str) -> None:
        """Bad input raises ValueError whose message starts with the argument's name."""
        args: dict[str, object] = {"y_true": [0, 1], "y_prob": [0.2, 0.8], **kwargs}
        with pytest.raises(ValueError) as info:
            f1_score(**args)  # type: ignore[arg-type]
        assert str(info.value).startswith(message)
