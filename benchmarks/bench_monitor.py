"""``monitor`` over many logged predictions and their outcomes, against the plain pandas/SQL join
and metric computation of the same rows, in the same run. Not a test.

Builds a SQLite prediction log (the table ``mlflow-plugin serve`` writes) with ``--rows``
predictions of one version, each with an entity key and the model's JSON output, and ingests
one survival outcome per entity with ``OutcomeStore.ingest``. Then, alternating round by round:

- **ours**: :func:`mlflow_plugin.monitoring.evaluate_windows` over one window holding every row
  (the SQL join with JSON extraction in the database, maturation, the window's traffic counts
  and the IPCW Brier, C-index, precision and recall through :mod:`mlflow_plugin.metrics`);
- **plain**: what one would write by hand: ``pandas.read_sql`` of the join, ``json.loads`` of
  each output, the same de-duplication, and the same metrics from lifelines, scikit-survival and
  scikit-learn called directly.

Prints the median of each, the ratio (target <= 1.5x), checks both give the same numbers, and
the memory peak of one ``monitor`` pass (tracemalloc).

    .venv/bin/python benchmarks/bench_monitor.py [--rows 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from mlflow_plugin.monitoring import OutcomeStore, evaluate_windows
from mlflow_plugin.serving import PredictionLog
from mlflow_plugin.types import VersionInfo

HORIZON = 52.0
THRESHOLD = 0.3
ORIGIN = datetime(2026, 1, 1, tzinfo=UTC)


def build(path: Path, n: int) -> OutcomeStore:
    uri = f"sqlite:///{path}"
    PredictionLog(uri, start=False).close()  # serving's table
    rng = np.random.default_rng(0)
    risk = rng.uniform(0.2, 2.0, n)
    survival = np.exp(-0.01 * risk * HORIZON)
    ts = ORIGIN + pd.to_timedelta(rng.uniform(0, 6 * 86400, n), unit="s")
    stamps = ts.strftime("%Y-%m-%d %H:%M:%S.%f")
    outputs = [f'{{"p_gt_52":{s:.6f},"risk":{r:.6f}}}' for s, r in zip(survival, risk, strict=True)]
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO predictions (request_id, row_index, ts, model_name, model_version, route,"
        " fallback, latency_ms, output, guardrail_flags, entity_key) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (
            (
                f"r{i // 100}",
                i % 100,
                stamps[i],
                "bench",
                "1",
                "champion",
                0,
                1.0,
                outputs[i],
                "",
                f"e{i}",
            )
            for i in range(n)
        ),
    )
    conn.commit()
    conn.close()
    durations = np.round(rng.exponential(60 / risk), 2) + 0.01
    censor = rng.uniform(20, 120, n)
    frame = pd.DataFrame(
        {
            "id": [f"e{i}" for i in range(n)],
            "T": np.minimum(durations, censor),
            "E": (durations <= censor).astype(int),
        }
    )
    store = OutcomeStore(uri)
    t0 = time.perf_counter()
    result = store.ingest("bench", frame, entity_col="id", duration_col="T", event_col="E")
    print(f"ingest of {n:,} outcomes: {time.perf_counter() - t0:.1f} s ({result})")
    return store


def ours(store: OutcomeStore) -> dict[str, float | None]:
    version = VersionInfo("bench", "1", tags={"mlflow_plugin.horizon": str(HORIZON)})
    (window,) = evaluate_windows(
        store,
        version,
        origin=ORIGIN,
        now=ORIGIN + timedelta(days=6, hours=1),
        length=timedelta(days=7),
        decision_threshold=THRESHOLD,
    )
    return window.metrics


def plain(path: Path) -> dict[str, float | None]:
    from lifelines.utils import concordance_index
    from sklearn.metrics import precision_score, recall_score
    from sksurv.metrics import brier_score
    from sksurv.util import Surv

    conn = sqlite3.connect(path)
    frame = pd.read_sql(
        "SELECT p.ts, p.entity_key, p.output, o.duration, o.event FROM predictions p JOIN outcomes o"
        " ON o.model_name = p.model_name AND o.entity_key = p.entity_key"
        " WHERE p.model_name = 'bench' AND p.model_version = '1' AND p.error IS NULL",
        conn,
    )
    conn.close()
    frame = frame.sort_values("ts", kind="stable").drop_duplicates("entity_key")
    parsed = [json.loads(text) for text in frame["output"]]
    survival = np.array([p["p_gt_52"] for p in parsed])
    risk = np.array([p["risk"] for p in parsed])
    d = frame["duration"].to_numpy(float)
    e = frame["event"].to_numpy().astype(bool)
    y = Surv.from_arrays(e, d)
    brier = float(brier_score(y, y, survival, HORIZON)[1][0])
    c_index = float(concordance_index(d, -risk, e))
    label = e & (d <= HORIZON)
    matured = label | (d >= HORIZON)
    decided = (1 - survival[matured] >= THRESHOLD).astype(int)
    return {
        "brier": brier,
        "c_index": c_index,
        "precision": float(precision_score(label[matured].astype(int), decided)),
        "recall": float(recall_score(label[matured].astype(int), decided)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictions.db"
        t0 = time.perf_counter()
        store = build(path, args.rows)
        print(f"built {args.rows:,} predictions + outcomes in {time.perf_counter() - t0:.1f} s")
        times: dict[str, list[float]] = {"ours": [], "plain": []}
        results = {}
        for r in range(args.rounds):
            order = ("ours", "plain") if r % 2 == 0 else ("plain", "ours")
            for name in order:
                t = time.perf_counter()
                results[name] = ours(store) if name == "ours" else plain(path)
                times[name].append(time.perf_counter() - t)
        for metric in ("brier", "c_index", "precision", "recall"):
            a, b = results["ours"][metric], results["plain"][metric]
            assert a is not None and abs(a - b) < 1e-9, (metric, a, b)
        mine, base = statistics.median(times["ours"]), statistics.median(times["plain"])
        print(
            f"metrics (identical both ways): {json.dumps({k: round(v, 6) for k, v in results['ours'].items() if v is not None})}"
        )
        print(
            f"monitor, one window of {args.rows:,} rows: ours {mine:.2f} s, plain pandas/SQL {base:.2f} s, "
            f"ratio {mine / base:.2f}x (target <= 1.5x), medians of {args.rounds}"
        )
        tracemalloc.start()
        ours(store)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(
            f"memory peak of one monitor pass (tracemalloc): {peak / 2**20:.0f} MiB "
            f"({peak / args.rows:.0f} bytes per prediction)"
        )
        store.close()


if __name__ == "__main__":
    main()
