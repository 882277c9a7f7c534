"""The closed loop's parts without a tracking server: policy sections, outcomes and matching,
maturation, window rules, the Kubernetes job spec, alert delivery."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlflow_plugin.errors import ConfigError, DataError
from mlflow_plugin.monitoring import OutcomeStore, matured_labels, window_metrics, window_spans
from mlflow_plugin.operator import Alert, Alerter, kubernetes_job_spec
from mlflow_plugin.policy import Alerts, Policy, RollbackIf, Triggers, parse_duration
from mlflow_plugin.testing import InMemoryLedger

ROOT = Path(__file__).resolve().parents[2]
GATES = {"gates": {"c_index": {"threshold": 0.5}}}


class TestPolicySections:
    def test_round_trip(self):
        """triggers, rollback_if and alerts parse into frozen dataclasses and round-trip."""
        policy = Policy.from_dict(
            {
                **GATES,
                "triggers": {
                    "schedule": "0 2 1 * *",
                    "min_history": "180d",
                    "brier_increase": 0.1,
                    "precision_below": 0.5,
                    "recall_below": 0.5,
                    "new_data": "x.csv",
                    "consecutive_windows": 2,
                },
                "rollback_if": {"c_index_below": 0.55, "min_matured": 50},
                "alerts": {"webhook_url": "https://hooks.example/x", "retries": 2},
            }
        )
        assert policy.triggers == Triggers(
            brier_increase=0.1,
            precision_below=0.5,
            recall_below=0.5,
            consecutive_windows=2,
            schedule="0 2 1 * *",
            min_history=180 * 86400.0,
            new_data="x.csv",
        )
        assert policy.rollback_if == RollbackIf(c_index_below=0.55, min_matured=50)
        assert policy.alerts == Alerts(webhook_url="https://hooks.example/x", retries=2)
        assert Policy.from_dict(policy.to_dict()) == policy
        with pytest.raises(AttributeError):
            policy.triggers.schedule = "x"  # type: ignore[misc,union-attr]

    @pytest.mark.parametrize(
        ("section", "path"),
        [
            ({"triggers": {"shedule": "0 2 1 * *"}}, "triggers.shedule: unknown key"),
            ({"triggers": {"schedule": "every month"}}, "triggers.schedule: not a cron expression"),
            (
                {"triggers": {"min_history": "half a year"}},
                "triggers.min_history: expected a duration",
            ),
            ({"triggers": {"precision_below": 1.5}}, "triggers.precision_below: must be <= 1"),
            (
                {"triggers": {"consecutive_windows": 0}},
                "triggers.consecutive_windows: must be >= 1",
            ),
            (
                {"rollback_if": {"brier_increase": "ten"}},
                "rollback_if.brier_increase: expected a number",
            ),
            ({"rollback_if": []}, "rollback_if: expected a mapping"),
            ({"alerts": {"webhook_url": "slack"}}, "alerts.webhook_url: expected an http(s) URL"),
            ({"alerts": {"retries": 2.5}}, "alerts.retries: expected a whole number"),
        ],
    )
    def test_bad_keys_name_their_path(self, section, path):
        """A bad key fails at load with its dotted path first."""
        with pytest.raises(ConfigError, match="^" + path.replace("(", r"\(").replace(")", r"\)")):
            Policy.from_dict({**GATES, **section})

    def test_durations(self):
        """7d, 12h, 30m, 2w and bare numbers (days)."""
        assert parse_duration("7d") == 7 * 86400
        assert parse_duration("12h") == 12 * 3600
        assert parse_duration(180) == 180 * 86400
        assert parse_duration("2w") == 14 * 86400
        with pytest.raises(ValueError):
            parse_duration("0d")

    def test_durations_are_bounded(self):
        """Ten years at most (3650d), so a typo never starts a rollout that watches forever."""
        assert parse_duration("3650d") == 3650 * 86400
        for text in ("3651d", "99999999999d", 10**12, "522w"):
            with pytest.raises(ValueError, match="at most 3650d"):
                parse_duration(text, default_unit="s")

    def test_breaches(self):
        """Brier relative to the baseline; undefined metrics break nothing."""
        rules = Triggers(brier_increase=0.10, precision_below=0.5)
        baseline = {"brier": 0.20}
        assert set(rules.breaches({"brier": 0.23, "precision": 0.4}, baseline)) == {
            "brier_increase",
            "precision_below",
        }
        assert rules.breaches({"brier": 0.219, "precision": None}, baseline) == {}


POSTGRES = os.environ.get("MLFLOW_PLUGIN_TEST_POSTGRES", "").strip()


@pytest.fixture(params=["sqlite"] + (["postgresql"] if POSTGRES else []))
def store(request: pytest.FixtureRequest, tmp_path: Path):
    """An outcome store beside a prediction table as serving writes it (SQLite, and PostgreSQL
    when ``MLFLOW_PLUGIN_TEST_POSTGRES`` is set)."""
    from mlflow_plugin.serving import PredictionLog
    from mlflow_plugin.testing import postgres_database

    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            uri = f"sqlite:///{tmp_path / 'p.db'}"
        else:
            uri = stack.enter_context(postgres_database(POSTGRES))
        PredictionLog(uri, start=False).close()  # creates serving's table
        s = OutcomeStore(uri)
        yield s
        s.close()


def _log_predictions(store: OutcomeStore, rows: list[dict]) -> None:
    from sqlalchemy import MetaData

    from mlflow_plugin.serving import prediction_table

    t = prediction_table(MetaData())
    base = {
        "request_id": "r",
        "model_name": "m",
        "route": "champion",
        "fallback": False,
        "latency_ms": 1.0,
        "guardrail_flags": "",
        "error": None,
    }
    with store.engine.begin() as conn:
        conn.execute(t.insert(), [{**base, "row_index": i, **r} for i, r in enumerate(rows)])


class TestOutcomes:
    def test_ingest_is_idempotent_and_updates_longer_follow_up(self, store):
        """Same rows twice change nothing; a longer follow-up updates the row."""
        frame = pd.DataFrame({"id": ["a", "b", "c"], "T": [5.0, 12.0, 3.0], "E": [1, 0, 0]})
        assert (
            str(store.ingest("m", frame, entity_col="id", duration_col="T", event_col="E"))
            == "3 inserted, 0 updated, 0 unchanged"
        )
        assert (
            str(store.ingest("m", frame, entity_col="id", duration_col="T", event_col="E"))
            == "0 inserted, 0 updated, 3 unchanged"
        )
        frame.loc[2, ["T", "E"]] = [8.0, 1]
        assert (
            str(store.ingest("m", frame, entity_col="id", duration_col="T", event_col="E"))
            == "0 inserted, 1 updated, 2 unchanged"
        )
        assert store.count("m") == 3

    @pytest.mark.parametrize(
        ("frame", "kwargs", "message"),
        [
            (
                pd.DataFrame({"id": ["a"], "T": [1.0]}),
                {"duration_col": "T", "event_col": "E"},
                "no column 'E'",
            ),
            (
                pd.DataFrame({"id": ["a"], "T": [-1.0], "E": [1]}),
                {"duration_col": "T", "event_col": "E"},
                "durations >= 0",
            ),
            (pd.DataFrame({"id": ["a"], "y": [2]}), {"label_col": "y"}, "not 0/1"),
            (pd.DataFrame({"id": ["a", "a"], "y": [0, 1]}), {"label_col": "y"}, "more than once"),
            (pd.DataFrame({"id": [None], "y": [0]}), {"label_col": "y"}, "no entity key"),
            (pd.DataFrame({"id": ["a"], "y": [0]}), {}, "--label-col"),
        ],
    )
    def test_bad_input_writes_nothing(self, store, frame, kwargs, message):
        """Bad outcome data: one clear DataError, no row written."""
        with pytest.raises(DataError, match=message):
            store.ingest("m", frame, entity_col="id", **kwargs)
        assert store.count("m") == 0

    def test_matching_keeps_the_forecast_before_the_outcome(self, store):
        """Per entity the earliest prediction of the version made before the outcome was known."""
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        out = lambda s: json.dumps({"risk": 1.0, "p_gt_10": s})  # noqa: E731
        _log_predictions(
            store,
            [
                {"ts": t0, "model_version": "1", "entity_key": "a", "output": out(0.9)},
                {
                    "ts": t0 + timedelta(hours=1),
                    "model_version": "1",
                    "entity_key": "a",
                    "output": out(0.1),
                },
                {
                    "ts": t0 + timedelta(days=3),
                    "model_version": "1",
                    "entity_key": "b",
                    "output": out(0.5),
                },
                {"ts": t0, "model_version": "2", "entity_key": "c", "output": out(0.5)},
                {
                    "ts": t0,
                    "model_version": None,
                    "entity_key": "d",
                    "output": None,
                    "error": "down",
                },
            ],
        )
        frame = pd.DataFrame(
            {
                "id": ["a", "b", "c"],
                "T": [4.0, 20.0, 1.0],
                "E": [1, 0, 1],
                "seen": ["2026-01-02", "2026-01-02", "2026-01-02"],
            }
        )
        store.ingest(
            "m", frame, entity_col="id", duration_col="T", event_col="E", observed_col="seen"
        )
        matched = store.matched("m", "1", t0, t0 + timedelta(days=7), survival_key="p_gt_10")
        assert matched["entity_key"].tolist() == ["a"]  # b was predicted after its outcome
        assert matched["survival"].tolist() == [0.9]
        traffic = store.traffic("m", "1", t0, t0 + timedelta(days=7))
        assert traffic == {"rows": 3, "requests": 1, "errors": 1, "guardrail_flags": 0}


class TestMaturation:
    def test_censored_before_horizon_is_never_a_negative(self):
        """Event by the horizon -> 1; follow-up past it -> 0; censored earlier -> not matured."""
        label, matured = matured_labels(
            np.array([3.0, 12.0, 4.0, 10.0]), np.array([1, 1, 0, 0]), 10.0
        )
        assert label.tolist() == [1, 0, 0, 0]
        assert matured.tolist() == [True, True, False, True]

    def test_window_metrics_use_the_gates(self):
        """Metrics equal the gates' own functions on the same rows."""
        from mlflow_plugin import metrics as lib

        rng = np.random.default_rng(0)
        n = 400
        risk = rng.uniform(0, 1, n)
        durations = np.round(rng.exponential(20 / (0.5 + risk)), 1) + 0.1
        events = rng.uniform(size=n) < 0.7
        survival = np.clip(1 - risk, 0, 1)
        frame = pd.DataFrame(
            {
                "risk": risk,
                "survival": survival,
                "duration": durations,
                "event": events,
                "label": pd.array([pd.NA] * n, dtype="Int64"),
            }
        )
        metrics, matured = window_metrics(frame, horizon=10.0, decision_threshold=0.5)
        assert metrics["c_index"] == pytest.approx(lib.c_index_score(durations, events, risk))
        assert metrics["brier"] == pytest.approx(
            lib.survival_brier_loss(
                durations, events, survival, 10.0, train_durations=durations, train_events=events
            )
        )
        label, ok = matured_labels(durations, events, 10.0)
        assert matured == int(ok.sum())
        decided = (1 - survival[ok] >= 0.5).astype(float)
        assert metrics["precision"] == pytest.approx(lib.precision_score(label[ok], decided))

    def test_windows_are_stable_from_the_origin(self):
        """Window k is the same span on every pass."""
        origin = datetime(2026, 1, 1, tzinfo=UTC)
        spans = window_spans(origin, origin + timedelta(days=15), timedelta(days=7))
        assert [(k, s.day) for k, s, _ in spans] == [(0, 1), (1, 8), (2, 15)]


