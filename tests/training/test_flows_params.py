"""Step parameters and the policy lookup: a bad value is one ConfigError line naming it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlflow_plugin import BadInput, ConfigError, DataError
from mlflow_plugin.policy import load_policy
from mlflow_plugin.training import PipelineParams
from mlflow_plugin.training._folds import kfold, rolling_origin
from mlflow_plugin.training._params import (
    BacktestParams,
    Columns,
    TrainParams,
    optional_float,
    optional_version,
    parse_features,
)
from mlflow_plugin.types import check_strategy


class TestParams:
    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"model_kind": "forest"}, "model_kind"),
            ({"penalizer": -1.0}, "penalizer"),
            ({"holdout": 1.0}, "holdout"),
            ({"horizon": 0.0}, "horizon"),
            ({"buckets": 0}, "buckets"),
            ({"data": " "}, "data"),
            ({"model_name": "a/b"}, "model_name"),
        ],
    )
    def test_train_params_name_the_bad_one(self, kwargs, message):
        """Each bad training parameter fails with its name first."""
        with pytest.raises(ConfigError, match=f"^{message}"):
            TrainParams(**{"model_name": "m", **kwargs})

    def test_blank_and_self_describing_defaults_mean_not_given(self):
        """'' and the MLproject's words (auto, challenger, all, none) mean 'not given'."""
        assert optional_float("horizon", "auto") is None and optional_float("horizon", "") is None
        assert optional_float("horizon", "26") == 26.0
        assert optional_version("challenger") is None and optional_version("3") == "3"
        assert parse_features("all") is None and parse_features(" a, b ") == ("a", "b")
        assert Columns.parse("week", "arrest", "none", "all") == Columns("week", "arrest")
        with pytest.raises(ConfigError, match="horizon: expected a number"):
            optional_float("horizon", "soon")
        with pytest.raises(BadInput, match="positive integer"):
            optional_version("v1")

    def test_column_roles_must_differ(self):
        """A column cannot play two roles."""
        with pytest.raises(ConfigError, match="event_col"):
            Columns.parse("week", "week")
        with pytest.raises(ConfigError, match="features"):
            Columns.parse("week", "arrest", None, "age,week")
        with pytest.raises(ConfigError, match="folds"):
            BacktestParams("m", folds=1)

    def test_bad_strategy_is_the_controllers_bad_input(self):
        """``main``'s strategy fails with the same BadInput (exit 2) and words as ``promote``."""
        with pytest.raises(BadInput, match="^unknown strategy 'shadow'; expected one of") as err:
            PipelineParams(TrainParams("m"), strategy="shadow")
        assert err.value.exit_code == 2
        with pytest.raises(BadInput) as direct:
            check_strategy("shadow")
        assert direct.value.message == err.value.message


class TestParamsAsPydanticModels:
    @pytest.mark.parametrize(
        ("build", "message"),
        [
            (lambda: TrainParams("a:b"), "model_name: invalid model name"),
            (lambda: TrainParams("m", penalizer=float("inf")), "penalizer: expected a finite"),
            (lambda: TrainParams("m", buckets=2.5), "buckets: expected a whole number, got 2.5"),
            (lambda: TrainParams("m", missing="keep"), "missing: expected fail or drop"),
            (lambda: BacktestParams("m", time_scale=0), "time_scale: must be > 0"),
            (lambda: PipelineParams(TrainParams("m"), folds=51), "folds: must be <= 50"),
            (lambda: Columns("week", 3), "event: expected text"),
        ],
    )
    def test_bad_value_is_one_config_error_line(self, build, message):
        """Positional or keyword, a bad parameter is one ConfigError line starting with its name."""
        with pytest.raises(ConfigError) as info:
            build()
        assert str(info.value).startswith(message)
        assert "\n" not in str(info.value) and info.value.exit_code == 2

    def test_params_stay_frozen_dataclasses(self):
        """Pydantic dataclasses: frozen, and dataclasses.replace validates again."""
        params = TrainParams("m")
        with pytest.raises(dataclasses.FrozenInstanceError):
            params.holdout = 0.5  # type: ignore[misc]
        assert dataclasses.replace(params, holdout=0.5).holdout == 0.5
        with pytest.raises(ConfigError, match="^holdout: must be < 1"):
            dataclasses.replace(params, holdout=1.5)


class TestPolicy:
    def test_unknown_key_fails_with_its_path(self, tmp_path):
        """A policy file with an unknown key is a ConfigError naming the key."""
        path = tmp_path / "policy.yaml"
        path.write_text("gates:\n  c_index: {threshold: 0.5, treshold: 0.6}\n")
        with pytest.raises(ConfigError, match=r"gates\.c_index\.treshold: unknown key"):
            load_policy(str(path))

    def test_default_is_the_project_file_else_built_in(self, tmp_path, monkeypatch):
        """Without a path: flows/policy.yaml in the working directory, else the defaults."""
        monkeypatch.chdir(tmp_path)
        assert {g.name for g in load_policy("default").gates} == {
            "c_index",
            "f1",
            "precision",
            "brier",
        }
        (tmp_path / "flows").mkdir()
        (tmp_path / "flows" / "policy.yaml").write_text("gates:\n  f1: {threshold: 0.9}\n")
        assert [g.name for g in load_policy(None).gates] == ["f1"]
        with pytest.raises(ConfigError, match="not found"):
            load_policy(str(tmp_path / "nope.yaml"))


class TestSplits:
    @settings(max_examples=60, deadline=None)
    @given(times=st.lists(st.integers(0, 30), min_size=6, max_size=80), folds=st.integers(2, 6))
    def test_rolling_origin_never_trains_on_the_future(self, times, folds):
        """Every training row is strictly earlier than every row it is scored against."""
        t = np.array(times, dtype=float)
        try:
            splits = rolling_origin(t, folds)
        except DataError:  # too few distinct times for two folds
            return
        assert 2 <= len(splits) <= folds
        tested = np.concatenate([test for _, test, _ in splits])
        assert len(tested) == len(set(tested.tolist()))  # each row scored at most once
        for train, test, _ in splits:
            assert t[train].max() < t[test].min()

    def test_kfold_scores_every_row_once(self):
        """Seeded k-fold covers each row exactly once."""
        splits = kfold(20, 4, seed=0)
        assert sorted(np.concatenate([test for _, test, _ in splits]).tolist()) == list(range(20))
        assert all("random" in window for _, _, window in splits)
