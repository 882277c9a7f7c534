"""The steps in-process against the real server: train, validate, backtest, main, bad input."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import shuffled_training_rows
from lifelines.datasets import load_rossi
from mlflow.pyfunc import PythonModel

from mlflow_plugin import ConfigError, DataError, NotFound
from mlflow_plugin.cli import main as cli
from mlflow_plugin.ledger._ledger import Ledger
from mlflow_plugin.registry._adapter import Registry
from mlflow_plugin.training import (
    BacktestParams,
    Columns,
    PipelineParams,
    TrainParams,
    ValidateParams,
    run_backtest,
    run_pipeline,
    run_train,
    run_validate,
)
from mlflow_plugin.training._data import load_data, prepare
from mlflow_plugin.training._model import fit_model

pytestmark = pytest.mark.integration

STEP = "mlflow_plugin.step"


def _run(run_id: str) -> mlflow.entities.Run:
    return mlflow.MlflowClient().get_run(run_id)


def _artifacts(run_id: str) -> set[str]:
    return {a.path for a in mlflow.MlflowClient().list_artifacts(run_id)}


def _children(parent_id: str) -> dict[str, mlflow.entities.Run]:
    runs = mlflow.MlflowClient().search_runs(
        [_run(parent_id).info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )
    return {r.data.tags[STEP]: r for r in runs}


class TestTrain:
    def test_registers_a_tagged_challenger(self, flows_uri, model_name):
        """train logs a pyfunc with signature and example, registers it as challenger/Staging,
        and tags the version with its run, data digest and recipe."""
        first = run_train(TrainParams(model_name=model_name), tracking_uri=flows_uri)
        second = run_train(
            TrainParams(model_name=model_name, penalizer=0.5), tracking_uri=flows_uri
        )
        registry = Registry(flows_uri)
        assert registry.get_model(model_name).aliases == {"challenger": second.version.version}
        assert registry.get_version(model_name, first.version.version).stage == "None"
        v2 = registry.get_version(model_name, second.version.version)
        assert v2.stage == "Staging" and v2.run_id == second.run_id
        assert v2.tags["mlflow_plugin.training_run"] == second.run_id
        assert len(v2.tags["mlflow_plugin.data_digest"]) == 64
        recipe = json.loads(v2.tags["mlflow_plugin.recipe"])
        assert recipe["model_kind"] == "coxph" and recipe["penalizer"] == 0.5
        assert (
            recipe["horizon"] == 48.0 and "age" in recipe["features"]
        )  # inside the holdout's follow-up
        run = _run(second.run_id)
        assert run.data.tags[STEP] == "train" and run.data.tags["mlflow_plugin.model"] == model_name
        assert run.data.params["n_holdout"] == "86"
        info = mlflow.models.get_model_info(second.model_uri)
        assert info.signature is not None and info.saved_input_example_info is not None
        assert info.signature.outputs.input_names()[:2] == ["risk", "p_0_12"]
        loaded = mlflow.pyfunc.load_model(f"models:/{model_name}/{second.version.version}")
        out = loaded.predict(load_rossi())  # the training frame's own dtypes pass the schema
        assert np.allclose(out.drop(columns="risk").sum(axis=1), 1.0)
        # Integrity and input guardrails: the digest of the files, the training range per feature.
        from mlflow_plugin.integrity._manifest import verify_version

        report = verify_version(registry, model_name, second.version.version)
        assert (
            report.ok
            and not report.trusted_on_first_use
            and report.digest == v2.tags["mlflow_plugin.sha256"]
        )
        ranges = info.metadata["mlflow_plugin.feature_ranges"]
        assert ranges["age"] == [17.0, 44.0]

    def test_classifier_kind(self, flows_uri, model_name):
        """model_kind=classifier registers a two-bucket model (event by the horizon or not)."""
        result = run_train(
            TrainParams(model_name=model_name, model_kind="classifier"), tracking_uri=flows_uri
        )
        loaded = mlflow.pyfunc.load_model(result.model_uri)
        assert list(loaded.predict(load_rossi().head(3)).columns) == ["risk", "p_0_48", "p_gt_48"]


class _Corrupt(PythonModel):
    """A model that honours the column contract but breaks the numbers (for the sanity gates)."""

    def __init__(self, inner, how: str) -> None:
        self.inner, self.how = inner, how

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        out = self.inner.predict(None, model_input)
        if self.how == "nan":
            out.iloc[3, 0] = np.nan
        else:
            out.iloc[:, 1:] *= 0.9
        return out


@pytest.fixture(scope="module")
def fitted_rossi():
    data = prepare(load_data("rossi"), Columns())
    return fit_model(
        "coxph",
        data.frame,
        data.features,
        data.durations,
        data.events,
        penalizer=0.1,
        horizon=50.0,
        buckets=4,
    )


def _register(model_name: str, python_model: PythonModel) -> str:
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=python_model, pip_requirements=[])
    return Registry().register_version(model_name, info.model_uri, None).version


class TestValidate:
    @pytest.mark.parametrize(("how", "gate"), [("nan", "finite"), ("scaled", "probability_rows")])
    def test_broken_predictions_fail(self, flows_uri, model_name, fitted_rossi, how, gate):
        """NaN predictions, or rows not summing to 1, fail validate (exit 3 from the CLI)."""
        version = _register(model_name, _Corrupt(fitted_rossi, how))
        params = ValidateParams(
            model_name, version=version, duration_col="week", event_col="arrest"
        )
        verdict = run_validate(params, tracking_uri=flows_uri)
        assert not verdict.passed and gate in verdict.report.failed_gates
        tags = Registry(flows_uri).get_version(model_name, version).tags
        assert tags["mlflow_plugin.validation"] == "failed"
        assert tags["mlflow_plugin.gate_report"] == verdict.run_id
        assert "gate_report.json" in _artifacts(verdict.run_id)
        # The Markdown table is the run's description (no file of its own).
        assert "| " in _run(verdict.run_id).data.tags["mlflow.note.content"]
        result = CliRunner().invoke(
            cli,
            [
                "--tracking-uri",
                flows_uri,
                "validate",
                "--model-name",
                model_name,
                "--version",
                version,
                "--duration-col",
                "week",
                "--event-col",
                "arrest",
            ],
        )
        assert result.exit_code == 3, result.output
        assert (
            result.stderr.strip().startswith("error: validate of version") and gate in result.stderr
        )

    def test_foreign_version_needs_its_columns(self, flows_uri, model_name, fitted_rossi):
        """A version not trained here has no recipe: validate asks for the columns."""
        version = _register(model_name, fitted_rossi)
        with pytest.raises(ConfigError, match="duration_col and event_col"):
            run_validate(ValidateParams(model_name, version=version), tracking_uri=flows_uri)


class TestBacktest:
    def test_rolling_origin_over_time_col(self, flows_uri, model_name, tmp_path):
        """With a time column: rolling origin, per-fold metrics at steps 1..folds, a report and
        a plot, and the version's backtest tag."""
        path = tmp_path / "rossi_enrolled.csv"
        load_rossi().assign(enrolled=pd.date_range("2020-01-01", periods=432, freq="D")).to_csv(
            path, index=False
        )
        trained = run_train(
            TrainParams(model_name, data=str(path), holdout=0, columns=Columns(time="enrolled")),
            tracking_uri=flows_uri,
        )
        verdict = run_backtest(
            BacktestParams(model_name, data=str(path), folds=3), tracking_uri=flows_uri
        )
        client = mlflow.MlflowClient()
        history = client.get_metric_history(verdict.run_id, "f1")
        assert [m.step for m in history] == [1, 2, 3]
        run = _run(verdict.run_id)
        assert {"overall_f1", "overall_precision", "overall_recall", "overall_brier"} <= set(
            run.data.metrics
        )
        assert run.data.tags[STEP] == "backtest"
        assert "rolling origin over 'enrolled'" in run.data.tags["mlflow_plugin.backtest_method"]
        assert {"backtest_report.txt", "backtest_metrics.png", "gate_report.json"} <= _artifacts(
            verdict.run_id
        )
        report = mlflow.artifacts.load_text(f"runs:/{verdict.run_id}/backtest_report.txt")
        assert "rolling origin" in report and "[2020-" in report
        tags = Registry(flows_uri).get_version(model_name, trained.version.version).tags
        assert tags["mlflow_plugin.backtest"] == ("passed" if verdict.passed else "failed")


