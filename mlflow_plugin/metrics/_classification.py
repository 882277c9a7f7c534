"""Binary classification gates (scikit-learn), scored from positive-class probabilities.

``*_score`` is higher-is-better, ``*_loss`` lower-is-better. A sample is predicted positive
when ``y_prob >= threshold`` (so ``threshold=0.5`` puts a probability of exactly 0.5 in the
positive class). ``zero_division`` is passed to scikit-learn explicitly; when it is ``nan``
and the division happens, the gate raises :class:`~mlflow_plugin.metrics.UndefinedMetric`
instead of returning NaN, so an undefined value is never mistaken for a number.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from numpy.typing import ArrayLike, NDArray
from sklearn import metrics as skm

from mlflow_plugin.metrics._checks import (
    UndefinedMetric,
    as_labels,
    as_number,
    as_probabilities,
    same_length,
)

__all__ = ["brier_loss", "f1_score", "precision_score", "recall_score"]


def _checked(y_true: ArrayLike, y_prob: ArrayLike) -> tuple[NDArray[Any], NDArray[Any]]:
    labels = as_labels("y_true", y_true)
    probs = as_probabilities("y_prob", y_prob)
    same_length(y_true=labels, y_prob=probs)
    return labels, probs


def _zero_division(value: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if math.isnan(value) or value in (0.0, 1.0):
            return float(value)
    raise ValueError(f"zero_division: must be 0.0, 1.0 or nan, got {value!r}")


def _at_threshold(
    metric: str,
    score: Callable[..., Any],
    y_true: ArrayLike,
    y_prob: ArrayLike,
    threshold: float,
    zero_division: float,
) -> float:
    labels, probs = _checked(y_true, y_prob)
    cut = as_number("threshold", threshold, lo=0.0, hi=1.0)
    zd = _zero_division(zero_division)
    # A zero-copy int8 view of the boolean predictions: labels {0, 1} for scikit-learn.
    predicted = (probs >= cut).view("int8")
    value = float(score(labels, predicted, pos_label=1, zero_division=zd))
    if math.isnan(value):
        raise UndefinedMetric(metric, "zero division (no predicted or no actual positives)")
    return value


def brier_loss(y_true: ArrayLike, y_prob: ArrayLike) -> float:
    """Brier score of positive-class probabilities (:func:`sklearn.metrics.brier_score_loss`).

    Args:
        y_true: binary labels, 0/1 or booleans.
        y_prob: predicted probability of class 1, in ``[0, 1]``.

    Returns:
        Mean squared difference between ``y_prob`` and ``y_true``, in ``[0, 1]``.

    Raises:
        ValueError: an argument is empty, not 1-D, holds NaN/inf or non-binary labels,
            probabilities out of range, or the lengths differ.
    """
    labels, probs = _checked(y_true, y_prob)
    return float(skm.brier_score_loss(labels, probs, pos_label=1))


def f1_score(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    *,
    threshold: float = 0.5,
    zero_division: float = 0.0,
) -> float:
    """F1 of class 1 at ``threshold`` (:func:`sklearn.metrics.f1_score`).

    Args:
        y_true: binary labels, 0/1 or booleans.
        y_prob: predicted probability of class 1, in ``[0, 1]``.
        threshold: predicted positive when ``y_prob >= threshold``; within ``[0, 1]``.
        zero_division: value when there are neither true nor predicted positives: ``0.0``,
            ``1.0``, or ``nan`` to raise :class:`UndefinedMetric` instead.

    Raises:
        ValueError: bad input, named; see :func:`brier_loss`.
        UndefinedMetric: ``zero_division`` is ``nan`` and the division happened.
    """
    return _at_threshold("f1", skm.f1_score, y_true, y_prob, threshold, zero_division)


def precision_score(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    *,
    threshold: float = 0.5,
    zero_division: float = 0.0,
) -> float:
    """Precision of class 1 at ``threshold`` (:func:`sklearn.metrics.precision_score`).

    ``zero_division`` applies when nothing is predicted positive; otherwise as
    :func:`f1_score`.
    """
    return _at_threshold("precision", skm.precision_score, y_true, y_prob, threshold, zero_division)


def recall_score(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    *,
    threshold: float = 0.5,
    zero_division: float = 0.0,
) -> float:
    """Recall of class 1 at ``threshold`` (:func:`sklearn.metrics.recall_score`).

    ``zero_division`` applies when ``y_true`` has no positives; otherwise as :func:`f1_score`.
    """
    return _at_threshold("recall", skm.recall_score, y_true, y_prob, threshold, zero_division)