def test_kubernetes_job_spec(tmp_path):
    """The Job MLflow's kubernetes backend would submit runs main with the run's environment."""
    template = tmp_path / "job.yaml"
    template.write_text(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: x, namespace: mlflow}\n"
        "spec:\n  template:\n    spec:\n      containers:\n      - {name: x, image: x}\n"
        "      restartPolicy: Never\n"
    )
    config = {
        "kube-context": "ctx",
        "repository-uri": "registry.example/mlflow-plugin",
        "kube-job-template-path": str(template),
    }
    params = {
        "data": "s3://bucket/new.csv",
        "model_name": "churn",
        "duration_col": "week",
        "event_col": "arrest",
    }
    spec = kubernetes_job_spec(str(ROOT), params, config, run_id="abc123", experiment_id="7")
    container = spec["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("registry.example/mlflow-plugin@")
    command = " ".join(container["command"])
    assert "flows/run.py main" in command and "--data s3://bucket/new.csv" in command
    assert "--model-name churn" in command
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MLFLOW_RUN_ID"] == "abc123" and env["MLFLOW_EXPERIMENT_ID"] == "7"
    assert spec["metadata"]["namespace"] == "mlflow"
    with pytest.raises(ConfigError, match="kube-job-template-path"):
        kubernetes_job_spec(
            str(ROOT),
            params,
            {"kube-context": "c", "repository-uri": "r"},
            run_id="a",
            experiment_id="1",
        )


class TestAlerts:
    def test_retried_and_never_blocking(self):
        """A receiver failing twice gets the alert on the third try; send() returns at once."""
        hits: list[dict] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hits.append(body)
                self.send_response(200 if len(hits) >= 3 else 503)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            ledger = InMemoryLedger()
            alerter = Alerter(
                ledger,
                Alerts(webhook_url=f"http://127.0.0.1:{server.server_address[1]}/", retries=3),
            )
            t0 = time.monotonic()
            alerter.send(
                Alert("m", "2", "degraded", "m v2 degraded: window 0: c_index 0.48 < 0.55")
            )
            assert time.monotonic() - t0 < 5  # the ledger write only, not the retries
            assert alerter.flush(60)
        finally:
            server.shutdown()
        assert len(hits) == 3 and alerter.delivered == [hits[-1]]
        assert hits[-1]["text"] == "[mlflow_plugin] m v2 degraded: window 0: c_index 0.48 < 0.55"
        assert [e.event_type for e in ledger.events("m")] == ["alert"]

    def test_dead_receiver_is_given_up(self):
        """Nothing listening: the alert event is written, the webhook given up after retries."""
        from mlflow_plugin.testing import free_port

        alerter = Alerter(
            InMemoryLedger(),
            Alerts(webhook_url=f"http://127.0.0.1:{free_port()}/", retries=1, timeout=1),
        )
        alerter.send(Alert("m", "1", "retrain_triggered", "x"))
        assert alerter.flush(60)
        assert alerter.delivered == [] and len(alerter.failed) == 1


class TestMinHistory:
    @pytest.mark.parametrize(
        ("column", "enough"),
        [
            ([0.0, 100.0, 200.0], True),  # numbers are days
            ([0.0, 50.0, 100.0], False),
            (["2026-01-01", "2026-05-01", "2026-08-01"], True),
            (["2026-01-01", "2026-02-01", "2026-03-01"], False),
        ],
    )
    def test_span_of_the_time_column(self, tmp_path, column, enough):
        """min_history is measured on the recipe's time column; too short -> a reason."""
        from mlflow_plugin.operator._triggers import _short_history

        data = tmp_path / "d.csv"
        pd.DataFrame({"t": column, "week": [1, 2, 3], "arrest": [0, 1, 0]}).to_csv(
            data, index=False
        )
        reason = _short_history({"data": str(data), "time_col": "t"}, parse_duration("180d"))
        assert (reason == "") is enough, reason
        assert _short_history({"data": str(data), "time_col": "none"}, 1.0).startswith(
            "min_history needs"
        )
