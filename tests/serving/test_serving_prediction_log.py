"""The prediction log: schema, rows, digests, drops (SQLite files, no server)."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mlflow_plugin import ConfigError
from mlflow_plugin.serving import PredictionLog, PredictionRecord


@pytest.fixture()
def db_uri(tmp_path) -> str:
    """A fresh SQLite file for one test."""
    return f"sqlite:///{tmp_path / 'predictions.db'}"


def record(i: int = 0, rows: int = 1, **kwargs) -> PredictionRecord:
    features = pd.DataFrame(
        {
            "age": np.arange(rows) + 20 + i,
            "fin": [1] * rows,
            "id": [f"c{i}-{j}" for j in range(rows)],
        }
    )
    output = pd.DataFrame({"risk": np.full(rows, 0.25), "p_low": 0.75, "p_high": 0.25})
    base = dict(
        request_id=f"req-{i}",
        ts=time.time(),
        model_name="m",
        model_version="3",
        route="champion",
        fallback=False,
        latency_s=0.002,
        features=features,
        output=output,
    )
    base.update(kwargs)
    return PredictionRecord(**base)


def table_rows(uri: str) -> list[dict]:
    engine = sa.create_engine(uri)
    with engine.connect() as conn:
        rows = [
            dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM predictions ORDER BY id"))
        ]
    engine.dispose()
    return rows


class TestRows:
    def test_one_row_per_scored_row(self, db_uri):
        """A 3-row request becomes 3 rows with its request id, version, route and outputs."""
        log = PredictionLog(db_uri, key_column="id")
        log.log(record(rows=3))
        log.close()
        rows = table_rows(db_uri)
        assert [r["row_index"] for r in rows] == [0, 1, 2]
        first = rows[0]
        assert (first["request_id"], first["model_version"], first["route"]) == (
            "req-0",
            "3",
            "champion",
        )
        assert json.loads(first["output"]) == {"p_high": 0.25, "p_low": 0.75, "risk": 0.25}
        assert json.loads(first["features"]) == {"age": 20, "fin": 1, "id": "c0-0"}
        assert first["entity_key"] == "c0-0"
        assert first["latency_ms"] == pytest.approx(2.0)
        assert first["guardrail_flags"] == "" and first["error"] is None

    def test_input_digest_is_sha256_of_the_features_json(self, db_uri):
        """Anyone can recompute the digest from the stored features."""
        log = PredictionLog(db_uri)
        log.log(record(rows=2))
        log.close()
        for row in table_rows(db_uri):
            assert row["input_digest"] == hashlib.sha256(row["features"].encode()).hexdigest()

    def test_features_can_be_left_out(self, db_uri):
        """log_features=False keeps the digest and drops the features."""
        log = PredictionLog(db_uri, log_features=False)
        log.log(record())
        log.close()
        (row,) = table_rows(db_uri)
        assert row["features"] is None and len(row["input_digest"]) == 64

    def test_nan_outputs_and_errors_are_stored(self, db_uri):
        """NaN becomes JSON null; a failed request keeps its error and flags."""
        log = PredictionLog(db_uri)
        nan_out = pd.DataFrame({"risk": [np.nan]})
        log.log(record(0, output=nan_out, flags=("non_finite",)))
        log.log(
            record(
                1,
                output=None,
                model_version=None,
                route=None,
                error="no version could answer",
                flags=("load",),
            )
        )
        log.close()
        ok, failed = table_rows(db_uri)
        assert json.loads(ok["output"]) == {"risk": None} and ok["guardrail_flags"] == "non_finite"
        assert failed["error"] == "no version could answer" and failed["model_version"] is None

    def test_array_outputs(self, db_uri):
        """A bare array output is split per row; a misaligned one stays whole on row 0."""
        log = PredictionLog(db_uri)
        log.log(record(0, rows=2, output=np.array([0.1, 0.2])))
        log.log(record(1, rows=2, output=np.array([1.0, 2.0, 3.0])))
        log.close()
        rows = table_rows(db_uri)
        assert [r["output"] for r in rows] == ["0.1", "0.2", "[1.0,2.0,3.0]", None]


class TestQueue:
    def test_full_queue_drops_and_counts(self, db_uri):
        """With the writer not started, entries past max_queue are dropped, never waited for."""
        log = PredictionLog(db_uri, max_queue=10, start=False)
        accepted = [log.log(record(i)) for i in range(25)]
        assert accepted.count(True) == 10
        assert log.stats()["dropped"] == 15
        log.start()
        log.close()
        stats = log.stats()
        assert len(table_rows(db_uri)) == stats["written_rows"] == 25 - stats["dropped"]

    def test_concurrent_loggers_account_for_every_entry(self, db_uri):
        """Under concurrent logging, rows written + dropped == requests logged."""
        log = PredictionLog(db_uri, max_queue=20, batch_size=5)
        n_threads, per_thread = 4, 150

        def work(t: int) -> None:
            for i in range(per_thread):
                log.log(record(t * 1000 + i))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        log.close()
        stats = log.stats()
        assert stats["written_rows"] + stats["dropped"] == n_threads * per_thread
        assert len(table_rows(db_uri)) == stats["written_rows"]

    def test_log_after_close_is_dropped(self, db_uri):
        """A closed log refuses new entries and counts them."""
        log = PredictionLog(db_uri)
        log.close()
        assert log.log(record()) is False and log.stats()["dropped"] == 1

    def test_bad_uri_is_a_config_error(self):
        """An unusable URI fails at construction with a one-line ConfigError."""
        with pytest.raises(ConfigError, match="prediction log"):
            PredictionLog("nosuchdb://x/y")


@pytest.mark.integration
@pytest.mark.skipif(
    not os.environ.get("MLFLOW_PLUGIN_TEST_POSTGRES"), reason="needs MLFLOW_PLUGIN_TEST_POSTGRES"
)
def test_postgresql_table():
    """The same table and rows on PostgreSQL, from a plain postgresql:// URI."""
    from mlflow_plugin.testing import postgres_database

    with postgres_database(os.environ["MLFLOW_PLUGIN_TEST_POSTGRES"]) as uri:
        plain = "postgresql://" + uri.split("://", 1)[1]
        log = PredictionLog(plain, key_column="id")
        log.log(record(rows=2, request_id="x" * 100))
        log.close()
        rows = table_rows(uri)
        assert [(r["row_index"], r["entity_key"], len(r["request_id"])) for r in rows] == [
            (0, "c0-0", 64),
            (1, "c0-1", 64),
        ]
        assert rows[0]["ts"].tzinfo is not None and rows[0]["fallback"] is False
