"""Survival gates: Harrell's C (lifelines) and IPCW Brier scores (scikit-survival).

``*_score`` is higher-is-better, ``*_loss`` lower-is-better (scikit-learn's convention).
The math is the libraries'; this module only validates inputs once and maps the cases where a
metric has no value to :class:`~mlflow_plugin.metrics.UndefinedMetric`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from lifelines.utils import concordance_index
from numpy.typing import ArrayLike, NDArray
from sksurv.metrics import brier_score, integrated_brier_score
from sksurv.util import Surv

from mlflow_plugin.metrics._checks import (
    FloatArray,
    UndefinedMetric,
    as_durations,
    as_events,
    as_number,
    as_probabilities,
    as_scores,
    same_length,
)

__all__ = ["c_index_score", "integrated_brier_loss", "survival_brier_loss"]


def c_index_score(durations: ArrayLike, events: ArrayLike, risk: ArrayLike) -> float:
    """Harrell's concordance index of risk scores against right-censored durations.

    Computed by :func:`lifelines.utils.concordance_index`. lifelines expects scores that rise
    with survival time, so it is given ``-risk``: here a higher ``risk`` means an earlier event
    (a Cox model's partial hazard, for instance). Ties in ``risk`` count one half, as in
    lifelines and scikit-survival's ``concordance_index_censored``.

    Args:
        durations: time to event or censoring per sample, finite and ``>= 0``.
        events: 1/True when the event was observed, 0/False when censored.
        risk: predicted risk per sample, finite; higher means an earlier event.

    Returns:
        The C-index in ``[0, 1]``; 0.5 is random ordering.

    Raises:
        ValueError: an argument is empty, not 1-D, holds NaN/inf, or the lengths differ.
        UndefinedMetric: no admissible pair (e.g. every sample censored).
    """
    times = as_durations("durations", durations)
    observed = as_events("events", events)
    scores = as_scores("risk", risk)
    same_length(durations=times, events=observed, risk=scores)
    try:
        return float(concordance_index(times, -scores, observed))
    except ZeroDivisionError as exc:  # lifelines: "No admissable pairs in the dataset."
        raise UndefinedMetric(
            "c_index", "no admissible pairs (no event precedes another sample's time)"
        ) from exc


def _survival_data(
    durations: ArrayLike,
    events: ArrayLike,
    train_durations: ArrayLike,
    train_events: ArrayLike,
) -> tuple[FloatArray, NDArray[np.bool_], FloatArray, NDArray[np.bool_]]:
    """Checked ``(durations, events, train_durations, train_events)``."""
    times = as_durations("durations", durations)
    observed = as_events("events", events)
    same_length(durations=times, events=observed)
    train_times = as_durations("train_durations", train_durations)
    train_observed = as_events("train_events", train_events)
    same_length(train_durations=train_times, train_events=train_observed)
    # The censoring distribution (Kaplan-Meier on train) is unknown beyond the last train time.
    test_max, train_max = float(times.max()), float(train_times.max())
    if test_max > train_max:
        raise ValueError(
            f"durations: maximum {test_max:g} exceeds the largest train_durations {train_max:g}; "
            "the censoring distribution is unknown beyond it"
        )
    return times, observed, train_times, train_observed


def _structured(
    metric: str,
    times: FloatArray,
    observed: NDArray[np.bool_],
    train_times: FloatArray,
    train_observed: NDArray[np.bool_],
) -> tuple[NDArray[Any], NDArray[Any]]:
    """scikit-survival's ``(train, test)`` structured arrays, once every input is valid."""
    # scikit-survival refuses all-censored data: the IPCW estimate has nothing to weigh.
    if not observed.any():
        raise UndefinedMetric(metric, "events: every sample is censored")
    if not train_observed.any():
        raise UndefinedMetric(metric, "train_events: every sample is censored")
    return Surv.from_arrays(train_observed, train_times), Surv.from_arrays(observed, times)


def _check_within_follow_up(name: str, points: FloatArray, times: FloatArray) -> None:
    lo, hi = float(times.min()), float(times.max())
    bad = points[(points < lo) | (points >= hi)]
    if bad.size:
        raise ValueError(
            f"{name}: {bad[0]:g} is outside the follow-up range of durations [{lo:g}, {hi:g})"
        )


def survival_brier_loss(
    durations: ArrayLike,
    events: ArrayLike,
    survival_at_horizon: ArrayLike,
    horizon: float,
    *,
    train_durations: ArrayLike,
    train_events: ArrayLike,
) -> float:
    """IPCW Brier score at ``horizon`` (:func:`sksurv.metrics.brier_score`); lower is better.

    Args:
        durations: test time to event or censoring, finite and ``>= 0``.
        events: test event indicators (1/True event, 0/False censored).
        survival_at_horizon: predicted probability of surviving past ``horizon``, per sample.
        horizon: the time point; ``min(durations) <= horizon < max(durations)``.
        train_durations: training durations, used to estimate the censoring distribution;
            ``max(durations)`` must not exceed ``max(train_durations)``.
        train_events: training event indicators.

    Returns:
        The inverse-probability-of-censoring weighted Brier score at ``horizon``.

    Raises:
        ValueError: bad input, named (lengths, NaN/inf, probability range, horizon outside the
            follow-up range, test durations beyond the training follow-up).
        UndefinedMetric: every test or training sample is censored.
    """
    times, observed, train_times, train_observed = _survival_data(
        durations, events, train_durations, train_events
    )
    survival = as_probabilities("survival_at_horizon", survival_at_horizon)
    same_length(durations=times, survival_at_horizon=survival)
    at = np.array([as_number("horizon", horizon)])
    _check_within_follow_up("horizon", at, times)
    train, test = _structured("brier", times, observed, train_times, train_observed)
    _, scores = brier_score(train, test, survival, at[0])
    return float(scores[0])


def integrated_brier_loss(
    durations: ArrayLike,
    events: ArrayLike,
    survival_matrix: ArrayLike,
    times: ArrayLike,
    *,
    train_durations: ArrayLike,
    train_events: ArrayLike,
) -> float:
    """Integrated IPCW Brier score over ``times``; lower is better.

    Computed by :func:`sksurv.metrics.integrated_brier_score` (trapezoidal rule, divided by
    the length of the time span).

    Args:
        durations: test time to event or censoring, finite and ``>= 0``.
        events: test event indicators (1/True event, 0/False censored).
        survival_matrix: shape ``(n_samples, n_times)``; column ``j`` is the predicted
            probability of surviving past ``times[j]``.
        times: at least two strictly increasing time points within
            ``[min(durations), max(durations))``. (scikit-survival sorts ``times`` but not the
            columns, so unsorted grids are refused rather than silently misaligned.)
        train_durations: training durations, for the censoring distribution.
        train_events: training event indicators.

    Returns:
        The integrated Brier score.

    Raises:
        ValueError: bad input, named (see :func:`survival_brier_loss`), fewer than two or
            unsorted ``times``, or a column count that differs from ``len(times)``.
        UndefinedMetric: every test or training sample is censored.
    """
    test_times, observed, train_times, train_observed = _survival_data(
        durations, events, train_durations, train_events
    )
    grid = as_scores("times", times)
    if grid.size < 2:
        raise ValueError(f"times: need at least two time points, got {grid.size}")
    if not bool((np.diff(grid) > 0).all()):
        raise ValueError("times: must be strictly increasing")
    _check_within_follow_up("times", grid, test_times)
    survival = as_probabilities("survival_matrix", survival_matrix, ndim=2)
    same_length(durations=test_times, survival_matrix=survival)
    if survival.shape[1] != grid.size:
        raise ValueError(
            f"survival_matrix: has {survival.shape[1]} columns but times has {grid.size} points"
        )
    train, test = _structured("integrated_brier", test_times, observed, train_times, train_observed)
    return float(integrated_brier_score(train, test, survival, grid))
