"""Sanity gates on raw predictions: every value finite; probability rows well formed.

They *return* a :class:`SanityResult` (``passed`` or not, how many offending entries, a one-line
detail) because a failed sanity check is a gate outcome, not a programming error; the policy
evaluation turns results into report rows. They *raise* :class:`ValueError` only for input
they cannot inspect at all (empty, wrong number of dimensions, not numbers, a bad ``atol``).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from mlflow_plugin.metrics._checks import as_array
from mlflow_plugin.metrics._report import SanityResult
from mlflow_plugin.metrics._scalar import as_number

__all__ = ["check_finite", "check_probability_range", "check_probability_rows"]


def check_finite(predictions: ArrayLike) -> SanityResult:
    """Check that no prediction is NaN or infinite.

    Args:
        predictions: numbers of any shape (risk scores, a survival matrix, probabilities).

    Returns:
        A :class:`SanityResult` named ``finite``.

    Raises:
        ValueError: ``predictions`` is empty or not numeric.
    """
    arr = as_array("predictions", predictions)
    if arr.size == 0:
        raise ValueError("predictions: is empty")
    # NaN and inf propagate through min/max: the happy path is two reductions, no temporary.
    if np.isfinite(arr.min()) and np.isfinite(arr.max()):
        return SanityResult("finite", True, 0, f"all {arr.size} predictions are finite")
    bad = ~np.isfinite(arr)
    first = np.unravel_index(int(np.argmax(bad)), arr.shape)
    where = int(first[0]) if arr.ndim == 1 else tuple(int(i) for i in first)
    n_bad = int(bad.sum())
    return SanityResult(
        "finite",
        False,
        n_bad,
        f"{n_bad} of {arr.size} predictions are NaN or infinite (first at index {where})",
    )


def check_probability_range(probs: ArrayLike) -> SanityResult:
    """Check that every probability lies in ``[0, 1]`` (NaN offends).

    Args:
        probs: probabilities of any shape.

    Returns:
        A :class:`SanityResult` named ``probability_range``; ``n_bad`` counts offending values.

    Raises:
        ValueError: ``probs`` is empty or not numeric.
    """
    arr = as_array("probs", probs)
    if arr.size == 0:
        raise ValueError("probs: is empty")
    lo, hi = arr.min(), arr.max()
    if lo >= 0 and hi <= 1:  # NaN fails both comparisons
        return SanityResult(
            "probability_range", True, 0, f"all {arr.size} probabilities lie in [0, 1]"
        )
    with np.errstate(invalid="ignore"):
        bad = ~((arr >= 0) & (arr <= 1))
    n_bad = int(np.count_nonzero(bad))
    first = np.unravel_index(int(np.argmax(bad)), arr.shape)
    where = int(first[0]) if arr.ndim == 1 else tuple(int(i) for i in first)
    return SanityResult(
        "probability_range",
        False,
        n_bad,
        f"{n_bad} of {arr.size} probabilities are outside [0, 1] (first at index {where})",
    )


def check_probability_rows(probs: ArrayLike, *, atol: float = 1e-6) -> SanityResult:
    """Check that every value lies in ``[0, 1]`` and every row sums to 1 within ``atol``.

    Args:
        probs: shape ``(n_samples, n_classes)``, one row of class probabilities per sample.
        atol: absolute tolerance on each row's sum, ``>= 0``.

    Returns:
        A :class:`SanityResult` named ``probability_rows``; ``n_bad`` counts offending rows
        (a NaN makes its row offend).

    Raises:
        ValueError: ``probs`` is empty, not 2-D or not numeric, or ``atol`` is invalid.
    """
    tol = as_number("atol", atol, lo=0.0)
    arr = as_array("probs", probs)
    if arr.ndim != 2:
        raise ValueError(
            f"probs: expected a 2-D array (a row of class probabilities per sample), "
            f"got shape {arr.shape}"
        )
    if arr.size == 0:
        raise ValueError("probs: is empty")
    # NaN fails the comparisons below, so a row holding NaN (or inf - inf) offends.
    with np.errstate(invalid="ignore"):
        sums = arr.sum(axis=1)
    row_ok = np.abs(sums - 1.0) <= tol
    lo, hi = arr.min(), arr.max()
    if not (lo >= 0 and hi <= 1):
        row_ok &= ((arr >= 0) & (arr <= 1)).all(axis=1)
    n_rows = arr.shape[0]
    if row_ok.all():
        return SanityResult(
            "probability_rows",
            True,
            0,
            f"all {n_rows} rows lie in [0, 1] and sum to 1 within {tol:g}",
        )
    first = int(np.argmin(row_ok))
    n_bad = int(n_rows - np.count_nonzero(row_ok))
    return SanityResult(
        "probability_rows",
        False,
        n_bad,
        f"{n_bad} of {n_rows} rows are outside [0, 1] or do not sum to 1 within {tol:g} "
        f"(first: row {first} = {_one_line(arr[first])})",
    )


def _one_line(row: np.ndarray) -> str:
    """A short, single-line rendering of one row (long rows are elided)."""
    return np.array2string(
        row, precision=4, separator=", ", threshold=8, edgeitems=3, max_line_width=10**6
    )
