"""The backtest's statistics without a server: folds, ties, censoring at the cut, the IPCW
fold scores (docs/ARCHITECTURE.md, "Statistics of the gates")."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines.datasets import load_dd, load_kidney_transplant
from sksurv.metrics import brier_score
from sksurv.util import Surv

from mlflow_plugin import metrics
from mlflow_plugin.errors import DataError
from mlflow_plugin.training._backtest import _fold, _Pooled
from mlflow_plugin.training._data import Dataset, prepare, split_holdout
from mlflow_plugin.training._folds import fold_data, fold_horizon, splits_for
from mlflow_plugin.training._model import fit_model
from mlflow_plugin.training._params import Columns

RECIPE = {"model_kind": "coxph", "penalizer": 0.1, "buckets": 4}


def _data(frame: pd.DataFrame, duration: str, event: str, time: str | None, features: str):
    return prepare(Dataset(frame, "test", "test"), Columns.parse(duration, event, time, features))


def _look_ahead_data(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Entry at calendar time U(0, 10); hazard 0.1 exp(z) before calendar time 5 and
    0.1 exp(1.5 x) after it (the effect of x starts at 5); administrative end of follow-up at
    calendar time 10."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(0, 10, n)
    x, z = rng.normal(size=n), rng.normal(size=n)
    before = np.maximum(0.0, 5.0 - start)
    first = rng.exponential(1 / (0.1 * np.exp(z)))
    later = rng.exponential(1 / (0.1 * np.exp(1.5 * x)))
    event_time = np.where(first < before, first, before + later)
    end = 10.0 - start
    return pd.DataFrame(
        {
            "start": start,
            "x": x,
            "z": z,
            "T": np.minimum(event_time, end),
            "E": (event_time <= end).astype(int),
        }
    )


class TestRollingOrigin:
    def test_training_follow_up_is_censored_at_the_cut(self):
        """The issue's synthetic case: the effect of x starts after calendar time 5. Trained
        on what was known at the cut 5, the fold model cannot know it (C-index near 0.5);
        trained on follow-up observed after the cut it looks good (look-ahead)."""
        data = _data(_look_ahead_data(), "T", "E", "start", "x,z")
        start = data.frame["start"].to_numpy()
        train_idx, test_idx = np.flatnonzero(start < 5), np.flatnonzero(start >= 5)
        train, test = data.subset(train_idx), data.subset(test_idx)
        known = train.censored_at(5.0)
        assert (start[train_idx] + known.durations <= 5.0 + 1e-9).all()
        c = {}
        for label, rows in (("censored", known), ("look-ahead", train)):
            model = fit_model(
                "coxph",
                rows.frame,
                rows.features,
                rows.durations,
                rows.events,
                penalizer=0.0,
                horizon=2.0,
                buckets=2,
            )
            risk = model.predict(None, test.X)["risk"].to_numpy()
            c[label] = metrics.c_index_score(test.durations, test.events, risk)
        print(c)
        assert c["look-ahead"] > c["censored"] + 0.1 and abs(c["censored"] - 0.5) < 0.08, c

    @settings(max_examples=40, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.integers(0, 12),  # calendar time of entry (ties likely)
                st.floats(0.1, 20, allow_nan=False),
                st.booleans(),
            ),
            min_size=12,
            max_size=60,
        ),
        st.integers(2, 5),
    )
    def test_no_training_event_after_its_cut_and_no_straddling_ties(self, rows, folds):
        frame = pd.DataFrame(rows, columns=["t", "d", "e"]).assign(
            e=lambda f: f["e"].astype(int), x=lambda f: f["d"] * 0 + np.arange(len(f))
        )
        data = _data(frame, "d", "e", "t", "x")
        try:
            splits, _ = splits_for(data, folds, 0)
        except DataError:
            return  # too few distinct times: refused, nothing to check
        times = data.frame["t"].to_numpy()
        for part, (train_idx, test_idx, _) in zip(fold_data(data, splits), splits, strict=True):
            cut = times[test_idx].min()
            assert not set(times[train_idx]) & set(times[test_idx])  # no tie straddles
            entry = part.fit.frame["t"].to_numpy()
            ends = entry + part.fit.durations
            assert (ends[part.fit.events] <= cut + 1e-9).all()  # no event after the cut
            assert (ends <= cut + 1e-9).all()  # no follow-up after it either

    @settings(max_examples=40, deadline=None)
    @given(st.lists(st.integers(0, 8), min_size=4, max_size=60), st.floats(0.1, 0.6))
    def test_holdout_never_splits_a_time_value(self, times, share):
        frame = pd.DataFrame(
            {"t": times, "d": np.arange(1, len(times) + 1, dtype=float), "e": 1, "x": 0.0}
        )
        data = _data(frame, "d", "e", "t", "x")
        try:
            train, holdout = split_holdout(data, share, 0)
        except DataError:
            return
        assert holdout is not None
        assert train.frame["t"].max() < holdout.frame["t"].min()

    def test_dd_holdout_keeps_1999_on_one_side(self):
        """The issue's tie case: 46 rows of 1999 used to be split 23 / 23."""
        dd = load_dd().dropna()
        data = _data(dd, "duration", "observed", "start_year", "regime")
        train, holdout = split_holdout(data, 0.2, 0)
        assert holdout is not None
        assert not set(train.frame["start_year"]) & set(holdout.frame["start_year"])

    def test_too_few_folds_is_said(self):
        frame = pd.DataFrame(
            {"t": [0] * 10 + [1] * 10 + [2] * 10, "d": np.arange(1, 31.0), "e": 1, "x": 0.0}
        )
        splits, method = splits_for(_data(frame, "d", "e", "t", "x"), 5, 0)
        assert len(splits) == 2 and "2 folds" in method


class TestFoldScores:
    def test_fold_brier_equals_scikit_survival(self):
        """kidney_transplant, k-fold: each fold's IPCW Brier (censoring from its training
        rows) is scikit-survival's brier_score of the same predictions to 1e-6."""
        k = load_kidney_transplant()
        data = _data(k, "time", "death", None, "age,black_male,white_male,black_female")
        splits, _ = splits_for(data, 4, 0)
        parts = fold_data(data, splits)
        horizon, _ = fold_horizon(parts, data, None, None)
        pooled = _Pooled(horizon)
        for i, part in enumerate(parts, start=1):
            row = _fold(i, RECIPE, part, horizon, pooled)
            model = fit_model(
                "coxph",
                part.fit.frame,
                part.fit.features,
                part.fit.durations,
                part.fit.events,
                penalizer=0.1,
                horizon=horizon,
                buckets=4,
            )
            p = np.clip(model.event_probability(part.test.frame), 0, 1)
            _, ref = brier_score(
                Surv.from_arrays(part.train.events, part.train.durations),
                Surv.from_arrays(part.test.events, part.test.durations),
                1 - p,
                horizon,
            )
            assert row["metrics"]["brier"] == pytest.approx(float(ref[0]), abs=1e-6)
            assert row["metrics"]["rows_used"] + row["metrics"]["rows_censored"] == len(part.test)
        overall = pooled.metrics()
        for name in ("f1", "precision", "recall", "brier", "f1_baseline", "km_event_share"):
            assert isinstance(overall[name], float), name

    def test_explicit_horizon_beyond_a_fold_is_bad_input(self):
        k = load_kidney_transplant()
        data = _data(k, "time", "death", None, "age")
        parts = fold_data(data, splits_for(data, 4, 0)[0])
        with pytest.raises(DataError, match=r"horizon: 99999 is outside .*choose a value in"):
            fold_horizon(parts, data, 99999.0, None)
