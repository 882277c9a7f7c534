"""Scalar checks and the "undefined" outcome; standard library only, so cheap to import.

:class:`UndefinedMetric` is not bad input: the data are valid, the metric just has no value on
them (no admissible pairs, every sample censored, a zero division the caller asked to surface).
It subclasses :class:`ValueError` so that "could not compute" is still one ``except``.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["UndefinedMetric", "as_number"]


class UndefinedMetric(ValueError):
    """A metric has no value on valid data; the policy reports it as ``undefined``.

    Attributes:
        metric: the metric's name (``c_index``, ``brier``, ...).
        reason: why it is undefined, one line.
    """

    def __init__(self, metric: str, reason: str) -> None:
        super().__init__(f"{metric}: undefined, {reason}")
        self.metric = metric
        self.reason = reason

    def __reduce__(self) -> tuple[type[UndefinedMetric], tuple[str, str]]:
        return (type(self), (self.metric, self.reason))


def as_number(
    name: str,
    value: object,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_inclusive: bool = True,
) -> float:
    """A finite real scalar (not a bool), optionally bounded, as ``float``.

    Raises:
        ValueError: ``"<name>: expected a number, got str"`` and the like.
    """
    # numpy's floating and integer scalars register as numbers.Real; its bool_ does not.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}: expected a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name}: expected a finite number, got {number}")
    if lo is not None and (number < lo or (number == lo and not lo_inclusive)):
        sign = ">=" if lo_inclusive else ">"
        raise ValueError(f"{name}: must be {sign} {lo:g}, got {number:g}")
    if hi is not None and number > hi:
        raise ValueError(f"{name}: must be <= {hi:g}, got {number:g}")
    return number
