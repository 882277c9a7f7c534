"""Loading and checking data sets: CSV/Parquet paths or URIs, or lifelines dataset names.

Everything that can be wrong with the data is found here, before a model is fitted or
registered, and reported as one :class:`~mlflow_plugin.DataError` line that names the source
and the column: a missing file, an unknown dataset name, a missing column, a column of the wrong
type, missing values, an empty data set. Reading the file or dataset is
:mod:`mlflow_plugin.training._sources` (re-exported here).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlflow_plugin.errors import DataError
from mlflow_plugin.training._params import Columns
from mlflow_plugin.training._sources import Dataset, load_data

__all__ = [
    "MISSING_POLICIES",
    "Dataset",
    "SurvivalData",
    "load_data",
    "prepare",
    "row_hashes",
    "split_holdout",
]

#: What ``prepare`` does with missing values in the columns it uses.
MISSING_POLICIES = ("fail", "drop")

# A text column whose values are at least this share numbers is a numeric column with bad values.
_NUMERIC_SHARE = 0.9


@dataclass(frozen=True)
class SurvivalData:
    """A checked data set: durations, events, optional time order, raw feature columns.

    Attributes:
        frame: every checked column (features raw, not encoded).
        columns: the column roles; ``columns.features`` is always filled in here.
        source: where the rows came from.
        raw: the same rows with every column as read (other models, e.g. the champion, may
            use features this one does not).
    """

    frame: pd.DataFrame
    columns: Columns
    source: str
    raw: pd.DataFrame | None = None
    dropped: int = 0

    @property
    def inputs(self) -> pd.DataFrame:
        """Model input, as a caller would send it: every column with the types it was read with
        (a model's signature declares those; MLflow refuses e.g. int64 data for a double column).
        """
        return self.X if self.raw is None else self.raw

    @property
    def features(self) -> tuple[str, ...]:
        assert self.columns.features is not None
        return self.columns.features

    @property
    def durations(self) -> np.ndarray:
        return self.frame[self.columns.duration].to_numpy(dtype=float)

    @property
    def events(self) -> np.ndarray:
        return self.frame[self.columns.event].to_numpy(dtype=float).astype(bool)

    @property
    def X(self) -> pd.DataFrame:
        return self.frame.loc[:, list(self.features)]

    def subset(self, index: np.ndarray | pd.Index) -> SurvivalData:
        """The rows at positions ``index`` (a new frame; positions, not labels)."""
        raw = None if self.raw is None else self.raw.iloc[index].reset_index(drop=True)
        return SurvivalData(
            self.frame.iloc[index].reset_index(drop=True), self.columns, self.source, raw
        )

    def censored_at(self, cut: Any, scale: float = 1.0) -> SurvivalData:
        """The rows as they were known at calendar time ``cut`` of the time column: follow-up
        past the cut is administratively censored (duration ``min(T, (cut - t) * scale)``, no
        event after it). ``scale`` is duration units per unit of the time column (days for a
        date/time column)."""
        time_col = self.columns.time
        assert time_col is not None
        start = self.frame[time_col]
        if pd.api.types.is_datetime64_any_dtype(start):
            known = (pd.Timestamp(cut) - start).dt.total_seconds().to_numpy() / 86400.0
        else:
            known = float(cut) - start.to_numpy(dtype=float)
        known = known * float(scale)
        durations = self.durations
        events = self.events & (durations <= known)
        frame = self.frame.copy()
        frame[self.columns.duration] = np.minimum(durations, np.maximum(known, 0.0))
        frame[self.columns.event] = events.astype(int)
        return SurvivalData(frame, self.columns, self.source, self.raw)

    def __len__(self) -> int:
        return len(self.frame)


def row_hashes(frame: pd.DataFrame, columns: list[str] | tuple[str, ...]) -> np.ndarray:
    """One 64-bit hash per row of ``columns`` (``pandas.util.hash_pandas_object``), with
    numbers as float64 and everything else as text, so a row hashes the same whether it was
    read from CSV, Parquet or a lifelines loader. Raises KeyError for a missing column."""
    parts: dict[str, pd.Series] = {}
    for name in columns:
        col = frame[name]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            parts[name] = col.astype(float)
        else:
            parts[name] = col.astype(str)
    table = pd.DataFrame(parts, index=frame.index)
    return np.asarray(pd.util.hash_pandas_object(table, index=False).to_numpy(), dtype=np.uint64)


def prepare(
    dataset: Dataset, columns: Columns, *, min_rows: int = 1, missing: str = "fail"
) -> SurvivalData:
    """Check ``dataset`` against the column roles and return the usable columns.

    Durations must be numeric, finite and >= 0; events 0/1 or boolean; the time column numeric
    or a date/time; features numeric, boolean or text (text is one-hot encoded later); no
    missing values in any of them: ``missing="drop"`` drops the rows that have some (and says
    how many), ``"fail"`` (the default) refuses the data.

    Raises:
        DataError: naming the data set and the first offending column.
    """
    frame = dataset.frame
    src = dataset.source
    if len(frame.columns) == 0 or len(frame) == 0:
        raise DataError(f"data {src!r} is empty ({len(frame)} rows)")
    if len(frame) < min_rows:
        raise DataError(f"data {src!r} has {len(frame)} rows; at least {min_rows} are needed")
    dupes = frame.columns[frame.columns.duplicated()]
    if len(dupes):
        raise DataError(f"data {src!r}: column {dupes[0]!r} appears twice")
    if missing not in MISSING_POLICIES:
        raise DataError(f"missing: expected one of {', '.join(MISSING_POLICIES)}, got {missing!r}")
    dropped = 0
    if missing == "drop":
        used = [columns.duration, columns.event, columns.time]
        taken0 = {columns.duration, columns.event, columns.time}
        used += list(columns.features or (c for c in frame.columns if c not in taken0))
        present = [c for c in used if c is not None and c in frame.columns]
        keep = frame[present].notna().all(axis=1).to_numpy()
        dropped = int((~keep).sum())
        if dropped:
            frame = frame.loc[keep]
            print(f"data {src!r}: dropped {dropped} of {len(keep)} rows with missing values")
            if len(frame) == 0:
                raise DataError(f"data {src!r}: every row has a missing value")
    out: dict[str, pd.Series] = {}
    out[columns.duration] = _durations(frame, columns.duration, src)
    out[columns.event] = _events(frame, columns.event, src)
    if columns.time is not None:
        out[columns.time] = _time(frame, columns.time, src)
    taken = {columns.duration, columns.event, columns.time}
    features = columns.features
    if features is None:
        features = tuple(str(c) for c in frame.columns if c not in taken)
    if not features:
        raise DataError(f"data {src!r}: no feature columns besides the duration/event/time columns")
    for name in features:
        out[name] = _feature(frame, name, src)
    checked = pd.DataFrame(out, index=frame.index).reset_index(drop=True)
    resolved = Columns(columns.duration, columns.event, columns.time, tuple(features))
    return SurvivalData(checked, resolved, src, frame.reset_index(drop=True), dropped)


def _require(frame: pd.DataFrame, name: str, role: str, src: str) -> pd.Series:
    if name not in frame.columns:
        shown = ", ".join(map(str, list(frame.columns)[:20]))
        more = ", ..." if len(frame.columns) > 20 else ""
        raise DataError(f"{role} column {name!r} not found in {src!r} (columns: {shown}{more})")
    return frame[name]


def _no_missing(series: pd.Series, role: str, src: str) -> None:
    missing = series.isna()
    if missing.any():
        first = int(np.argmax(missing.to_numpy()))
        raise DataError(
            f"{role} column {series.name!r} in {src!r} has {int(missing.sum())} missing "
            f"value(s) (first in row {first})"
        )


def _numeric(series: pd.Series, role: str, src: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(series):
        return series.astype(float)
    if not pd.api.types.is_numeric_dtype(series):
        values = pd.to_numeric(series, errors="coerce")
        bad = values.isna() & series.notna()
        if bad.any():
            first = int(np.argmax(bad.to_numpy()))
            raise DataError(
                f"{role} column {series.name!r} in {src!r} must be numeric, got "
                f"{series.dtype} (value {series.iloc[first]!r} in row {first})"
            )
        series = values
    return series.astype(float)


def _durations(frame: pd.DataFrame, name: str, src: str) -> pd.Series:
    raw = _require(frame, name, "duration", src)
    _no_missing(raw, "duration", src)
    values = _numeric(raw, "duration", src)
    arr = values.to_numpy()
    if not np.isfinite(arr).all():
        raise DataError(f"duration column {name!r} in {src!r} has infinite values")
    if (arr < 0).any():
        first = int(np.argmax(arr < 0))
        raise DataError(
            f"duration column {name!r} in {src!r} has negative values ({arr[first]:g} in row {first})"
        )
    return values


def _events(frame: pd.DataFrame, name: str, src: str) -> pd.Series:
    raw = _require(frame, name, "event", src)
    _no_missing(raw, "event", src)
    values = _numeric(raw, "event", src)
    arr = values.to_numpy()
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(
            f"event column {name!r} in {src!r} must hold 0/1 or booleans "
            f"(value {raw.iloc[first]!r} in row {first})"
        )
    return values.astype(int)


def _time(frame: pd.DataFrame, name: str, src: str) -> pd.Series:
    raw = _require(frame, name, "time", src)
    _no_missing(raw, "time", src)
    if pd.api.types.is_datetime64_any_dtype(raw):
        if getattr(raw.dt, "tz", None) is not None:  # compare instants, in UTC, as datetime64
            return raw.dt.tz_convert("UTC").dt.tz_localize(None)
        return raw
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        return raw.astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        parsed = pd.to_datetime(raw, errors="coerce", utc=True).dt.tz_localize(None)
    bad = parsed.isna()
    if bad.any():
        first = int(np.argmax(bad.to_numpy()))
        raise DataError(
            f"time column {name!r} in {src!r} must be numeric or a date/time, got "
            f"{raw.dtype} (value {raw.iloc[first]!r} in row {first})"
        )
    return parsed


def _feature(frame: pd.DataFrame, name: str, src: str) -> pd.Series:
    raw = _require(frame, name, "feature", src)
    _no_missing(raw, "feature", src)
    if pd.api.types.is_bool_dtype(raw):
        return raw.astype(float)
    if pd.api.types.is_numeric_dtype(raw):
        values = raw.astype(float)
        if not np.isfinite(values.to_numpy()).all():
            raise DataError(f"feature column {name!r} in {src!r} has infinite values")
        return values
    if pd.api.types.is_datetime64_any_dtype(raw) or pd.api.types.is_timedelta64_dtype(raw):
        raise DataError(
            f"feature column {name!r} in {src!r} has type {raw.dtype}; use it as time_col or "
            "derive a numeric feature from it"
        )
    for value in raw.to_numpy():
        if not isinstance(value, str | int | float | bool | np.generic):
            raise DataError(
                f"feature column {name!r} in {src!r} holds {type(value).__name__} values; "
                "expected numbers or text"
            )
    numbers = pd.to_numeric(raw, errors="coerce")
    if numbers.notna().all():  # numbers stored as text (e.g. a string-typed Parquet column)
        return numbers.astype(float)
    if numbers.notna().mean() >= _NUMERIC_SHARE:
        # Mostly numbers: a stray word is a data error, not a category of its own.
        first = int(np.argmax(numbers.isna().to_numpy()))
        raise DataError(
            f"feature column {name!r} in {src!r} must be numeric, got {raw.dtype} "
            f"(value {raw.iloc[first]!r} in row {first})"
        )
    return raw.astype(str)


def split_holdout(
    data: SurvivalData, share: float, seed: int
) -> tuple[SurvivalData, SurvivalData | None]:
    """Keep ``share`` of the rows out of training: the last ones by time when there is a time
    column (rows with the same time stay together: the holdout starts at a time value, so it
    may hold a few rows more or fewer than ``share``), else a seeded random share. Returns
    ``(train, holdout)``; holdout None for 0.

    Raises:
        DataError: either part would be empty or hold no event.
    """
    n = len(data)
    if share <= 0:
        return data, None
    k = int(round(n * share))
    if k < 1 or k >= n:
        raise DataError(f"holdout={share:g} of {n} rows leaves an empty training or holdout set")
    if data.columns.time is not None:
        times = data.frame[data.columns.time].to_numpy()
        ordered = np.sort(times, kind="stable")
        boundary = ordered[n - k]
        holdout_mask = times >= boundary
        if holdout_mask.all():  # the boundary value is the earliest: cut after it instead
            holdout_mask = times > boundary
        if not holdout_mask.any() or holdout_mask.all():
            raise DataError(
                f"holdout={share:g}: the time column {data.columns.time!r} has too few "
                "distinct values to keep the latest rows out"
            )
        return (
            data.subset(np.flatnonzero(~holdout_mask)),
            data.subset(np.flatnonzero(holdout_mask)),
        )
    order = np.random.default_rng(seed).permutation(n)
    train_idx, holdout_idx = np.sort(order[: n - k]), np.sort(order[n - k :])
    return data.subset(train_idx), data.subset(holdout_idx)
