"""The closed loop end to end against the real server, driven by ``Operator.tick`` with an
injected clock: serve, log predictions with entity keys, ingest outcomes, degrade, roll back,
retrain through MLflow Projects, alert."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pytest
from lifelines.datasets import load_rossi

from mlflow_plugin.controller import Controller
from mlflow_plugin.monitoring import MonitoringRuns, OutcomeStore
from mlflow_plugin.operator import Operator, Retrainer
from mlflow_plugin.policy import Policy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PASSED = {"mlflow_plugin.validation": "passed", "mlflow_plugin.backtest": "passed"}


class _Receiver:
    """A local webhook receiver: every POSTed JSON body, in order."""

    def __init__(self) -> None:
        bodies = self.bodies = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture()
def receiver() -> Iterator[_Receiver]:
    r = _Receiver()
    yield r
    r.close()


def _train(uri: str, model: str, csv: str) -> str:
    from mlflow_plugin.registry._adapter import Registry
    from mlflow_plugin.training import TrainParams, ValidateParams, run_train, run_validate

    version = run_train(
        TrainParams(model, data=csv, holdout=0.0, penalizer=0.1), tracking_uri=uri
    ).version.version
    run_validate(ValidateParams(model, version=version, data=csv), tracking_uri=uri)
    registry = Registry(uri)
    for key, value in PASSED.items():  # the backtest is not what this test is about
        registry.set_version_tag(model, version, key, value)
    return version


@pytest.fixture()
def two_versions(tracking_uri: str, model_name: str, tmp_path: Path) -> tuple[str, str, str]:
    """v1 trained on rossi, v2 on rossi with shuffled outcomes (worthless), v2 champion and v1
    its fallback; returns (v1, v2, path of the real data with an id column)."""
    mlflow.set_experiment("mlflow_plugin-operator-tests")
    frame = load_rossi()
    real = tmp_path / "rossi.csv"
    frame.to_csv(real, index=False)
    shuffled = frame.copy()
    order = np.random.default_rng(7).permutation(len(frame))
    shuffled[["week", "arrest"]] = frame[["week", "arrest"]].to_numpy()[order]
    bad = tmp_path / "shuffled.csv"
    shuffled.to_csv(bad, index=False)
    v1 = _train(tracking_uri, model_name, str(real))
    v2 = _train(tracking_uri, model_name, str(bad))
    controller = Controller.from_uri(tracking_uri)
    controller.promote(model_name, v1)
    controller.promote(model_name, v2)
    return v1, v2, str(real)


def _serve_and_log(uri: str, model: str, db: str) -> None:
    """Every rossi row through the HTTP app, ten requests, entity keys in X-Entity-Key."""
    from mlflow_plugin.serving import ChampionModel, PredictionLog, create_app
    from mlflow_plugin.testing import AppServer

    features = load_rossi().drop(columns=["week", "arrest"])
    log = PredictionLog(db)
    champion = ChampionModel(model, tracking_uri=uri, prediction_log=log, watch=False)
    with AppServer(create_app(champion)) as app:
        for chunk in np.array_split(np.arange(len(features)), 10):
            body = json.dumps({"dataframe_split": features.iloc[chunk].to_dict(orient="split")})
            keys = ",".join(f"person-{i}" for i in chunk)
            status, _, text = app.raw_request(
                "POST",
                "/invocations",
                body,
                {"Content-Type": "application/json", "X-Entity-Key": keys},
            )
            assert status == 200, text
    log.flush()


def test_degraded_champion_is_rolled_back_and_retrained_once(
    tracking_uri, model_name, two_versions, tmp_path, receiver, monkeypatch
):
    """Outcomes that show v2 is worthless: window metrics, one trigger, exactly one retraining
    run (FINISHED, outcome tagged), degraded + rollback to v1, alerts delivered; the same
    outcomes again and another pass change nothing."""
    v1, v2, real_csv = two_versions
    db = f"sqlite:///{tmp_path / 'predictions.db'}"
    _serve_and_log(tracking_uri, model_name, db)
    outcomes = load_rossi().assign(person=[f"person-{i}" for i in range(432)])
    store = OutcomeStore(db)
    first = store.ingest(
        model_name, outcomes, entity_col="person", duration_col="week", event_col="arrest"
    )
    assert (first.inserted, first.updated, first.unchanged) == (432, 0, 0)

    policy = Policy.from_dict(
        {
            "gates": {"c_index": {"threshold": 0.5}},
            "triggers": {"c_index_below": 0.58, "consecutive_windows": 1, "min_matured": 20},
            "rollback_if": {"c_index_below": 0.58, "consecutive_windows": 1},
            "alerts": {"webhook_url": receiver.url, "retries": 1},
        }
    )
    controller = Controller.from_uri(tracking_uri)
    experiment = f"retrain-{model_name}"
    retrainer = Retrainer(tracking_uri, project_uri=str(ROOT), experiment=experiment)
    monkeypatch.setenv("MLFLOW_PLUGIN_ACTOR", "pytest")
    later = datetime.now(UTC) + timedelta(hours=2)
    op = Operator(
        controller,
        policy,
        store=store,
        runs=MonitoringRuns(tracking_uri),
        retrainer=retrainer,
        window=timedelta(hours=1),
        models=[model_name],
        clock=lambda: later,
    )
    actions = op.tick()[model_name]
    assert op.alerter.flush(30)

    text = "\n".join(actions)
    assert "degraded: v" + v2 in text and "rollback:" in text, text
    assert controller.registry.get_model(model_name).aliases["champion"] == v1
    events = controller.ledger.events(model_name)
    kinds = [e.event_type for e in events]
    assert kinds.count("degraded") == 1 and kinds.count("retrain_triggered") == 1
    rollback = [e for e in events if e.event_type == "rollback"][-1]
    assert rollback.from_version == v2 and "c_index" in rollback.message
    client = mlflow.MlflowClient()
    assert client.get_run(rollback.run_id).data.tags["mlflow.runName"] == f"rollback v{v1} ← v{v2}"
    for name in ("mlflow_plugin-deployments", "mlflow_plugin-monitoring", experiment):
        kind = client.get_experiment_by_name(name).tags.get("mlflow.experimentKind")
        assert kind == "custom_model_development", name  # MLflow's "Model training" view
    trigger = [e for e in events if e.event_type == "retrain_triggered"][0]
    assert "c_index_below" in trigger.message and "window 0" in trigger.message

    # The window metrics, logged at step 0 of v2's monitoring run, with the plot.
    mon = client.search_runs(
        [client.get_experiment_by_name("mlflow_plugin-monitoring").experiment_id],
        f"tags.`mlflow_plugin.model` = '{model_name}' and tags.`mlflow_plugin.version` = '{v2}'",
    )
    assert len(mon) == 1
    assert mon[0].data.tags["mlflow_plugin.monitor_state"] == "rolled_back"
    c_index = client.get_metric_history(mon[0].info.run_id, "c_index")
    assert [m.step for m in c_index] == [0] and c_index[0].value < 0.58
    assert client.get_metric_history(mon[0].info.run_id, "matured")[0].value > 100
    assert client.get_metric_history(mon[0].info.run_id, "requests")[0].value == 10
    assert client.get_metric_history(mon[0].info.run_id, "error_rate")[0].value == 0.0
    assert "monitoring.png" in [a.path for a in client.list_artifacts(mon[0].info.run_id)]
    assert "baseline_c_index" in mon[0].data.params

    # Exactly one retraining run, through MLflow Projects, finished, trigger in its tags.
    runs = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id],
        "tags.`mlflow_plugin.step` = 'main'",
    )
    assert len(runs) == 1
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["mlflow_plugin.trigger"] == "c_index_below"
    assert "c_index 0." in runs[0].data.tags["mlflow_plugin.trigger_evidence"]
    assert runs[0].data.tags["mlflow_plugin.outcome"] in ("promoted", "rejected", "unchanged")

    # Alerts: ledger events and webhook bodies (Slack-compatible text).
    assert kinds.count("alert") == 3  # degraded, rollback, retrain_triggered
    assert {b["kind"] for b in receiver.bodies} == {"degraded", "rollback", "retrain_triggered"}
    assert all(b["text"].startswith("[mlflow_plugin]") for b in receiver.bodies)

    # The same outcomes again: nothing changes; another pass fires nothing new.
    again = store.ingest(
        model_name, outcomes, entity_col="person", duration_col="week", event_col="arrest"
    )
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 432)
    op.tick()
    assert op.alerter.flush(30)
    kinds_after = [e.event_type for e in controller.ledger.events(model_name)]
    assert kinds_after.count("retrain_triggered") == 1 and kinds_after.count("degraded") == 1
    assert kinds_after.count("rollback") == 1
    top_level = "tags.`mlflow_plugin.step` = 'main'"
    assert len(client.search_runs([runs[0].info.experiment_id], top_level)) == 1
    store.close()
