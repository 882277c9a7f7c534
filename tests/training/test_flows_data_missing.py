"""Data checks of issue 8: duplicate CSV headers, ``missing: drop``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines.datasets import load_dd

from mlflow_plugin.errors import DataError
from mlflow_plugin.training._params import Columns


def test_duplicate_csv_columns_are_bad_input(tmp_path):
    from mlflow_plugin.training._data import load_data

    path = tmp_path / "dup.csv"
    path.write_text("week,arrest,age,age\n1,0,20,21\n")
    with pytest.raises(DataError, match="column 'age' appears twice"):
        load_data(str(path))


def test_missing_drop_says_how_many(capsys):
    from mlflow_plugin.training._data import Dataset, prepare

    frame = load_dd()
    cols = Columns.parse("duration", "observed", None, "regime,politycode")
    with pytest.raises(DataError, match="politycode.*7 missing"):
        prepare(Dataset(frame, "dd", "dd"), cols)
    data = prepare(Dataset(frame, "dd", "dd"), cols, missing="drop")
    assert len(data) == len(frame) - 7 and data.dropped == 7
    assert "dropped 7 of 1808 rows" in capsys.readouterr().out
    assert isinstance(data.frame, pd.DataFrame) and not data.frame.isna().any().any()
    assert np.isfinite(data.durations).all()
