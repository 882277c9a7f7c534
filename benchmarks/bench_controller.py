"""Controller latency against the raw MlflowClient calls that make the same writes.

Starts a local ``mlflow server`` (SQLite, 2 workers) and measures, interleaved in one run:

- ``Controller.rollback()`` in-process, against the minimal raw ``MlflowClient`` sequence making
  the same writes: the champion and fallback aliases, the stage mirror's two transitions, and one
  audit run with its tags (create + finish);
- the same with the stage mirror off (raw: the two aliases + one audit run);
- the HTTP requests of one rollback each way, and how many of them are *sequential* round
  trips (the longest chain of requests each sent after the previous one was answered:
  ``count_http_calls().sequential``), which is what the latency follows;
- the CLI ``mlflow-plugin rollback`` end to end, process start included: with the REST client
  (no ``import mlflow``) and with ``MLFLOW_PLUGIN_REST_CLIENT=off`` (MlflowClient), interleaved;
- contention: 16 promoters at once (threads, each with its own controller, lock token and
  HTTP session) on one model: total wall time and p95 per promotion (lock wait included).

Prints the ratio of medians (targets: <= 1.5 with the mirror, <= 1.1 without it) and p50/p95
of each. Not a test.

    .venv/bin/python benchmarks/bench_controller.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from mlflow_plugin.controller import Controller  # noqa: E402
from mlflow_plugin.ledger._ledger import TAGS, Ledger  # noqa: E402
from mlflow_plugin.registry._adapter import Registry  # noqa: E402
from mlflow_plugin.testing import MlflowServer, count_http_calls  # noqa: E402

from helpers import make_versions  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def raw_rollback(client, exp_id: str, model: str, frm: str, to: str, mirror: bool) -> None:
    """What a careful user would type with MlflowClient to make the same writes."""
    client.set_registered_model_alias(model, "champion", to)
    client.set_registered_model_alias(model, "fallback", frm)
    if mirror:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            client.transition_model_version_stage(model, to, "Production")
            client.transition_model_version_stage(model, frm, "Archived")
    now = int(time.time() * 1000)
    run = client.create_run(
        exp_id,
        start_time=now,
        tags={
            TAGS["event"]: "rollback",
            TAGS["model"]: model,
            TAGS["version"]: to,
            TAGS["from_version"]: frm,
            TAGS["actor"]: "bench",
            TAGS["reason"]: "bench",
            TAGS["rollback"]: "true",
        },
    )
    client.set_terminated(run.info.run_id, "FINISHED", end_time=now)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--cli-rounds", type=int, default=5)
    parser.add_argument("--promoters", type=int, default=16)
    parser.add_argument("--cli-only", action="store_true", help="only the CLI rollback rounds")
    args = parser.parse_args()
    os.environ["MLFLOW_PLUGIN_ACTOR"] = "bench"
    with MlflowServer(workers=2) as server:
        registry = Registry(server.uri)
        ledger = Ledger(server.uri)
        client = registry.client
        exp_id = ledger.experiment_id()
        assert exp_id is not None
        results: dict[str, list[float]] = {}
        if args.cli_only:
            make_versions(server.uri, "bench-ours-True", 2)
            Controller(registry, ledger).promote("bench-ours-True", "1")
        trips: dict[str, tuple[int, int]] = {}  # (requests, sequential) of one rollback
        for mirror in () if args.cli_only else (True, False):
            ctl = Controller(registry, ledger, stage_mirror=mirror)
            ours_model, raw_model = f"bench-ours-{mirror}", f"bench-raw-{mirror}"
            make_versions(server.uri, ours_model, 2)
            make_versions(server.uri, raw_model, 2)
            ctl.promote(ours_model, "1")
            ctl.promote(raw_model, "1")
            ours, raw = [], []
            for i in range(args.rounds + 2):
                # Alternate promote/rollback so every round is a real rollback of one version.
                ctl.promote(ours_model, "2", reason="bench")
                t0 = time.perf_counter()
                ctl.rollback(ours_model, reason="bench", to_version="1")
                t1 = time.perf_counter()
                raw_rollback(client, exp_id, raw_model, "1", "2", mirror)
                t2 = time.perf_counter()
                raw_rollback(client, exp_id, raw_model, "2", "1", mirror)
                if i >= 2:  # warm-up
                    ours.append((t1 - t0) * 1000)
                    raw.append((t2 - t1) * 1000)
            results[f"ours mirror={'on' if mirror else 'off'}"] = ours
            results[f"raw  mirror={'on' if mirror else 'off'}"] = raw
            ctl.promote(ours_model, "2", reason="bench")
            with count_http_calls() as calls:
                ctl.rollback(ours_model, reason="bench", to_version="1")
            trips[f"ours mirror={'on' if mirror else 'off'}"] = (calls.total, calls.sequential)
            with count_http_calls() as calls:
                raw_rollback(client, exp_id, raw_model, "1", "2", mirror)
            trips[f"raw  mirror={'on' if mirror else 'off'}"] = (calls.total, calls.sequential)
            raw_rollback(client, exp_id, raw_model, "2", "1", mirror)

        exe = Path(sys.executable).with_name("mlflow-plugin")
        env = {**os.environ, "MLFLOW_TRACKING_URI": server.uri}
        # The REST client (default) and MlflowClient (MLFLOW_PLUGIN_REST_CLIENT=off),
        # interleaved so that both see the same machine load.
        cli: dict[str, list[float]] = {"rest": [], "mlflow": []}
        ctl = Controller(registry, ledger)
        for _ in range(args.cli_rounds):
            for kind in ("rest", "mlflow"):
                ctl.promote("bench-ours-True", "2", reason="bench")
                t0 = time.perf_counter()
                subprocess.run(
                    [
                        str(exe),
                        "rollback",
                        "bench-ours-True",
                        "--reason",
                        "bench",
                        "--to-version",
                        "1",
                    ],
                    env={**env, "MLFLOW_PLUGIN_REST_CLIENT": "on" if kind == "rest" else "off"},
                    check=True,
                    capture_output=True,
                )
                cli[kind].append(time.perf_counter() - t0)

        if args.cli_only:
            print_cli(cli)
            return
        contention, wall = contend(server.uri, args.promoters)
        lock_ms = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            with registry.lock("bench-ours-True"):
                pass
            lock_ms.append((time.perf_counter() - t0) * 1000)

    print(f"{'':24s} {'p50 ms':>8s} {'p95 ms':>8s} {'requests':>9s} {'sequential':>11s}")
    for name, values in results.items():
        total, sequential = trips[name]
        print(
            f"{name:24s} {pct(values, 0.5):8.1f} {pct(values, 0.95):8.1f} "
            f"{total:9d} {sequential:11d}"
        )
    for mode in ("on", "off"):
        ratio = statistics.median(results[f"ours mirror={mode}"]) / statistics.median(
            results[f"raw  mirror={mode}"]
        )
        print(
            f"rollback ratio ours/raw, stage mirror {mode:3s}: {ratio:.2f}  "
            f"(target <= {'1.5' if mode == 'on' else '1.1'}; sequential round trips "
            f"{trips[f'ours mirror={mode}'][1]} vs {trips[f'raw  mirror={mode}'][1]})"
        )
    print_cli(cli)
    print(
        f"lock acquire+release alone: p50 {pct(lock_ms, 0.5):.1f} ms, p95 {pct(lock_ms, 0.95):.1f} ms"
    )
    print(
        f"{args.promoters} promoters at once: total wall {wall:.2f} s, per promotion "
        f"p50 {pct(contention, 0.5):.2f} s, p95 {pct(contention, 0.95):.2f} s (lock wait included)"
    )


def print_cli(cli: dict[str, list[float]]) -> None:
    for kind, label in (("rest", "REST client"), ("mlflow", "MlflowClient (REST_CLIENT=off)")):
        print(
            f"CLI rollback end to end, {label}: p50 {pct(cli[kind], 0.5):.2f} s, "
            f"max {max(cli[kind]):.2f} s"
        )
    print(
        "CLI rollback p50 REST / MlflowClient: "
        f"{statistics.median(cli['rest']) / statistics.median(cli['mlflow']):.2f}  "
        "(target: REST p50 <= 1.2 s)"
    )


def contend(uri: str, n: int) -> tuple[list[float], float]:
    """``n`` threads promote ``n`` versions of one model at once; per-call and total seconds."""
    model = "bench-contention"
    make_versions(uri, model, n)
    controllers = [Controller.from_uri(uri) for _ in range(n)]
    times: list[float] = [0.0] * n
    barrier = threading.Barrier(n)

    def promote(i: int) -> None:
        barrier.wait()
        t0 = time.perf_counter()
        controllers[i].promote(model, str(i + 1), reason="bench")
        times[i] = time.perf_counter() - t0

    threads = [threading.Thread(target=promote, args=(i,)) for i in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    assert controllers[0].verify_ledger(model).ok
    return times, wall


if __name__ == "__main__":
    main()
