"""Where a retrain's time goes: HTTP calls, and ``mlflow run -e main`` against four ``mlflow run``.

Starts a local ``mlflow server`` (SQLite, 2 workers, ``MlflowServer``'s default uvicorn options:
see docs/ARCHITECTURE.md, "HTTP round trips and the tracking server") and measures, in one run:

1. an in-process retrain (``run_pipeline`` on rossi, a champion already in place): its HTTP
   calls by endpoint (artifact transfers included; target <= 40), the time spent in them, and
   its wall time against its own training + gates time (target <= 1.5 s);
2. the HTTP calls of ``mlflow run -e main`` (counted in the entry point's process; the
   ``mlflow run`` launcher's own few calls are not included);
3. the CLI ``mlflow-plugin rollback`` end to end, process start included (target <= 1.2 s);
4. interleaved (the order alternates each round), the wall time of

- ``mlflow run . -e main --env-manager local`` (train -> validate -> backtest -> promote as
  nested runs in one process), and
- ``mlflow run . -e train``, ``-e validate``, ``-e backtest``, ``-e promote``, one after the
  other (each pays the launcher, an interpreter, the imports, the data and a registry client),

both on rossi and the same server, each round on fresh model names (so both promote a first
champion). Prints the ratio of medians (target <= 0.3) and where the time of ``main`` goes: the
``mlflow run`` launcher and interpreter start, imports, training, gates, registry calls, ... (the
``timings:`` line that ``main`` prints). Not a test.

    .venv/bin/python benchmarks/bench_pipeline.py [--rounds 3] [--tracking-uri URI]
        [--uvicorn-opts "--loop asyncio"]   # the server as MLflow starts it by default
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from mlflow_plugin.testing import MlflowServer, count_http_calls

ROOT = Path(__file__).resolve().parents[1]
CHAIN = ("train", "validate", "backtest", "promote")
LABELS = {
    "launcher": "mlflow run launcher, interpreter start and exit",
    "import": "imports (mlflow, lifelines, scikit-learn, ...)",
    "data": "data and policy: loading and checks",
    "training": "training (fits, incl. backtest folds)",
    "model logging": "model logging (pickle, signature, upload)",
    "model loading": "model loading from the registry",
    "gates": "gates (predictions, metrics, policy)",
    "registry": "registry calls (register, aliases, tags, promote)",
    "reports": "reports (plots)",
    "tracking": "tracking (runs, params, metrics, artifacts)",
}


def _counter_site() -> Path:
    """A directory with a ``sitecustomize`` that counts the process's HTTP calls and prints
    them at exit (``mlflow run``'s own process prints its line after the entry point's)."""
    site = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-pipeline-site-{os.getpid()}"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        "import atexit, json\n"
        "from mlflow_plugin.testing import count_http_calls\n"
        "_calls = count_http_calls().__enter__()\n"
        "atexit.register(lambda: print('http: ' + json.dumps("
        "{'calls': _calls.total, 'seconds': round(_calls.seconds, 3)}), flush=True))\n"
    )
    return site


def mlflow_run(uri: str, entry: str, **params: object) -> tuple[float, str]:
    """Run one entry point; returns (wall seconds, stdout)."""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_EXPERIMENT_NAME": "bench-pipeline",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    # The entry point's process counts its HTTP calls (an "http:" line at exit) through a
    # sitecustomize that installs the test kit's counter: production code has no such hook.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_counter_site()), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "mlflow", "run", ".", "-e", entry, "--env-manager", "local"]
    for key, value in params.items():
        cmd += ["-P", f"{key}={value}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"mlflow run -e {entry} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def run_main(uri: str) -> tuple[float, dict[str, float]]:
    wall, out = mlflow_run(uri, "main", model_name=f"bench-main-{uuid.uuid4().hex[:6]}")
    line = next(x for x in out.splitlines() if x.startswith("timings: "))
    timings = json.loads(line.removeprefix("timings: "))
    http = next((x for x in out.splitlines() if x.startswith("http: ")), None)
    if http is not None:
        counted = json.loads(http.removeprefix("http: "))
        MAIN_HTTP.append((counted["calls"], counted["seconds"]))
    return wall, timings


#: (calls, seconds) of each ``mlflow run -e main``, from its ``http:`` line.
MAIN_HTTP: list[tuple[int, float]] = []


def in_process_retrains(uri: str, rounds: int) -> None:
    """Section 1: retrains in this process on one model, counted at the HTTP layer."""
    import mlflow

    from mlflow_plugin.training._params import TrainParams
    from mlflow_plugin.training._pipeline import PipelineParams, run_pipeline

    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["MLFLOW_EXPERIMENT_NAME"] = "bench-pipeline"
    mlflow.set_tracking_uri(uri)
    model = f"bench-retrain-{uuid.uuid4().hex[:6]}"
    params = PipelineParams(TrainParams(model))
    run_pipeline(params, tracking_uri=uri)  # the first champion; imports and caches warm
    rows = []
    last = None
    for _ in range(rounds):
        with count_http_calls() as calls:
            start = time.perf_counter()
            result = run_pipeline(params, tracking_uri=uri)
            wall = time.perf_counter() - start
        own = result.timings.get("training", 0.0) + result.timings.get("gates", 0.0)
        rows.append((calls.total, calls.seconds, wall, own))
        last = calls
    calls_med = statistics.median(r[0] for r in rows)
    http_med = statistics.median(r[1] for r in rows)
    wall_med = statistics.median(r[2] for r in rows)
    own_med = statistics.median(r[3] for r in rows)
    print(f"\n1. in-process retrain (rossi, champion in place), median of {rounds}:")
    print(
        f"   HTTP calls per retrain   {calls_med:6.0f}   (target <= 40: "
        f"{'met' if calls_med <= 40 else 'NOT met'})"
    )
    print(
        f"   time in HTTP             {http_med:6.2f}s  ({100 * http_med / wall_med:.0f}% of wall)"
    )
    print(
        f"   retrain wall             {wall_med:6.2f}s  (target <= 1.5 s: "
        f"{'met' if wall_med <= 1.5 else 'NOT met'})"
    )
    print(f"   its training + gates     {own_med:6.2f}s  (wall / own = {wall_med / own_med:.1f}x)")
    assert last is not None
    print("   calls of the last retrain, by endpoint (calls, ms per call):")
    print("\n".join("     " + line for line in last.summary().splitlines()))
    CLI_MODEL.append(model)


CLI_MODEL: list[str] = []


def cli_rollbacks(uri: str, rounds: int) -> None:
    """Section 3: ``mlflow-plugin rollback`` end to end (process start included)."""
    model = CLI_MODEL[0]
    exe = str(Path(sys.executable).parent / "mlflow-plugin")
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_PLUGIN_ACTOR": "bench"}
    walls = []
    for i in range(rounds):
        target = "1" if i % 2 == 0 else "2"
        start = time.perf_counter()
        proc = subprocess.run(
            [exe, "rollback", model, "--to-version", target, "--reason", "bench", "--force"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        walls.append(time.perf_counter() - start)
        if proc.returncode != 0:
            sys.exit(f"mlflow-plugin rollback failed ({proc.returncode}): {proc.stderr[-2000:]}")
    p50 = statistics.median(walls)
    print(
        f"\n3. CLI rollback end to end, p50 of {rounds}: {p50:.2f}s  (target <= 1.2 s: "
        f"{'met' if p50 <= 1.2 else 'NOT met'})"
    )


def run_chain(uri: str) -> tuple[float, dict[str, float]]:
    model = f"bench-chain-{uuid.uuid4().hex[:6]}"
    walls = {step: mlflow_run(uri, step, model_name=model)[0] for step in CHAIN}
    return sum(walls.values()), walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tracking-uri", default=None, help="use this server instead of a new one")
    parser.add_argument("--uvicorn-opts", default=None, help="mlflow server --uvicorn-opts")
    args = parser.parse_args()

    server = (
        None
        if args.tracking_uri
        else MlflowServer(workers=2, uvicorn_opts=args.uvicorn_opts).start()
    )
    uri = args.tracking_uri or server.uri  # type: ignore[union-attr]
    try:
        in_process_retrains(uri, args.rounds)
        cli_rollbacks(uri, max(args.rounds, 5))
        mlflow_run(uri, "train", model_name="bench-warmup")  # first-use costs (DB, caches)
        mains: list[float] = []
        chains: list[float] = []
        breakdowns: list[dict[str, float]] = []
        steps: dict[str, list[float]] = {s: [] for s in CHAIN}
        print(
            f"\n4. mlflow run -e main vs {'|'.join(CHAIN)} (4 x mlflow run), "
            f"rossi, {uri}, {args.rounds} rounds"
        )
        print(f"{'round':<6} {'order':<12} {'main':>8} {'chain':>8}")
        for i in range(args.rounds):
            main_first = i % 2 == 0
            if main_first:
                m, timings = run_main(uri)
                c, walls = run_chain(uri)
            else:
                c, walls = run_chain(uri)
                m, timings = run_main(uri)
            mains.append(m)
            chains.append(c)
            timings["launcher"] = max(0.0, m - sum(timings.values()))
            breakdowns.append(timings)
            for step, wall in walls.items():
                steps[step].append(wall)
            order = "main first" if main_first else "chain first"
            print(f"{i + 1:<6} {order:<12} {m:>7.1f}s {c:>7.1f}s", flush=True)
    finally:
        if server is not None:
            server.stop()

    main_med, chain_med = statistics.median(mains), statistics.median(chains)
    ratio = main_med / chain_med
    print(f"{'median':<19} {main_med:>7.1f}s {chain_med:>7.1f}s")
    print(
        f"\nratio main/chain = {ratio:.2f}  (target <= 0.3: {'met' if ratio <= 0.3 else 'NOT met'})"
    )
    if MAIN_HTTP:
        calls = statistics.median(c for c, _ in MAIN_HTTP)
        secs = statistics.median(s for _, s in MAIN_HTTP)
        print(
            f"\n2. mlflow run -e main: {calls:.0f} HTTP calls in the entry point's process, "
            f"{secs:.2f}s in HTTP (median; the launcher's own calls not included)"
        )
    print(
        "chain, median per step: "
        + ", ".join(f"{s} {statistics.median(v):.1f}s" for s, v in steps.items())
    )
    print("\nwhere the time of main goes (median over rounds):")
    keys = sorted(
        {k for b in breakdowns for k in b},
        key=lambda k: -statistics.median(b.get(k, 0.0) for b in breakdowns),
    )
    for key in keys:
        value = statistics.median(b.get(key, 0.0) for b in breakdowns)
        print(f"  {LABELS.get(key, key):<52} {value:>6.2f}s  {100 * value / main_med:>4.0f}%")


if __name__ == "__main__":
    main()
