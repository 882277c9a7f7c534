"""The statistics of the gates through the real steps (docs/ARCHITECTURE.md, "Statistics of the
gates"), on data nobody here wrote: lifelines' ``dd`` and ``rossi``, scikit-survival's
``flchain``. In-process ``main`` against the session's server; small and few runs."""

from __future__ import annotations

import mlflow
import pytest
from lifelines.datasets import load_dd, load_rossi

from mlflow_plugin.errors import DataError
from mlflow_plugin.training._params import Columns, TrainParams
from mlflow_plugin.training._pipeline import PipelineParams, run_pipeline

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _sqlite_only(request: pytest.FixtureRequest) -> None:
    """The statistics do not depend on the backing store: one backend keeps CI short."""
    params = getattr(request.node, "callspec", None)
    backend = params.params.get("mlflow_server") if params is not None else None
    if backend not in (None, "sqlite"):
        pytest.skip("statistics are backend-independent; run on SQLite only")


#: The champion tests are about the comparison: only the C-index and Brier gates.
COMPARISON_POLICY = """
gates:
  c_index: {threshold: 0.5, min_delta_vs_champion: 0.0}
  brier: {threshold: 0.3}
"""


def _main(uri: str, policy: str | None = None, **kw: object) -> object:
    folds = int(kw.pop("folds", 4))  # type: ignore[arg-type]
    params = PipelineParams(TrainParams(**kw), folds=folds, policy=policy)  # type: ignore[arg-type]
    return run_pipeline(params, tracking_uri=uri)


@pytest.fixture()
def comparison_policy(tmp_path) -> str:
    path = tmp_path / "comparison.yaml"
    path.write_text(COMPARISON_POLICY)
    return str(path)


def test_dd_by_start_year_promotes_its_first_version(flows_uri, model_name, tmp_path):
    """Time-ordered data: the automatic horizon lies inside the holdout's and every fold's
    follow-up, rows with missing politycode are dropped on request, and the first version of
    dd (holdout = the latest start years) passes every gate and is promoted."""
    path = tmp_path / "dd.csv"
    load_dd().to_csv(path, index=False)
    result = _main(
        flows_uri,
        model_name=model_name,
        data=str(path),
        columns=Columns.parse(
            "duration", "observed", "start_year", "un_continent_name,regime,politycode"
        ),
        missing="drop",
    )
    assert result.outcome == "promoted", result.reasons
    validation = result.validation.metrics
    assert 0.5 < validation["c_index"] <= 1 and 0 <= validation["brier"] < 0.3
    run = mlflow.get_run(result.backtest.run_id)
    assert run.data.tags["mlflow_plugin.backtest_method"].startswith("rolling origin")
    report = mlflow.artifacts.load_text(f"runs:/{result.backtest.run_id}/backtest_report.txt")
    assert "inverse probability of censoring" in report and "trivial" in report


RARE_EVENT_POLICY = """
gates:
  c_index: {threshold: 0.5, min_delta_vs_champion: 0.0}
  f1: {threshold: 0.2, above_baseline: true}
  precision: {threshold: 0.1, above_baseline: true}
  brier: {threshold: 0.3, above_baseline: true}
"""


