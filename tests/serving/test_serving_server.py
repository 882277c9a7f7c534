"""The server against a real ``mlflow server``: protocol, hot swap and fallback under load, the log.

Load is bounded (a few loopback clients, a request cap, a time cap); no test asserts a timing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from serving_helpers import SHARED, Load, features, log_model, register

from mlflow_plugin.controller import Controller
from mlflow_plugin.ledger._ledger import Ledger
from mlflow_plugin.registry._adapter import Registry
from mlflow_plugin.serving import PredictionLog
from mlflow_plugin.testing import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RISK = {kind: cfg["risk"] for kind, cfg in SHARED.items()}


@pytest.fixture()
def controller(tracking_uri: str) -> Controller:
    return Controller.from_uri(tracking_uri)


def wait_until(predicate, timeout: float = 60.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def ledger_events(tracking_uri: str, model: str, event_type: str) -> list:
    return Ledger(tracking_uri).events(model, event_type)


class TestProtocol:
    def test_scoring_formats_of_mlflow_models_serve(
        self, served, versions, model_name, tracking_uri
    ):
        """dataframe_split, dataframe_records, instances, inputs and CSV all score, headers say who."""
        (v1,) = versions("r1")
        Registry(tracking_uri).set_alias(model_name, "champion", v1)
        server = served()
        rows = features().head(2)
        bodies = {
            "dataframe_split": {"dataframe_split": rows.to_dict(orient="split")},
            "dataframe_records": {"dataframe_records": rows.to_dict(orient="records")},
            "instances": {"instances": rows.to_dict(orient="records")},
            "inputs": {"inputs": rows.to_dict(orient="list")},
        }
        for name, payload in bodies.items():
            status, headers, body = server.json("POST", "/invocations", payload)
            assert status == 200, (name, body)
            assert [p["risk"] for p in body["predictions"]] == [0.1, 0.1], name
            assert headers["x-model-version"] == v1 and headers["x-model-role"] == "champion"
        status, headers, raw = server.request(
            "POST", "/invocations", rows.to_csv(index=False), "text/csv"
        )
        assert status == 200 and json.loads(raw)["predictions"][0]["p_low"] == pytest.approx(0.9)

    def test_bad_requests_get_a_one_line_400(self, served, versions, model_name, tracking_uri):
        """Bad requests get 400/415 with a one-line reason, never reach the model; serving goes on."""
        (v1,) = versions("r1")
        Registry(tracking_uri).set_alias(model_name, "champion", v1)
        server = served()
        row = features().iloc[0].to_dict()
        cases = {
            "malformed-json": ("{not json", "application/json", "valid JSON"),
            "missing-column": (
                json.dumps({"dataframe_split": {"columns": ["fin"], "data": [[1]]}}),
                "application/json",
                "missing inputs",
            ),
            "wrong-type": (
                json.dumps({"dataframe_records": [{**row, "age": "old"}]}),
                "application/json",
                "column 'age', row 0: 'old' is not a number",
            ),
            "unknown-format": (
                json.dumps({"rows": []}),
                "application/json",
                "exactly one of the input fields",
            ),
            "content-type": ("a,b\n1,2", "text/plain", "unsupported content type"),
        }
        for case, (body, content_type, expect) in cases.items():
            status, _, raw = server.request("POST", "/invocations", body, content_type)
            message = json.loads(raw)["message"]
            assert status in (400, 415), case
            assert expect.lower() in message.lower() and "\n" not in message, (case, message)
        assert server.model.counts().get(("predictions", v1, "champion"), 0) == 0
        good = json.dumps({"dataframe_records": features().head(1).to_dict(orient="records")})
        assert server.request("POST", "/invocations", good)[0] == 200

    def test_ping_health_version_metrics(self, served, versions, controller, model_name, one_row):
        """The operational endpoints describe what serves and what happened."""
        v1, v2 = versions("r1", "r2")
        controller.promote(model_name, v1)
        controller.promote(model_name, v2)
        controller.fallback_enable(model_name)
        server = served()
        assert server.request("GET", "/ping")[0] == 200
        for _ in range(3):
            assert server.request("POST", "/invocations", one_row)[0] == 200
        server.request("POST", "/invocations", "{")
        status, _, health = server.json("GET", "/health")
        assert status == 200 and health["status"] == "ok"
        assert health["champion"]["loaded"] == v2
        assert health["fallback"] == {**health["fallback"], "enabled": True, "loaded": v1}
        assert health["last_swap"]["to"] == v2
        status, _, version = server.json("GET", "/version")
        assert version["version"] == v2 and version["model"] == model_name
        status, headers, text = server.request("GET", "/metrics")
        text = text.decode()
        assert headers["content-type"].startswith("text/plain")
        for line in (
            'mlflow_plugin_serving_requests_total{code="200"} 3.0',
            'mlflow_plugin_serving_requests_total{code="400"} 1.0',
            'mlflow_plugin_serving_request_errors_total{reason="bad_request"} 1.0',
            f'mlflow_plugin_serving_predictions_total{{role="champion",version="{v2}"}} 3.0',
            "mlflow_plugin_serving_request_latency_seconds_count 4.0",
            f'mlflow_plugin_serving_model_loaded{{role="fallback",version="{v1}"}} 1.0',
            "mlflow_plugin_serving_fallbacks_total",
            "mlflow_plugin_serving_guardrail_violations_total",
        ):
            assert line in text, line
        assert server.request("POST", "/refresh")[0] == 202


class TestUnderLoad:
    def test_rollback_under_load(
        self, served, versions, controller, model_name, one_row, tracking_uri
    ):
        """Rollback during load: no failed request, old or new answers only, the new one sticks."""
        v1, v2 = versions("r1", "r2")
        controller.promote(model_name, v1)
        controller.promote(model_name, v2)
        server = served(poll_interval=0.5)  # fallback disabled: v1 must be loaded after rollback
        with Load(server.port, one_row, threads=3, max_requests=4000, max_seconds=90) as load:
            assert load.wait_for(lambda rs: len(rs) >= 30)
            rolled_back = time.monotonic()
            controller.rollback(model_name, reason="rollback under load test")
            assert load.wait_for(lambda rs: any(r.version == v1 for r in rs), timeout=60)
            first_new = min(r.received for r in load.responses if r.version == v1)
            n = load.count()
            load.wait_for(lambda rs: len(rs) >= n + 30, timeout=20)
            responses = load.stop()
        failed = [r for r in responses if r.status != 200]
        assert not failed, failed[:3]
        assert {r.version for r in responses} == {v1, v2}
        assert all(r.risk == {v1: RISK["r1"], v2: RISK["r2"]}[r.version] for r in responses)
        # Once a client saw the new version, no request sent afterwards got the old one.
        assert not [r for r in responses if r.version == v2 and r.sent > first_new]
        swap = server.model.status()["last_swap"]
        assert (swap["from"], swap["to"]) == (v2, v1)
        print(
            f"\nrollback -> first v{v1} answer: {first_new - rolled_back:.2f}s "
            f"(poll 0.5s + load {swap['load_seconds']}s); {len(responses)} requests, 0 failed"
        )

    @pytest.mark.parametrize("damage", ["deleted", "corrupted"])
    def test_broken_champion_artifacts_fall_back(
        self, served, versions, controller, model_name, one_row, tracking_uri, mlflow_server, damage
    ):
        """A promoted version whose artifacts are gone or garbage: the fallback answers all requests."""
        import mlflow

        (good,) = versions("r1")
        uri = log_model(tracking_uri, {"risk": 0.3})
        bad = register(tracking_uri, model_name, uri)
        controller.promote(model_name, good)
        server = served(poll_interval=0.5)
        location = mlflow.get_logged_model(uri.removeprefix("models:/")).artifact_location
        local = Path(mlflow_server.workdir) / "artifacts" / location.split(":/", 1)[1].lstrip("/")
        assert (local / "MLmodel").exists(), local
        if damage == "deleted":
            shutil.rmtree(local)
        else:
            (local / "MLmodel").write_text("{{{ not an MLmodel file\n")
        with Load(server.port, one_row, threads=2, max_requests=3000, max_seconds=90) as load:
            assert load.wait_for(lambda rs: len(rs) >= 10)
            controller.fallback_enable(model_name, good)
            # Promotion verifies the files first: broken ones take --force.
            controller.promote(model_name, bad, force=True, reason="test: broken artifacts")
            assert load.wait_for(lambda rs: sum(r.role == "fallback" for r in rs) >= 30, timeout=60)
            responses = load.stop()
        assert [r for r in responses if r.status != 200] == []
        assert {r.version for r in responses} == {good}
        status, _, health = server.json("GET", "/health")
        assert status == 200 and health["status"] == "degraded"
        assert health["serving"] == {"version": good, "role": "fallback"}
        assert health["champion"]["wanted"] == bad and health["champion"]["loaded"] is None
        assert health["champion"]["error"]
        server.model.events.flush(30)
        errors = ledger_events(tracking_uri, model_name, "error")
        recoveries = ledger_events(tracking_uri, model_name, "recovery")
        assert any(e.version == bad and "could not be loaded" in e.message for e in errors)
        assert any(e.version == good and e.from_version == bad for e in recoveries)
        # Rate-limited: hundreds of fallbacks, a handful of audit runs.
        assert len(errors) + len(recoveries) <= 4

    def test_prediction_log_under_load(
        self, served, versions, controller, model_name, one_row, tmp_path
    ):
        """Under load the log never blocks: rows written == requests answered - dropped."""
        (v1,) = versions("r1")
        controller.promote(model_name, v1)
        uri = f"sqlite:///{tmp_path / 'predictions.db'}"
        log = PredictionLog(uri, max_queue=2, batch_size=1)  # small: drops are likely, and counted
        server = served(prediction_log=log)
        with Load(server.port, one_row, threads=4, max_requests=600, max_seconds=60) as load:
            load.wait_for(lambda rs: len(rs) >= 600, timeout=60)
            responses = load.stop()
        assert all(r.status == 200 for r in responses)
        _, _, metrics = server.request("GET", "/metrics")
        server.model.close()
        stats = log.stats()
        engine = sa.create_engine(uri)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT count(*), count(DISTINCT request_id) FROM predictions")
            ).one()
        engine.dispose()
        assert rows[0] == rows[1] == stats["written_rows"] == len(responses) - stats["dropped"]
        assert stats["failed_requests"] == 0
        assert "mlflow_plugin_serving_prediction_log_dropped_total" in metrics.decode()
        print(
            f"\nprediction log: {len(responses)} requests, {stats['written_rows']} rows, "
            f"{stats['dropped']} dropped"
        )


class TestCommand:
    def test_mlflow_plugin_serve(
        self, versions, controller, model_name, tracking_uri, tmp_path, one_row
    ):
        """`mlflow-plugin serve` answers, logs to the given database and flushes it on SIGTERM;
        its log has a timestamped line for the swap."""
        v1, v2 = versions("r1", "r2")
        controller.promote(model_name, v1)
        port = free_port()
        db = tmp_path / "p.db"
        env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
        exe = Path(sys.executable).with_name("mlflow-plugin")
        proc = subprocess.Popen(
            [
                str(exe),
                "serve",
                model_name,
                "--port",
                str(port),
                "--poll-interval",
                "1",
                "--prediction-log",
                f"sqlite:///{db}",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            import urllib.request

            def up() -> bool:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                        return r.status == 200
                except OSError:
                    assert proc.poll() is None, proc.communicate()
                    return False

            assert wait_until(up, timeout=90, step=0.2)
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/invocations",
                data=one_row.encode(),
                headers={"Content-Type": "application/json"},
            )
            for _ in range(5):
                with urllib.request.urlopen(req, timeout=10) as r:
                    assert r.headers["X-Model-Version"] == v1
                    assert json.loads(r.read())["predictions"][0]["risk"] == RISK["r1"]
            controller.promote(model_name, v2)

            def swapped() -> bool:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return bool(r.headers["X-Model-Version"] == v2)

            assert wait_until(swapped, timeout=60, step=0.2)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        # uvicorn shuts down gracefully, then re-raises SIGTERM (exit -15), as servers should.
        assert proc.returncode in (0, -signal.SIGTERM), err
        assert f"serving {model_name} version {v1} (champion)" in err
        swap = rf"^\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO \S+: {model_name}: swap: champion {v1} -> {v2}"
        assert re.search(swap, err, re.MULTILINE), err
        frame = pd.read_sql("SELECT * FROM predictions", sa.create_engine(f"sqlite:///{db}"))
        assert len(frame) >= 6 and set(frame["model_version"]) == {v1, v2}

    def test_serve_unknown_model_exits_2(self, tracking_uri):
        """An unknown model is a one-line error and exit code 2."""
        exe = Path(sys.executable).with_name("mlflow-plugin")
        proc = subprocess.run(
            [
                str(exe),
                "--tracking-uri",
                tracking_uri,
                "serve",
                "no-such-model",
                "--prediction-log",
                "none",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2
        assert (
            proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1
        )
