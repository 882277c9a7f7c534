"""Input checks shared by every gate: validate once, then compute.

Each helper checks one kind of input (durations, event indicators, scores, probabilities,
binary labels) and raises :class:`ValueError` with a one-line message that starts
with the argument's name, e.g. ``"risk: 2 value(s) are NaN or infinite (first at index 7)"``.
Only when a check fails is a second, more expensive pass made to say *where*.

Scalars are checked by :func:`~mlflow_plugin.metrics._scalar.as_number`, and
:class:`~mlflow_plugin.metrics._scalar.UndefinedMetric` lives there too (both are re-exported).

The checks are vectorised and avoid copies: a float64 numpy array comes back as the very same
object, and finiteness is read off ``min``/``max`` (NaN and inf propagate through both), so
the happy path costs two reductions per array.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from mlflow_plugin.metrics._scalar import UndefinedMetric, as_number

__all__ = [
    "UndefinedMetric",
    "as_array",
    "as_durations",
    "as_events",
    "as_labels",
    "as_number",
    "as_probabilities",
    "as_scores",
    "same_length",
]

FloatArray = NDArray[np.float64]


def as_array(name: str, values: ArrayLike) -> NDArray[Any]:
    """``values`` as a numeric numpy array without copying when it already is one."""
    if isinstance(values, pd.Series | pd.Index) and not isinstance(values.dtype, np.dtype):
        # pandas nullable dtypes (Int64, Float64, boolean): <NA> becomes NaN, reported as such.
        try:
            return values.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected numbers, got dtype {values.dtype}") from None
    if isinstance(values, str | bytes) or values is None:
        raise ValueError(f"{name}: expected an array of numbers, got {type(values).__name__}")
    arr = np.asarray(values)
    if arr.dtype.kind in "biuf":
        return arr
    if arr.dtype.kind == "O":
        try:  # lists holding None: None becomes NaN and is reported as such
            return arr.astype(np.float64)
        except (TypeError, ValueError):
            pass
    raise ValueError(f"{name}: expected numbers, got dtype {arr.dtype}")


def _shaped(name: str, arr: NDArray[Any], ndim: int) -> None:
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: is empty")


def _finite_range(name: str, arr: FloatArray) -> tuple[float, float]:
    """``(min, max)`` of ``arr``; raises if any value is NaN or infinite."""
    lo, hi = float(arr.min()), float(arr.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        bad = ~np.isfinite(arr)
        first = np.unravel_index(int(np.argmax(bad)), arr.shape)
        where = first[0] if arr.ndim == 1 else tuple(int(i) for i in first)
        raise ValueError(
            f"{name}: {int(bad.sum())} value(s) are NaN or infinite (first at index {where})"
        )
    return lo, hi


def _floats(name: str, values: ArrayLike, ndim: int) -> FloatArray:
    arr = as_array(name, values)
    _shaped(name, arr, ndim)
    return arr.astype(np.float64, copy=False)


def as_scores(name: str, values: ArrayLike) -> FloatArray:
    """A non-empty 1-D array of finite floats (risk scores, predictions)."""
    arr = _floats(name, values, 1)
    _finite_range(name, arr)
    return arr


def as_durations(name: str, values: ArrayLike) -> FloatArray:
    """A non-empty 1-D array of finite, non-negative times."""
    arr = _floats(name, values, 1)
    lo, _ = _finite_range(name, arr)
    if lo < 0:
        raise ValueError(
            f"{name}: durations must be >= 0, got {lo:g} (first at index {int(np.argmin(arr))})"
        )
    return arr


def _binary(name: str, values: ArrayLike, what: str) -> NDArray[Any]:
    arr = as_array(name, values)
    _shaped(name, arr, 1)
    if arr.dtype.kind == "b":
        return arr
    if arr.dtype.kind == "f":
        ok = bool(((arr == 0) | (arr == 1)).all())  # also false for NaN
    else:  # integers: two reductions, no temporary
        ok = bool(arr.min() >= 0 and arr.max() <= 1)
    if not ok:
        bad = (arr != 0) & (arr != 1)
        first = int(np.argmax(bad))
        raise ValueError(
            f"{name}: {what} must be 0/1 or boolean, got {arr[first].item()!r} at index {first}"
        )
    return arr


def as_events(name: str, values: ArrayLike) -> NDArray[np.bool_]:
    """Event indicators (1/True = event observed, 0/False = censored) as booleans."""
    arr = _binary(name, values, "event indicators")
    return arr if arr.dtype.kind == "b" else arr != 0


def as_labels(name: str, values: ArrayLike) -> NDArray[Any]:
    """Binary class labels (0/1 or booleans) in a dtype scikit-learn reads as ``{0, 1}``."""
    arr = _binary(name, values, "labels")
    # A zero-copy int8 view: scikit-learn then sees labels {0, 1}, never {False, True}.
    return arr.view(np.int8) if arr.dtype.kind == "b" else arr


def as_probabilities(name: str, values: ArrayLike, *, ndim: int = 1) -> FloatArray:
    """Finite probabilities in ``[0, 1]`` with ``ndim`` dimensions."""
    arr = _floats(name, values, ndim)
    lo, hi = _finite_range(name, arr)
    if lo < 0 or hi > 1:
        value = lo if lo < 0 else hi
        raise ValueError(f"{name}: probabilities must be within [0, 1], got {value:g}")
    return arr


def same_length(**arrays: NDArray[Any]) -> None:
    """All arrays have the same number of rows; the message names the odd one out."""
    items = iter(arrays.items())
    first_name, first = next(items)
    for name, arr in items:
        if len(arr) != len(first):
            raise ValueError(f"{name}: has {len(arr)} rows but {first_name} has {len(first)}")
