"""Serving overhead, measured against baselines interleaved in one run. Not a test.

Starts a local ``mlflow server`` (SQLite), logs two pyfunc models and registers them:

- ``coxph``: a lifelines Cox model fitted on Rossi, returning ``risk`` plus four probability
  buckets (the shape the pipeline produces);
- ``constant``: returns constants - the cheapest possible model, so the *worst case* for the
  relative overhead of our wrapper.

Then measures:

1. ``ChampionModel.predict`` against calling the same loaded pyfunc directly, on a 1,000-row batch
   and on single rows, alternating call by call (ratio of medians; target <= 1.05 for the batch).
   Guardrails and input guardrails on, artifact verification on (the versions carry a recorded
   ``mlflow_plugin.sha256``; digests are checked at load, so the load time is shown with and
   without it), and with / without the prediction log.
2. The prediction log's enqueue cost (``PredictionLog.log``), p50/p99 (target p99 < 0.1 ms), with
   the writer running, and on a full queue (the drop path).
3. HTTP: ``mlflow-plugin serve`` against ``mlflow models serve --env-manager local`` on the same
   model version and the same closed-loop load (32 keep-alive loopback clients by default,
   single-row ``dataframe_split``), rounds rotating between them: ratio of throughputs, p50/p99.
   Ours runs with its defaults (adaptive batching, prediction log, verification) and again with
   batching off (``--max-batch-wait-ms 0``) and with the prediction log off. Target: throughput
   >= 3x, p99 no worse.
4. p99 latency of requests sent while the server swaps champions (alias flipped, new version
   loading in the background) against the p99 of the steady state around them.
5. Rollouts: throughput and p99 with a canary at 50 % and with blue-green mirroring on, against
   steady state, rounds rotating between the three servers (targets: canary p99 <= 1.1x steady;
   mirroring costs at most one extra predict per request, off the client's path - printed as
   preview predicts per request).

    .venv/bin/python benchmarks/bench_serving.py [--rounds 3] [--seconds 5] [--clients 32]
        [--parts 1,2,3,4,5]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import pickle
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from mlflow_plugin.integrity._manifest import record_digest
from mlflow_plugin.registry._adapter import Registry
from mlflow_plugin.serving import ChampionModel, PredictionLog, PredictionRecord
from mlflow_plugin.testing import MlflowServer, free_port

BIN = Path(sys.executable).parent
MODEL_CODE = """
import pickle

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

HORIZONS = [13.0, 26.0, 52.0]


class Model(PythonModel):
    def load_context(self, context):
        self.kind = (context.model_config or {}).get("kind", "coxph")
        if self.kind == "coxph":
            with open(context.artifacts["cph"], "rb") as f:
                self.cph = pickle.load(f)

    def predict(self, context, model_input, params=None):
        n = len(model_input)
        if self.kind == "constant":
            return pd.DataFrame({"risk": np.full(n, 0.5), "p_event": 0.3, "p_none": 0.7})
        risk = self.cph.predict_partial_hazard(model_input).to_numpy()
        s = self.cph.predict_survival_function(model_input, times=HORIZONS).to_numpy().T
        return pd.DataFrame({
            "risk": risk, "p_0_13": 1 - s[:, 0], "p_13_26": s[:, 0] - s[:, 1],
            "p_26_52": s[:, 1] - s[:, 2], "p_52_plus": s[:, 2],
        })


mlflow.models.set_model(Model())
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def rossi() -> pd.DataFrame:
    from lifelines.datasets import load_rossi

    return load_rossi()


def log_models(uri: str, workdir: Path) -> dict[str, str]:
    import mlflow
    from lifelines import CoxPHFitter

    data = rossi()
    cph = CoxPHFitter(penalizer=0.01).fit(data, duration_col="week", event_col="arrest")
    pkl = workdir / "cph.pkl"
    pkl.write_bytes(pickle.dumps(cph))
    code = workdir / "bench_model.py"
    code.write_text(textwrap.dedent(MODEL_CODE))
    features = data.drop(columns=["week", "arrest"]).astype(float)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("bench-serving")
    out = {}
    for kind in ("coxph", "constant"):
        with mlflow.start_run(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(code),
                artifacts={"cph": str(pkl)},
                model_config={"kind": kind},
                input_example=features.head(3),
                pip_requirements=[],
            )
        out[kind] = str(info.model_uri)
    return out


