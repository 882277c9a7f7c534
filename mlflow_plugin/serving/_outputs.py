"""Small helpers on a model's outputs and errors, shared by scoring, batching and the mirror."""

from __future__ import annotations

import itertools
from typing import Any

__all__ = ["one_line", "split_rows"]


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, at most 300 characters (for logs and events)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= 300 else text[:297] + "..."


def split_rows(output: Any, sizes: list[int]) -> list[Any] | None:
    """Split a batch's output back into per-request parts by row counts (None: not row-aligned)."""
    import numpy as np
    import pandas as pd

    total = sum(sizes)
    bounds = np.cumsum([0, *sizes])
    if isinstance(output, pd.DataFrame | pd.Series):
        if len(output) != total:
            return None
        return [output.iloc[a:b].reset_index(drop=True) for a, b in itertools.pairwise(bounds)]
    if isinstance(output, np.ndarray):
        if output.ndim == 0 or output.shape[0] != total:
            return None
        return [output[a:b] for a, b in itertools.pairwise(bounds)]
    if isinstance(output, list) and len(output) == total:
        return [output[a:b] for a, b in itertools.pairwise(bounds)]
    return None
