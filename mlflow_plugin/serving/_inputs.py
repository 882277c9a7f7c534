"""Input guardrails: a client's bad values are a 400 naming the column and the row, never the
model's fault.

Checked on the request's rows *before* the model sees them (and before MLflow's schema cast,
which turns ``1e308`` into ``-9223372036854775808`` in a ``long`` column without a word):

- ``null``: None/NaN in a numeric feature; ``non_finite``: ``inf``; ``not_a_number``: text,
  or a JSON boolean (``true`` is not ``1``), where the signature declares a number. Always refused (unless guardrails are ``off``): the
  model cannot score them, and MLflow's scorer would silently answer NaN.
- ``out_of_range``: a value farther outside the feature's training range (recorded in the
  MLmodel metadata at train time, :mod:`mlflow_plugin._internal.feature_ranges`) than ``margin`` times the
  range's width. ``enforce`` refuses it, ``observe`` lets it through, counted and flagged.

The happy path is one float conversion of the numeric block and four reductions.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlflow_plugin._internal.feature_ranges import read_feature_ranges
from mlflow_plugin.errors import BadInput, ConfigError

__all__ = ["INPUT_MODES", "InputGuard", "InputProblem", "ModelInputs"]

INPUT_MODES = ("enforce", "observe", "off")
_NUMERIC_TYPES = ("long", "integer", "double", "float")
OUT_OF_RANGE = "out_of_range"


@dataclass(frozen=True)
class InputProblem:
    """One bad value: the rule, the column, the row (0-based, within the request), the value."""

    rule: str
    column: str
    row: int
    detail: str

    def __str__(self) -> str:
        return f"column {self.column!r}, row {self.row}: {self.detail}"


@dataclass(frozen=True, eq=False)  # hashed by identity: it keys a cache of bounds
class ModelInputs:
    """What one loaded version declares about its inputs (computed once per load)."""

    numeric: tuple[str, ...]
    ranges: dict[str, tuple[float, float]]

    @classmethod
    def of(cls, metadata: Any) -> ModelInputs:
        numeric: list[str] = []
        schema = metadata.get_input_schema() if metadata is not None else None
        if schema is not None and getattr(schema, "has_input_names", lambda: False)():
            try:
                types = schema.input_types_dict()
            except Exception:  # noqa: BLE001 - tensor schemas have no column types
                types = {}
            numeric = [
                name for name, t in types.items() if str(getattr(t, "name", t)) in _NUMERIC_TYPES
            ]
        return cls(tuple(numeric), read_feature_ranges(metadata))


@dataclass(frozen=True)
class InputGuard:
    """The input rules (see the module docstring).

    Attributes:
        mode: ``enforce`` (refuse out-of-range values), ``observe`` (flag them) or ``off``.
        margin: how far outside the training range ``[lo, hi]`` a value may lie, in multiples
            of ``hi - lo`` (of ``max(|lo|, 1)`` for a constant feature).
    """

    mode: str = "enforce"
    margin: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in INPUT_MODES:
            raise ConfigError(
                f"input guardrails: mode must be one of {', '.join(INPUT_MODES)}, got {self.mode!r}"
            )
        if not (self.margin >= 0 and math.isfinite(self.margin)):
            raise ConfigError(
                f"input guardrails: margin must be a finite number >= 0, got {self.margin!r}"
            )

    def check(self, data: Any, model: ModelInputs) -> tuple[str, ...]:
        """Refuse bad values (:class:`BadInput`); return the flags of tolerated ones.

        Raises:
            BadInput: a null, non-finite or non-numeric value in a numeric feature, or (in
                ``enforce`` mode) a value far outside the training range.
        """
        if self.mode == "off":
            return ()
        import pandas as pd

        if not isinstance(data, pd.DataFrame) or data.empty:
            return ()
        problems = self.problems(data, model)
        if not problems:
            return ()
        refused = [p for p in problems if p.rule != OUT_OF_RANGE or self.mode == "enforce"]
        if refused:
            more = f" (+{len(refused) - 1} more)" if len(refused) > 1 else ""
            raise BadInput(f"bad input: {refused[0]}{more}")
        return (OUT_OF_RANGE,)

    def problems(self, frame: Any, model: ModelInputs) -> list[InputProblem]:
        """Every bad column of ``frame``, the first bad row of each."""
        declared = set(model.numeric)
        columns = [c for c in frame.columns if str(c) in declared or frame[c].dtype.kind in "iuf"]
        if not columns:
            return []
        # All columns numeric (the usual case): no selection copy.
        block = frame if len(columns) == frame.shape[1] else frame[columns]
        if any(_has_booleans(block[c]) for c in columns):  # float64 would read True as 1.0
            return self._slow(block, model)
        try:
            values = block.to_numpy(dtype=np.float64)
        except (TypeError, ValueError):
            return self._slow(block, model)
        with np.errstate(invalid="ignore", over="ignore"):
            if math.isfinite(float(np.add.reduce(values, axis=None))):
                if not model.ranges:
                    return []
                lo, hi = self._bounds(tuple(columns), model)
                if (values.min(axis=0) >= lo).all() and (values.max(axis=0) <= hi).all():
                    return []
        return self._slow(block, model)

    @functools.lru_cache(maxsize=64)  # noqa: B019 - a few (guard, columns, model) combinations
    def _bounds(
        self, columns: tuple[Any, ...], model: ModelInputs
    ) -> tuple[np.ndarray, np.ndarray]:
        lo = np.full(len(columns), -np.inf)
        hi = np.full(len(columns), np.inf)
        for i, c in enumerate(columns):
            r = model.ranges.get(str(c))
            if r is not None:
                width = (r[1] - r[0]) or max(abs(r[0]), 1.0)
                lo[i], hi[i] = r[0] - self.margin * width, r[1] + self.margin * width
        return lo, hi

    def _slow(self, block: Any, model: ModelInputs) -> list[InputProblem]:
        import pandas as pd

        out: list[InputProblem] = []
        columns = list(block.columns)
        lo, hi = self._bounds(tuple(columns), model)
        for i, c in enumerate(columns):
            raw = block[c]
            numbers = pd.to_numeric(raw, errors="coerce")
            isnull = raw.isna().to_numpy()
            text = (~isnull) & numbers.isna().to_numpy()
            if raw.dtype.kind == "b":  # booleans are not numbers either
                text |= ~isnull
            elif raw.dtype.kind == "O":
                text |= np.array(
                    [isinstance(v, bool | np.bool_ | str | bytes) for v in raw], dtype=bool
                )
            name = str(c)
            if text.any():
                row = int(np.argmax(text))
                out.append(
                    InputProblem(
                        "not_a_number", name, row, f"{_show(raw.iloc[row])} is not a number"
                    )
                )
                continue
            if isnull.any():
                out.append(
                    InputProblem("null", name, int(np.argmax(isnull)), "null (missing) value")
                )
                continue
            values = numbers.to_numpy(dtype=np.float64)
            infinite = ~np.isfinite(values)
            if infinite.any():
                row = int(np.argmax(infinite))
                out.append(InputProblem("non_finite", name, row, f"{values[row]!r} is not finite"))
                continue
            far = (values < lo[i]) | (values > hi[i])
            if far.any():
                row = int(np.argmax(far))
                r = model.ranges[name]
                out.append(
                    InputProblem(
                        OUT_OF_RANGE,
                        name,
                        row,
                        f"{values[row]:g} is far outside the training range [{r[0]:g}, {r[1]:g}]",
                    )
                )
        return out


def _has_booleans(column: Any) -> bool:
    """Whether a column holds a boolean (a JSON ``true`` in a numeric feature is refused)."""
    kind = column.dtype.kind
    if kind == "b":
        return True
    return kind == "O" and any(isinstance(v, bool | np.bool_) for v in column)


def _show(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"  # as the client sent it
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
