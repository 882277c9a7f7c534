"""The training range of each numeric feature, recorded in the model's MLmodel metadata at train
time and read by serving's input guardrails (one home for the key and the format)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["FEATURE_RANGES_KEY", "feature_ranges", "read_feature_ranges"]

FEATURE_RANGES_KEY = "mlflow_plugin.feature_ranges"


def feature_ranges(frame: Any) -> dict[str, list[float]]:
    """``{column: [min, max]}`` over the numeric (non-boolean) columns of a DataFrame."""
    out: dict[str, list[float]] = {}
    for name in frame.columns:
        column = frame[name]
        if column.dtype.kind not in "iuf":
            continue
        lo, hi = column.min(), column.max()
        if math.isfinite(lo) and math.isfinite(hi):
            out[str(name)] = [float(lo), float(hi)]
    return out


def read_feature_ranges(metadata: Any) -> dict[str, tuple[float, float]]:
    """The ranges stored in a model's ``Model`` metadata (empty when none or malformed)."""
    raw = getattr(metadata, "metadata", None) or {}
    ranges = raw.get(FEATURE_RANGES_KEY) if isinstance(raw, dict) else None
    out: dict[str, tuple[float, float]] = {}
    if not isinstance(ranges, dict):
        return out
    for name, pair in ranges.items():
        try:
            lo, hi = float(pair[0]), float(pair[1])
        except (TypeError, ValueError, IndexError, KeyError):
            continue
        if math.isfinite(lo) and math.isfinite(hi) and lo <= hi:
            out[str(name)] = (lo, hi)
    return out
