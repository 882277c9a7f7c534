"""Bad input never starts a run: every bad-input path of the standalone steps (``mlflow-plugin
validate/backtest/retrain``, the entry script's ``train``) exits 2 with one line and leaves the
experiment's run count as it was, deleted runs included; ``mlflow run -e validate`` with an
out-of-range horizon leaves no active run (the run ``mlflow run`` made is discarded)."""

from __future__ import annotations

import mlflow
import pytest
from click.testing import CliRunner
from conftest import EXPERIMENT
from lifelines.datasets import load_rossi
from mlflow.entities import ViewType

from mlflow_plugin.cli import main as cli
from mlflow_plugin.training import TrainParams, run_train
from mlflow_plugin.training._commands import steps

pytestmark = pytest.mark.integration


def _runs(view: int = ViewType.ALL) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    return client.search_runs([experiment.experiment_id], run_view_type=view, max_results=5000)


@pytest.fixture()
def bad_files(tmp_path) -> dict[str, str]:
    frame = load_rossi()
    paths = {
        "DUPLICATE": ("dup.csv", None),
        "NAN": ("nan.csv", frame.assign(age=frame["age"].astype(float).mask(frame.index == 5))),
        "POLICY": ("policy.yaml", None),
        "CENSORED": ("censored.csv", frame.assign(arrest=0)),
    }
    out = {}
    for key, (name, value) in paths.items():
        out[key] = str(tmp_path / name)
        if value is not None:
            value.to_csv(out[key], index=False)
    header = ",".join([*frame.columns, "age"])
    rows = [",".join(map(str, [*r, r[frame.columns.get_loc("age")]])) for r in frame.to_numpy()]
    (tmp_path / "dup.csv").write_text("\n".join([header, *rows]) + "\n")
    (tmp_path / "policy.yaml").write_text("gates:\n  f1: {threshold: 0.4, thresold: 0.5}\n")
    return out


def _cases(files: dict[str, str]) -> list[tuple[list[str], str]]:
    """(arguments after the step name, a fragment of the error line)."""
    common = [
        (["--data", "/no/such/file.csv"], "data file not found"),
        (["--data", files["DUPLICATE"]], "appears twice"),
        (["--data", files["NAN"]], "missing"),
        (["--missing", "maybe"], "maybe"),
    ]
    # Every row censored: nothing to learn (train and retrain fit; validate/backtest score).
    censored = (["--data", files["CENSORED"]], "nothing to learn")
    return {
        "train": [
            *common,
            (["--duration-col", "nope"], "'nope'"),
            (["--horizon", "1000"], "horizon: 1000 is outside"),
            (["--horizon", "-3"], "horizon"),
            censored,
        ],
        "validate": [
            *common,
            (["--duration-col", "nope"], "'nope'"),
            (["--horizon", "1000"], "horizon: 1000 is outside"),
            (["--policy", files["POLICY"]], "thresold: unknown key"),
            (["--version", "99"], "99"),
        ],
        "backtest": [
            *common,
            (["--horizon", "1000"], "horizon: 1000 is outside"),
            (["--folds", "1"], "folds"),
            (["--time-col", "nope"], "'nope'"),
            (["--time-col", "fin"], "too few distinct values"),
            (["--policy", files["POLICY"]], "thresold: unknown key"),
        ],
        "retrain": [
            *common,
            (["--horizon", "1000"], "horizon: 1000 is outside"),
            (["--policy", files["POLICY"]], "thresold: unknown key"),
            censored,
        ],
    }


def test_bad_input_never_starts_a_run(flows_uri, model_name, bad_files):
    """Each bad input: exit 2, one error line, and not one run more in the experiment."""
    run_train(TrainParams(model_name=model_name), tracking_uri=flows_uri)
    runner = CliRunner()
    for step, cases in _cases(bad_files).items():
        for args, fragment in cases:
            before = len(_runs())
            if step == "train":  # the entry script's group (`mlflow run -e train` runs it)
                result = runner.invoke(steps, [step, "--model-name", model_name, *args])
            else:
                result = runner.invoke(
                    cli, ["--tracking-uri", flows_uri, step, "--model-name", model_name, *args]
                )
            where = f"{step} {' '.join(args)}: {result.output}"
            assert result.exit_code == 2, where
            assert fragment in result.stderr, where
            assert "Traceback" not in result.output, where
            assert len(_runs()) == before, where
