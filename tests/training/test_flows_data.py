"""Loading and checking data sets: every bad input is one DataError line naming the column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lifelines.datasets import load_rossi

from mlflow_plugin import DataError
from mlflow_plugin.training._data import Dataset, load_data, prepare, split_holdout
from mlflow_plugin.training._params import Columns

ROSSI = Columns("week", "arrest")


def _ds(frame: pd.DataFrame) -> Dataset:
    return Dataset(frame, "test.csv", "test")


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


class TestLoadData:
    def test_lifelines_name(self):
        """A lifelines dataset name loads that dataset."""
        ds = load_data("rossi")
        assert ds.lifelines_name == "rossi" and len(ds.frame) == 432

    def test_unknown_name_lists_the_known_ones(self):
        """An unknown name says it is neither a file nor a lifelines dataset."""
        with pytest.raises(DataError) as exc:
            load_data("no_such_dataset")
        assert "no_such_dataset" in _one_line(exc) and "rossi" in str(exc.value)

    def test_missing_file(self, tmp_path):
        """A path that does not exist is reported as such."""
        with pytest.raises(DataError, match="data file not found"):
            load_data(str(tmp_path / "missing.csv"))

    @pytest.mark.parametrize("suffix", [".csv", ".parquet"])
    def test_csv_and_parquet_paths_and_file_uris(self, tmp_path, suffix):
        """CSV and Parquet files load by path and by file:// URI."""
        path = tmp_path / f"rossi{suffix}"
        frame = load_rossi()
        frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
        for ref in (str(path), path.as_uri()):
            loaded = load_data(ref)
            pd.testing.assert_frame_equal(loaded.frame, frame, check_dtype=False)
            assert loaded.name == "rossi"

    def test_unknown_format_and_directory(self, tmp_path):
        """Files of unknown format and directories are refused."""
        odd = tmp_path / "data.xlsx"
        odd.write_text("x")
        with pytest.raises(DataError, match="unknown format"):
            load_data(str(odd))
        with pytest.raises(DataError, match="directory"):
            load_data(str(tmp_path))

    def test_empty_csv(self, tmp_path):
        """An empty file is empty data, not a parser traceback."""
        path = tmp_path / "empty.csv"
        path.write_text("")
        with pytest.raises(DataError, match="empty"):
            load_data(str(path))

    def test_unsupported_scheme(self):
        """A URI scheme nothing can read is named."""
        with pytest.raises(DataError, match="scheme 'ftp'"):
            load_data("ftp://host/data.csv")


class TestPrepare:
    def test_rossi_all_features_by_default(self):
        """Without features, every column but duration/event/time is a feature."""
        data = prepare(load_data("rossi"), ROSSI)
        assert data.features == ("fin", "age", "race", "wexp", "mar", "paro", "prio")
        assert data.durations.dtype == float and data.events.dtype == bool

    @pytest.mark.parametrize(
        ("columns", "message"),
        [
            (Columns("weeks", "arrest"), "duration column 'weeks' not found"),
            (Columns("week", "arrested"), "event column 'arrested' not found"),
            (Columns("week", "arrest", time="enrolled"), "time column 'enrolled' not found"),
            (
                Columns("week", "arrest", features=("age", "height")),
                "feature column 'height' not found",
            ),
        ],
    )
    def test_missing_columns(self, columns, message):
        """A missing column is named, with the columns that exist."""
        with pytest.raises(DataError) as exc:
            prepare(load_data("rossi"), columns)
        assert message in _one_line(exc) and "columns: week, arrest" in str(exc.value)

    def test_wrong_types(self):
        """Non-numeric durations, non-binary events, unparseable times are refused by name."""
        frame = load_rossi()
        bad = frame.assign(week=frame["week"].astype(str))
        bad.loc[3, "week"] = "soon"
        with pytest.raises(DataError, match=r"duration column 'week' .* must be numeric.*'soon'"):
            prepare(_ds(bad), ROSSI)
        with pytest.raises(DataError, match="event column 'arrest' .* 0/1"):
            prepare(_ds(frame.assign(arrest=frame["arrest"] * 2)), ROSSI)
        with pytest.raises(DataError, match="time column 't' .* numeric or a date"):
            prepare(_ds(frame.assign(t="x")), Columns("week", "arrest", time="t"))
        with pytest.raises(DataError, match="feature column 'when' .* datetime"):
            prepare(_ds(frame.assign(when=pd.Timestamp("2024-01-01"))), ROSSI)
        with pytest.raises(DataError, match="feature column 'obj' .* list"):
            prepare(_ds(frame.assign(obj=[[1]] * len(frame))), ROSSI)

    def test_missing_and_negative_values(self):
        """Missing values and negative durations are refused with the first row."""
        frame = load_rossi().astype({"age": float})
        frame.loc[5, "age"] = np.nan
        with pytest.raises(
            DataError, match=r"feature column 'age' .* 1 missing value\(s\) \(first in row 5\)"
        ):
            prepare(_ds(frame), ROSSI)
        with pytest.raises(DataError, match="negative"):
            prepare(_ds(load_rossi().assign(week=-1)), ROSSI)

    def test_empty(self):
        """An empty data set fails before anything else."""
        with pytest.raises(DataError, match="empty"):
            prepare(_ds(load_rossi().iloc[:0]), ROSSI)

    def test_text_and_time_columns(self):
        """Text features stay text (one-hot later); ISO dates parse as the time column."""
        frame = load_rossi().assign(
            group=lambda f: np.where(f["age"] > 25, "old", "young"),
            enrolled=pd.date_range("2020-01-01", periods=432, freq="D").astype(str),
        )
        data = prepare(_ds(frame), Columns("week", "arrest", time="enrolled"))
        assert data.frame["group"].dtype == object
        assert pd.api.types.is_datetime64_any_dtype(data.frame["enrolled"])
        assert "enrolled" not in data.features