# -- 1. in-process overhead ----------------------------------------------------------------
def overhead(
    uri: str, model: str, batch: pd.DataFrame, calls: int, log_uri: str | None
) -> tuple[float, float, float, float]:
    """Medians over ``calls`` adjacent pairs: direct, ours, ours/direct per pair, ours-direct.

    Per-pair ratios: the two calls of a pair run within a millisecond of each other, so they
    share whatever else the machine is doing; medians of whole series do not.
    """
    log = PredictionLog(log_uri, max_queue=100_000) if log_uri else None
    champion = ChampionModel(model, tracking_uri=uri, prediction_log=log, watch=False)
    pyfunc = champion._fleet.loaded["champion"].model
    for _ in range(5):
        pyfunc.predict(batch)
        champion.predict(batch)
    direct, ours = [], []
    for i in range(calls):
        # Alternate the order too, so neither side always runs on a warm cache.
        for side in (0, 1) if i % 2 == 0 else (1, 0):
            t0 = time.perf_counter()
            if side == 0:
                pyfunc.predict(batch)
                direct.append(time.perf_counter() - t0)
            else:
                champion.predict(batch)
                ours.append(time.perf_counter() - t0)
    champion.close()
    ratios = [o / d for d, o in zip(direct, ours, strict=True)]
    extra = [o - d for d, o in zip(direct, ours, strict=True)]
    return (
        statistics.median(direct),
        statistics.median(ours),
        statistics.median(ratios),
        statistics.median(extra),
    )


# -- 2. enqueue cost -------------------------------------------------------------------------
def enqueue_cost(workdir: Path, batch: pd.DataFrame, n: int) -> dict[str, tuple[float, float, int]]:
    """p50/p99 of ``PredictionLog.log`` in microseconds, and how many entries were dropped.

    ``log`` queues references only, so its cost does not depend on the request's size; the
    writer-running case uses one-row requests so that the writer can keep up and finish.
    """

    def make(rows: pd.DataFrame) -> PredictionRecord:
        out = pd.DataFrame({"risk": np.zeros(len(rows))})
        return PredictionRecord("r", time.time(), "m", "1", "champion", False, 0.001, rows, out)

    results = {}
    cases = (
        ("writer running", make(batch.head(1)), n, True),
        ("queue full (drop)", make(batch), 1, False),
    )
    for label, record, max_queue, start in cases:
        log = PredictionLog(
            f"sqlite:///{workdir / f'enqueue-{max_queue}.db'}", max_queue=max_queue, start=start
        )
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            log.log(record)
            times.append(time.perf_counter() - t0)
        stats = log.stats()
        log.start()
        log.close(timeout=300)
        results[label] = (pct(times, 0.5) * 1e6, pct(times, 0.99) * 1e6, stats["dropped"])
    return results


# -- 3. and 4. HTTP --------------------------------------------------------------------------
class Server:
    def __init__(self, cmd: list[str], port: int, env: dict[str, str]) -> None:
        self.port = port
        # Output to a file: a pipe nobody reads fills up and blocks the server.
        self.log = Path(tempfile.mkstemp(prefix="bench-server-", suffix=".log")[1])
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"{cmd[0]} did not start")

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            print(f"    (pid {self.proc.pid} ignored SIGTERM for 60s: killed)")
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