class TestMain:
    def test_promotes_then_rejects_shuffled_labels(self, flows_uri, model_name, tmp_path):
        """main on rossi promotes the first champion (nested runs, one per step); a candidate
        trained on shuffled labels is rejected: champion untouched, rejected event recorded."""
        first = run_pipeline(PipelineParams(TrainParams(model_name)), tracking_uri=flows_uri)
        assert first.outcome == "promoted", first.reasons
        parent = _run(first.run_id)
        assert parent.data.tags[STEP] == "main"
        assert parent.data.tags["mlflow_plugin.outcome"] == "promoted"
        children = _children(first.run_id)
        assert set(children) == {"train", "validate", "backtest", "promote"}
        assert all(r.data.tags["mlflow_plugin.model"] == model_name for r in children.values())
        assert {"calibration.png", "survival_curves.png"} <= _artifacts(
            children["validate"].info.run_id
        )
        method = children["backtest"].data.tags["mlflow_plugin.backtest_method"]
        assert method.startswith("no time column: seeded k-fold")
        assert {"c_index", "f1", "precision", "recall"} <= set(parent.data.metrics)

        path = tmp_path / "shuffled.csv"
        shuffled_training_rows().to_csv(path, index=False)
        params = TrainParams(model_name, data=str(path), columns=Columns(time="enrolled"))
        second = run_pipeline(PipelineParams(params), tracking_uri=flows_uri)
        assert second.outcome == "rejected"
        assert any(r.startswith("validate: c_index failed") for r in second.reasons), second.reasons
        registry = Registry(flows_uri)
        assert registry.get_model(model_name).aliases["champion"] == first.version
        assert (
            registry.get_version(model_name, second.version).tags["mlflow_plugin.validation"]
            == "failed"
        )
        last = Ledger(flows_uri).events(model_name)[-1]
        assert (last.event_type, last.version, last.from_version) == (
            "rejected",
            second.version,
            first.version,
        )
        assert "c_index" in last.message
        tags = _run(second.run_id).data.tags
        assert (
            tags["mlflow_plugin.outcome"] == "rejected"
            and "c_index" in tags["mlflow_plugin.reasons"]
        )

    @pytest.mark.parametrize(
        ("change", "error", "message"),
        [
            ({"data": "/no/such/file.csv"}, DataError, "data file not found"),
            ({"data": "no_such_dataset"}, DataError, "lifelines ships no dataset"),
            (
                {"columns": Columns("weeks", "arrest")},
                DataError,
                "duration column 'weeks' not found",
            ),
            (
                {"columns": Columns("week", "arrest", time="t")},
                DataError,
                "time column 't' not found",
            ),
            ({"data": "WRONG_TYPE"}, DataError, "feature column 'age' .* must be numeric"),
            ({"data": "EMPTY"}, DataError, "is empty"),
            ({"policy": "BAD_POLICY"}, ConfigError, r"gates\.f1\.thresold: unknown key"),
        ],
    )
    def test_bad_input_fails_before_registering(
        self, flows_uri, model_name, tmp_path, change, error, message
    ):
        """Each bad input fails main with one clear line, and no version is registered."""
        frame = load_rossi()
        files = {
            "WRONG_TYPE": frame.assign(age=frame["age"].astype(str).replace("23", "twenty-three")),
            "EMPTY": frame.iloc[:0],
        }
        for key, value in files.items():
            files[key] = str(tmp_path / f"{key}.csv")
            value.to_csv(files[key], index=False)
        bad_policy = tmp_path / "policy.yaml"
        bad_policy.write_text("gates:\n  f1: {threshold: 0.4, thresold: 0.5}\n")
        files["BAD_POLICY"] = str(bad_policy)
        policy = files.get(change.get("policy", ""))
        train_kw = {
            k: files.get(v, v) if isinstance(v, str) else v
            for k, v in change.items()
            if k != "policy"
        }
        with pytest.raises(error, match=message) as exc:
            run_pipeline(
                PipelineParams(TrainParams(model_name, **train_kw), policy=policy),
                tracking_uri=flows_uri,
            )
        assert "\n" not in str(exc.value)
        with pytest.raises(NotFound):
            Registry(flows_uri).get_model(model_name)

    def test_cli_retrain_bad_input_is_one_line_exit_2(self, flows_uri, model_name):
        """mlflow-plugin retrain with a missing file: exit 2, one line on stderr."""
        result = CliRunner().invoke(
            cli,
            [
                "--tracking-uri",
                flows_uri,
                "retrain",
                "--model-name",
                model_name,
                "--data",
                "/no/such.csv",
            ],
        )
        assert result.exit_code == 2
        assert result.stderr.strip().splitlines() == ["error: data file not found: /no/such.csv"]