def test_flchain_by_sample_year_promotes_its_first_version(flows_uri, model_name, tmp_path):
    """scikit-survival's flchain by sample.yr (futime in days: time_scale 365.25 censors the
    training follow-up at each cut in the right unit). The first fold knows one year of
    follow-up, so the horizon is under a year and the event rare (about 3 %): the policy asks
    F1 and precision to beat the trivial predictor (about 0.06 and 0.03), not the default 0.4."""
    from sksurv.datasets import load_flchain

    X, y = load_flchain()
    frame = X[["age", "sex", "kappa", "lambda", "mgus", "sample.yr"]].copy()
    frame["sample.yr"] = frame["sample.yr"].astype(int)
    frame["futime"], frame["death"] = y["futime"], y["death"].astype(int)
    path = tmp_path / "flchain.csv"
    frame.to_csv(path, index=False)
    policy = tmp_path / "policy.yaml"
    policy.write_text(RARE_EVENT_POLICY)
    result = run_pipeline(
        PipelineParams(
            TrainParams(
                model_name=model_name,
                data=str(path),
                columns=Columns.parse("futime", "death", "sample.yr", "age,sex,kappa,lambda,mgus"),
                time_scale=365.25,
            ),
            policy=str(policy),
        ),
        tracking_uri=flows_uri,
    )
    assert result.outcome == "promoted", result.reasons
    gates = {g.name: g for g in result.backtest.report.gates}
    assert "trivial baseline" in gates["f1"].reason
    report = mlflow.artifacts.load_text(f"runs:/{result.backtest.run_id}/backtest_report.txt")
    assert "only 2 of the 4 requested folds" in report


def test_champion_trained_on_the_evaluation_rows_is_not_compared(
    flows_uri, model_name, comparison_policy
):
    """A champion fitted on every row (holdout=0) has seen the candidate's holdout: the
    comparison is undefined (too few unseen rows), never a pass, and says why."""
    first = _main(flows_uri, comparison_policy, model_name=model_name, holdout=0.0, folds=2)
    assert first.outcome == "promoted", first.reasons
    second = _main(
        flows_uri, comparison_policy, model_name=model_name, holdout=0.2, seed=1, folds=2
    )
    assert second.outcome == "rejected"
    gate = next(g for g in second.validation.report.gates if g.name == "c_index")
    assert gate.status.value == "undefined"
    assert "not in the champion's training data" in gate.reason
    tags = mlflow.get_run(second.validation.run_id).data.tags
    assert "were in champion version 1's training data" in tags["mlflow_plugin.champion_note"]


def test_candidate_vs_champion_interval_is_logged(
    flows_uri, model_name, tmp_path, comparison_policy
):
    """Two versions on rows the champion never saw: c_index_vs_champion with its interval, the
    same for brier, in the metrics and in the report's Markdown."""
    frame = load_rossi()
    path = tmp_path / "rossi.csv"
    frame.iloc[:300].to_csv(path, index=False)  # champion: the first 300 rows only
    # One explicit horizon: the champion's time grid must reach the candidate's horizon.
    first = _main(
        flows_uri, comparison_policy, model_name=model_name, data=str(path), folds=2, horizon=40.0
    )
    assert first.outcome == "promoted", first.reasons
    second = _main(
        flows_uri,
        comparison_policy,
        model_name=model_name,
        data="rossi",
        seed=3,
        folds=2,
        horizon=40.0,
    )
    m = second.validation.metrics
    for name in ("c_index", "brier"):
        low, mid, high = (m[f"{name}_vs_champion{s}"] for s in ("_ci_low", "", "_ci_high"))
        assert low <= mid <= high
    assert 20 <= m["champion_rows"] < 86  # the holdout rows among the champion's 300 are out
    md = mlflow.MlflowClient().get_run(second.validation.run_id).data.tags["mlflow.note.content"]
    assert "Candidate − champion" in md and "CI [" in md


def test_explicit_horizon_beyond_the_holdout_is_bad_input(flows_uri, model_name, tmp_path):
    """A horizon past the follow-up of the latest rows is refused before anything is
    registered, naming the admissible range."""
    path = tmp_path / "dd.csv"
    load_dd().dropna().to_csv(path, index=False)
    with pytest.raises(DataError, match=r"horizon: 40 is outside .* choose a value in \(0, "):
        _main(
            flows_uri,
            model_name=model_name,
            data=str(path),
            columns=Columns.parse("duration", "observed", "start_year", "regime"),
            horizon=40.0,
        )
    from mlflow_plugin.errors import NotFound
    from mlflow_plugin.registry._adapter import Registry

    try:
        versions = Registry(flows_uri).list_versions(model_name)
    except NotFound:
        versions = []
    assert versions == []