def closed_loop(
    port: int, body: str, threads: int, seconds: float, keyed: bool = False
) -> list[tuple[float, float, str]]:
    """``threads`` keep-alive clients for ``seconds``: (sent, latency, version) per 200 answer;
    ``keyed``: each request carries its own ``X-Entity-Key``."""
    results: list[tuple[float, float, str]] = []
    errors = [0]
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client(me: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        headers = {"Content-Type": "application/json"}
        n = 0
        while time.monotonic() < end:
            t0 = time.monotonic()
            if keyed:
                n += 1
                headers["X-Entity-Key"] = f"{me}-{n}"
            conn.request("POST", "/invocations", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                mine.append((t0, time.monotonic() - t0, resp.getheader("X-Model-Version") or ""))
            else:
                errors[0] += 1
        conn.close()
        with lock:
            results.extend(mine)

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors[0]:
        print(f"    ({errors[0]} non-200 answers)")
    return results


# -- 5. rollouts ------------------------------------------------------------------------------
def rollouts(
    registry: Registry, source: str, env: dict[str, str], body: str, args: argparse.Namespace
) -> list[str]:
    """Steady state, a canary at 50 % and blue-green mirroring, one server each (three models
    with the same two coxph versions), rounds rotating between them; p99, throughput, and the
    mirror's extra ``predict`` calls per request."""
    from mlflow_plugin.rollouts._state import RolloutState

    print(
        f"5. rollouts, {args.clients} clients, single-row requests with their own X-Entity-Key, "
        f"{args.rounds} x {args.seconds:g}s rounds each"
    )
    setups = {"steady": "", "canary 50 %": "canary", "blue-green mirror": "preview"}
    ports: dict[str, int] = {}
    out: list[str] = []
    with contextlib.ExitStack() as stack:
        for i, (label, alias) in enumerate(setups.items()):
            name = f"bench-rollout-{i}"
            for _ in range(2):
                version = registry.register_version(name, source, None).version
                record_digest(registry, name, version)
            registry.set_alias(name, "champion", "1")
            if alias:
                strategy = "canary" if alias == "canary" else "blue_green"
                state = RolloutState(
                    "bench", strategy, "2", weight=50.0 if alias == "canary" else 0
                )
                for key, value in state.to_tags().items():
                    registry.set_model_tag(name, key, value)
                registry.set_alias(name, alias, "2")
            ports[label] = free_port()
            cmd = [str(BIN / "mlflow-plugin"), "serve", name, "--port", str(ports[label])]
            server_ = Server([*cmd, "--prediction-log", "none"], ports[label], env)
            stack.callback(server_.stop)
            closed_loop(ports[label], body, args.clients, 1.0, keyed=True)  # warm up
        got: dict[str, list[tuple[float, float, str]]] = {label: [] for label in setups}
        secs = dict.fromkeys(setups, 0.0)
        port = ports["blue-green mirror"]
        before = _drained(port)
        names = list(setups)
        for r in range(args.rounds):
            for label in names[r % len(names) :] + names[: r % len(names)]:
                t0 = time.monotonic()
                got[label].extend(
                    closed_loop(ports[label], body, args.clients, args.seconds, keyed=True)
                )
                secs[label] += time.monotonic() - t0
        after = _drained(port)
        steady_p99 = pct([x[1] for x in got["steady"]], 0.99)
        steady_rps = len(got["steady"]) / secs["steady"]
        for label in names:
            lat = [x[1] for x in got[label]]
            rps = len(lat) / secs[label]
            share = sum(v == "2" for *_, v in got[label]) / max(1, len(lat))
            out.append(
                f"   {label:18s}: {rps:7.1f} req/s ({rps / steady_rps:.2f}x steady), p50 "
                f"{pct(lat, 0.5) * 1e3:6.2f} ms, p99 {pct(lat, 0.99) * 1e3:6.2f} ms "
                f"({pct(lat, 0.99) / steady_p99:.2f}x steady), answered by v2: {share:.0%}"
            )
            print(out[-1])
        mirrored = len(got["blue-green mirror"])
        delta = {k: after[k] - before[k] for k in after if k != "queued"}
        out.append(
            f"   mirror: {delta['predicts'] / max(1, mirrored):.3f} preview predicts per request "
            f"off the client's path ({delta['submitted']} mirrored, {delta['dropped']} dropped "
            f"on a full queue, {delta['agree']} agree / {delta['disagree']} disagree)"
        )
        print(out[-1])
    return out


def _drained(port: int) -> dict:
    """The mirror's counters once everything queued is scored (or after a minute)."""
    deadline = time.monotonic() + 60
    while _health(port)["rollout"]["mirror"]["queued"] and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # the batch being scored when the queue emptied
    return dict(_health(port)["rollout"]["mirror"])


def _health(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
        return json.loads(r.read())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3, help="alternating HTTP rounds per server")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one HTTP round")
    parser.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients (part 3)")
    parser.add_argument("--threads", type=int, default=4, help="concurrent HTTP clients (part 4)")
    parser.add_argument("--calls", type=int, default=300, help="in-process calls per side")
    parser.add_argument("--swaps", type=int, default=6, help="champion swaps in part 4")
    parser.add_argument("--parts", default="1,2,3,4,5", help="which parts to run, e.g. 5")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    # A SIGTERM unwinds the `with` blocks, so no server outlives the benchmark.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ["MLFLOW_PLUGIN_ACTOR"] = "bench"
    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    summary: list[str] = []
    with MlflowServer(workers=2) as server:
        uri = server.uri
        sources = log_models(uri, workdir)
        registry = Registry(uri)
        for kind, source in sources.items():
            for _ in range(2):
                version = registry.register_version(f"bench-{kind}", source, None).version
                record_digest(registry, f"bench-{kind}", version)  # as the pipeline does
            registry.set_alias(f"bench-{kind}", "champion", "1")
        data = rossi().drop(columns=["week", "arrest"]).astype(float)
        batch = data.sample(1000, replace=True, random_state=0).reset_index(drop=True)
        single = data.head(1)
        # `mlflow models serve` execs `uvicorn`: it must be on PATH, as in an activated venv.
        path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": path}
        body = json.dumps({"dataframe_split": single.to_dict(orient="split")})

        if "1" in parts:
            print(
                "1. ChampionModel.predict / direct pyfunc.predict (medians over adjacent call pairs)"
            )
            for kind in ("coxph", "constant"):
                for label, rows, calls in (
                    ("1000 rows", batch, args.calls),
                    ("1 row", single, args.calls * 3),
                ):
                    for log_label, log_uri in (
                        ("no log", None),
                        ("with log", f"sqlite:///{workdir / f'ov-{kind}-{len(rows)}.db'}"),
                    ):
                        d, o, ratio, extra = overhead(uri, f"bench-{kind}", rows, calls, log_uri)
                        line = (
                            f"   {kind:8s} {label:9s} {log_label:8s}: direct {d * 1e3:7.3f} ms, "
                            f"ours {o * 1e3:7.3f} ms, ratio {ratio:.3f} (+{extra * 1e6:.0f} us)"
                        )
                        print(line)
                        summary.append(line)

            for verify in (False, True, False, True):
                t0 = time.perf_counter()
                ChampionModel("bench-coxph", tracking_uri=uri, watch=False, verify=verify).close()
                if verify:
                    line = f"   load of bench-coxph v1 with digest verification: {time.perf_counter() - t0:.3f} s"
                else:
                    line = f"   load of bench-coxph v1 without verification:    {time.perf_counter() - t0:.3f} s"
                print(line)
                summary.append(line)

        if "2" in parts:
            print("2. PredictionLog.log enqueue cost (1000-row request)")
            for label, (p50, p99, dropped) in enqueue_cost(workdir, batch, 20_000).items():
                line = f"   {label:18s}: p50 {p50:6.2f} us, p99 {p99:6.2f} us (dropped {dropped})"
                print(line)
                summary.append(line)

        if "3" in parts:
            print(
                f"3. HTTP, {args.clients} clients, single-row dataframe_split, {args.rounds} x {args.seconds:g}s rounds each"
            )
            plugin = [str(BIN / "mlflow-plugin"), "serve", "bench-coxph"]
            commands = {
                "mlflow-plugin serve": [
                    *plugin,
                    "--prediction-log",
                    f"sqlite:///{workdir / 'http.db'}",
                ],
                "  same, batching off": [
                    *plugin,
                    "--prediction-log",
                    f"sqlite:///{workdir / 'http2.db'}",
                    "--max-batch-wait-ms",
                    "0",
                ],
                "  same, log off": [*plugin, "--prediction-log", "none"],
                "mlflow models serve": [
                    str(BIN / "mlflow"),
                    "models",
                    "serve",
                    "-m",
                    "models:/bench-coxph/1",
                    "--env-manager",
                    "local",
                    "-h",
                    "127.0.0.1",
                ],
            }
            with contextlib.ExitStack() as stack:
                ports: dict[str, int] = {}
                for name, cmd in commands.items():
                    ports[name] = free_port()
                    flag = "-p" if "models" in cmd else "--port"
                    server_ = Server([*cmd, flag, str(ports[name])], ports[name], env)
                    stack.callback(server_.stop)
                    closed_loop(ports[name], body, args.clients, 1.0)  # warm up
                got: dict[str, list[tuple[float, float, str]]] = {name: [] for name in commands}
                secs = dict.fromkeys(commands, 0.0)
                names = list(commands)
                for r in range(args.rounds):
                    for name in (
                        names[r % len(names) :] + names[: r % len(names)]
                    ):  # rotate the order
                        t0 = time.monotonic()
                        got[name].extend(closed_loop(ports[name], body, args.clients, args.seconds))
                        secs[name] += time.monotonic() - t0
                rps = {name: len(got[name]) / secs[name] for name in got}
                for name in names:
                    lat = [x[1] for x in got[name]]
                    line = (
                        f"   {name:20s}: {rps[name]:7.1f} req/s, p50 {pct(lat, 0.5) * 1e3:6.2f} ms, "
                        f"p99 {pct(lat, 0.99) * 1e3:6.2f} ms"
                    )
                    print(line)
                    summary.append(line)
                base = rps["mlflow models serve"]
                p99 = {name: pct([x[1] for x in got[name]], 0.99) for name in names}
                line = (
                    f"   throughput ratio vs mlflow models serve: {rps['mlflow-plugin serve'] / base:.3f} "
                    f"(batching off: {rps['  same, batching off'] / base:.3f}, log off: "
                    f"{rps['  same, log off'] / base:.3f}); p99 ratio "
                    f"{p99['mlflow-plugin serve'] / p99['mlflow models serve']:.3f}"
                )
                print(line)
                summary.append(line)

        if "4" in parts:
            print(f"4. p99 latency while swapping ({args.swaps} swaps, poll 0.5s) vs steady state")
            swap_port = free_port()
            swapper = Server(
                [
                    str(BIN / "mlflow-plugin"),
                    "serve",
                    "bench-coxph",
                    "--port",
                    str(swap_port),
                    "--poll-interval",
                    "0.5",
                    "--prediction-log",
                    "none",
                ],
                swap_port,
                env,
            )
            try:
                windows: list[tuple[float, str]] = []
                results: list[tuple[float, float, str]] = []
                total = 4.0 * args.swaps + 3.0

                def flip() -> None:
                    time.sleep(2.0)
                    for i in range(args.swaps):
                        target = "2" if i % 2 == 0 else "1"
                        registry.set_alias("bench-coxph", "champion", target)
                        windows.append((time.monotonic(), target))
                        time.sleep(4.0)

                flipper = threading.Thread(target=flip)
                flipper.start()
                results = closed_loop(swap_port, body, args.threads, total)
                flipper.join()
                # A swap window runs from the alias change to the first answer by the new version.
                spans = []
                for start, target in windows:
                    first = min(
                        (s + lat for s, lat, v in results if v == target and s >= start),
                        default=None,
                    )
                    if first is not None:
                        spans.append((start, first))
                during = [lat for s, lat, _ in results if any(a <= s <= b for a, b in spans)]
                steady = [
                    lat
                    for s, lat, _ in results
                    if not any(a - 0.5 <= s <= b + 0.5 for a, b in spans)
                ]
                p99_swap, p99_steady = pct(during, 0.99), pct(steady, 0.99)
                took = statistics.median(b - a for a, b in spans) if spans else float("nan")
                line = (
                    f"   p99 during swap {p99_swap * 1e3:.2f} ms ({len(during)} requests), steady "
                    f"{p99_steady * 1e3:.2f} ms ({len(steady)}), ratio {p99_swap / p99_steady:.2f}; "
                    f"alias change -> new version answering: median {took:.2f}s"
                )
                print(line)
                summary.append(line)
            finally:
                swapper.stop()
        if "5" in parts:
            summary.extend(rollouts(registry, sources["coxph"], env, body, args))
    print("\nsummary")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
