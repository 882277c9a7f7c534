"""The pyfunc model: output contract, the rossi C-index, encoding, and by-value pickling."""

from __future__ import annotations

import subprocess
import sys

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from lifelines.datasets import load_rossi

from mlflow_plugin.metrics import c_index_score
from mlflow_plugin.training._data import load_data, prepare
from mlflow_plugin.training._model import (
    FeatureEncoder,
    bucket_columns,
    bucket_edges,
    default_horizon,
    event_labels,
    fit_model,
    pickled_by_value,
)
from mlflow_plugin.training._params import Columns


@pytest.fixture(scope="module")
def rossi():
    return prepare(load_data("rossi"), Columns())


def _fit(data, kind="coxph", penalizer=0.0, **kw):
    return fit_model(
        kind,
        data.frame,
        data.features,
        data.durations,
        data.events,
        penalizer=penalizer,
        horizon=kw.pop("horizon", 50.0),
        buckets=kw.pop("buckets", 4),
    )


class TestBuckets:
    def test_names_round_trip(self):
        """Column names encode the grid and parse back to it."""
        names = bucket_columns([12.5, 25.0, 50.0])
        assert names == ["p_0_12.5", "p_12.5_25", "p_25_50", "p_gt_50"]
        parsed, grid = bucket_edges(["risk", *names])
        assert parsed == names and list(grid) == [12.5, 25.0, 50.0]

    @pytest.mark.parametrize(
        "columns", [["risk"], ["p_0_1", "p_1_2"], ["p_0_2", "p_2_1", "p_gt_1"], ["p_0_1", "p_gt_3"]]
    )
    def test_broken_contracts_are_refused(self, columns):
        """Columns that do not describe an increasing grid are a ValueError."""
        with pytest.raises(ValueError):
            bucket_edges(columns)

    def test_default_horizon_stays_inside_follow_up(self, rossi):
        """rossi's 90th percentile is the end of follow-up (52); the horizon stays below it."""
        assert default_horizon(rossi.durations) == 50.0
        with pytest.raises(ValueError, match="same"):
            default_horizon(np.array([3.0, 3.0]))

    def test_event_labels_skip_early_censoring(self):
        """Rows censored before the horizon have no label."""
        labels, known = event_labels(np.array([1, 2, 5, 5]), np.array([1, 0, 0, 1]), 3)
        assert list(labels) == [1, 0, 0, 0] and list(known) == [True, False, True, True]


class TestSurvivalModel:
    def test_rossi_c_index_matches_lifelines(self, rossi):
        """Unpenalised Cox on all of rossi: C-index 0.6403, lifelines' documented value."""
        model = _fit(rossi)
        risk = model.predict(None, rossi.X)["risk"]
        assert round(c_index_score(rossi.durations, rossi.events, risk), 4) == 0.6403

    @pytest.mark.parametrize("kind", ["coxph", "classifier"])
    def test_probability_rows_sum_to_one(self, rossi, kind):
        """risk first, then the buckets; each row is a distribution ending in 'no event'."""
        model = _fit(rossi, kind, penalizer=0.1)
        out = model.predict(None, load_rossi())
        probs = out.drop(columns="risk").to_numpy()
        assert list(out.columns)[0] == "risk" and list(out.columns)[-1] == "p_gt_50"
        assert np.allclose(probs.sum(axis=1), 1.0) and (probs >= 0).all()
        assert 0 < model.decision_threshold < 1

    def test_text_features_are_one_hot_encoded(self, rossi):
        """Text columns become indicator columns; unseen levels encode as zeros."""
        frame = load_rossi().assign(group=lambda f: np.where(f["age"] > 25, "old", "young"))
        enc = FeatureEncoder.fit(frame, ["age", "group"])
        assert enc.output_columns == ["age", "group=young"]
        out = enc.transform(pd.DataFrame({"age": [30], "group": ["unknown"]}))
        assert out.iloc[0].tolist() == [30.0, 0.0]
        with pytest.raises(ValueError, match="missing feature column"):
            enc.transform(pd.DataFrame({"age": [1]}))

    def test_fit_without_events_before_horizon_is_a_value_error(self, rossi):
        """Nothing to learn is a clear ValueError (the step turns it into a DataError)."""
        with pytest.raises(ValueError, match="no event"):
            _fit(rossi, horizon=0.5)

    def test_pickled_by_value_loads_without_mlflow_plugin(self, rossi, tmp_path):
        """The logged object needs mlflow/lifelines/pandas, not this package."""
        model = _fit(rossi)
        with pickled_by_value():
            (tmp_path / "m.pkl").write_bytes(cloudpickle.dumps(model))
        code = (
            "import sys, pickle\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'mlflow_plugin': raise ImportError('blocked')\n"
            "sys.meta_path.insert(0, Block())\n"
            f"m = pickle.load(open({str(tmp_path / 'm.pkl')!r}, 'rb'))\n"
            "from lifelines.datasets import load_rossi\n"
            "print(m.predict(None, load_rossi().head(3)).shape)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "(3, 6)"
