"""``mlflow run . -e main`` against the naive chain of four ``mlflow run`` calls.

Starts a local ``mlflow server`` (SQLite, 2 workers) and measures, interleaved in one run (the
order alternates each round), the wall time of

- ``mlflow run . -e main --env-manager local`` (train -> validate -> backtest -> promote as
  nested runs in one process), and
- ``mlflow run . -e train``, ``-e validate``, ``-e backtest``, ``-e promote``, one after the
  other (each pays the launcher, an interpreter, the imports, the data and a registry client),

both on rossi and the same server, each round on fresh model names (so both promote a first
champion). Prints the ratio of medians (target <= 0.5) and where the time of ``main`` goes: the
``mlflow run`` launcher and interpreter start, imports, training, gates, registry calls, ... (the
``timings:`` line that ``main`` prints). Not a test.

    .venv/bin/python benchmarks/bench_pipeline.py [--rounds 3] [--tracking-uri URI]
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

from mlflow_plugin.testing import MlflowServer

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


def mlflow_run(uri: str, entry: str, **params: object) -> tuple[float, str]:
    """Run one entry point; returns (wall seconds, stdout)."""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_EXPERIMENT_NAME": "bench-pipeline",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("MLFLOW_EXPERIMENT_ID", None)
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
    return wall, json.loads(line.removeprefix("timings: "))


def run_chain(uri: str) -> tuple[float, dict[str, float]]:
    model = f"bench-chain-{uuid.uuid4().hex[:6]}"
    walls = {step: mlflow_run(uri, step, model_name=model)[0] for step in CHAIN}
    return sum(walls.values()), walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tracking-uri", default=None, help="use this server instead of a new one")
    args = parser.parse_args()

    server = None if args.tracking_uri else MlflowServer(workers=2).start()
    uri = args.tracking_uri or server.uri  # type: ignore[union-attr]
    try:
        mlflow_run(uri, "train", model_name="bench-warmup")  # first-use costs (DB, caches)
        mains: list[float] = []
        chains: list[float] = []
        breakdowns: list[dict[str, float]] = []
        steps: dict[str, list[float]] = {s: [] for s in CHAIN}
        print(
            f"bench_pipeline: mlflow run -e main vs {'|'.join(CHAIN)} (4 x mlflow run), "
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
        f"\nratio main/chain = {ratio:.2f}  (target <= 0.5: {'met' if ratio <= 0.5 else 'NOT met'})"
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