class TestSplitHoldout:
    def test_time_holdout_keeps_the_last_rows(self):
        """With a time column the holdout is the latest rows."""
        frame = load_rossi().assign(t=np.random.default_rng(1).permutation(432))
        data = prepare(_ds(frame), Columns("week", "arrest", time="t"))
        train, holdout = split_holdout(data, 0.25, seed=0)
        assert holdout is not None and len(holdout) == 108
        assert train.frame["t"].max() < holdout.frame["t"].min()

    def test_random_holdout_is_seeded_and_disjoint(self):
        """Without one, a seeded random share; the same seed gives the same split."""
        data = prepare(load_data("rossi"), ROSSI)
        a_train, a_hold = split_holdout(data, 0.2, seed=3)
        _, b_hold = split_holdout(data, 0.2, seed=3)
        assert a_hold is not None and b_hold is not None
        pd.testing.assert_frame_equal(a_hold.frame, b_hold.frame)
        assert len(a_train) + len(a_hold) == 432

    def test_zero_and_degenerate_shares(self):
        """holdout=0 keeps every row; a share leaving nothing on one side is refused."""
        data = prepare(load_data("rossi"), ROSSI)
        assert split_holdout(data, 0.0, seed=0) == (data, None)
        tiny = data.subset(np.arange(2))
        with pytest.raises(DataError, match="empty"):
            split_holdout(tiny, 0.1, seed=0)


_cells = st.one_of(
    st.none(),
    st.integers(-5, 60),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.booleans(),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(0, 6),
    columns=st.lists(
        st.sampled_from(["week", "arrest", "age", "t", "x"]), min_size=0, max_size=5, unique=True
    ),
    data=st.data(),
)
def test_prepare_never_fails_with_anything_but_data_error(rows, columns, data):
    """Whatever the frame holds, prepare either succeeds or raises DataError."""
    frame = pd.DataFrame(
        {c: data.draw(st.lists(_cells, min_size=rows, max_size=rows)) for c in columns}
    )
    try:
        out = prepare(_ds(frame), Columns("week", "arrest", time="t" if "t" in columns else None))
    except DataError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert (out.durations >= 0).all() and set(np.unique(out.events)) <= {False, True}


def test_numeric_column_with_a_stray_word_is_a_data_error():
    """A mostly numeric column holding a word is refused, not one-hot encoded into 50 levels."""
    frame = load_rossi()
    frame["age"] = frame["age"].astype(str).replace("23", "twenty-three")
    with pytest.raises(DataError, match=r"feature column 'age' .* must be numeric.*'twenty-three'"):
        prepare(_ds(frame), ROSSI)
    text_numbers = load_rossi().astype({"age": str})
    assert prepare(_ds(text_numbers), ROSSI).frame["age"].dtype == float
