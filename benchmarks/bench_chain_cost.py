"""What the lock's heartbeat, its ownership fence and the ledger's hash chain cost a rollback.

``bench_controller.py`` compares ``Controller.rollback()`` with the raw ``MlflowClient`` calls
that make the same writes. That baseline has no lock and reads nothing, so its ratio moves with
the server: with the keep-alive stall fixed (docs/operations-and-performance.md, "Performance:
what to set on your tracking server") every request got faster and the lock's and the
decision's own requests weigh more. This script measures the
question the lock and chain work asked directly: the same rollback with this checkout's
controller and with the controller of an earlier commit (default ``483a8df``, the last commit
before the heartbeat, the fence and the chain), each in a process of its own started from a git
worktree of its commit, against one ``mlflow server``, interleaved round by round with the raw
sequence (measured here) so that all three see the same load.

Prints p50/p95 of each, the ratios to raw, and ``now / before`` (the lock and chain work's cost:
target <= 1.10). Needs git and the repository's history. Not a test.

    .venv/bin/python benchmarks/bench_chain_cost.py [--rounds 20] [--before 483a8df]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from bench_controller import pct, raw_rollback  # noqa: E402

from mlflow_plugin.ledger._ledger import Ledger  # noqa: E402
from mlflow_plugin.registry._adapter import Registry  # noqa: E402
from mlflow_plugin.testing import MlflowServer  # noqa: E402

from helpers import make_versions  # noqa: E402

# Run in the child with the checkout under test first on sys.path: promote version 2, then time
# one rollback to version 1, per line read from stdin; print the milliseconds.
DRIVER = """
import json, os, sys, time
import mlflow_plugin
from mlflow_plugin.controller import Controller
from mlflow_plugin.ledger._ledger import Ledger
from mlflow_plugin.registry._adapter import Registry
uri, model, mirror = sys.argv[1], sys.argv[2], sys.argv[3] == "on"
ctl = Controller(Registry(uri), Ledger(uri), stage_mirror=mirror)
ctl.promote(model, "1")
print(json.dumps({"ready": mlflow_plugin.__file__}), flush=True)
for _ in sys.stdin:
    ctl.promote(model, "2", reason="bench")
    t0 = time.perf_counter()
    ctl.rollback(model, reason="bench", to_version="1")
    print(json.dumps({"ms": (time.perf_counter() - t0) * 1000}), flush=True)
"""


class Driver:
    """One controller of one checkout in a process of its own."""

    def __init__(self, tree: Path, uri: str, model: str, mirror: bool) -> None:
        env = {**os.environ, "PYTHONPATH": str(tree), "MLFLOW_PLUGIN_ACTOR": "bench"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", DRIVER, uri, model, "on" if mirror else "off"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=tree,
        )
        ready = self._read()
        where = Path(ready["ready"]).resolve()
        if tree.resolve() not in where.parents:
            raise SystemExit(f"the driver for {tree} imported mlflow_plugin from {where}")

    def _read(self) -> dict[str, object]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the driver exited with {self.proc.wait()}")
        return json.loads(line)

    def rollback_ms(self) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return float(self._read()["ms"])  # type: ignore[arg-type]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--before", default="483a8df", help="the commit to compare with")
    args = parser.parse_args()
    os.environ["MLFLOW_PLUGIN_ACTOR"] = "bench"
    with tempfile.TemporaryDirectory() as tmp, MlflowServer(workers=2) as server:
        before = Path(tmp) / "before"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), args.before],
            check=True,
            capture_output=True,
        )
        try:
            rows = measure(server.uri, before, args.rounds)
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)],
                check=False,
                capture_output=True,
            )
    print(f"{'':28s} {'p50 ms':>8s} {'p95 ms':>8s}")
    for name, values in rows.items():
        print(f"{name:28s} {pct(values, 0.5):8.1f} {pct(values, 0.95):8.1f}")
    for mode in ("on", "off"):
        now, old, raw = (
            statistics.median(rows[f"{who} mirror={mode}"]) for who in ("now", "before", "raw")
        )
        print(
            f"stage mirror {mode:3s}: now/raw {now / raw:.2f}, before/raw {old / raw:.2f}, "
            f"now/before {now / old:.2f} (target <= 1.10)"
        )


def measure(uri: str, before: Path, rounds: int) -> dict[str, list[float]]:
    registry = Registry(uri)
    client = registry.client
    exp_id = Ledger(uri).experiment_id()
    assert exp_id is not None
    rows: dict[str, list[float]] = {}
    for mirror in (True, False):
        mode = "on" if mirror else "off"
        names = {who: f"chain-cost-{who}-{mode}" for who in ("now", "before", "raw")}
        for name in names.values():
            make_versions(uri, name, 2)
        drivers = {
            "now": Driver(ROOT, uri, names["now"], mirror),
            "before": Driver(before, uri, names["before"], mirror),
        }
        for who in ("now", "before", "raw"):
            rows[f"{who} mirror={mode}"] = []
        raw_rollback(client, exp_id, names["raw"], "2", "1", mirror)
        try:
            for i in range(rounds + 2):
                # The order of the three turns with the round, so none always follows another.
                order = ["now", "before", "raw"]
                order = order[i % 3 :] + order[: i % 3]
                for who in order:
                    if who == "raw":
                        raw_rollback(client, exp_id, names["raw"], "1", "2", mirror)
                        t0 = time.perf_counter()
                        raw_rollback(client, exp_id, names["raw"], "2", "1", mirror)
                        ms = (time.perf_counter() - t0) * 1000
                    else:
                        ms = drivers[who].rollback_ms()
                    if i >= 2:  # warm-up
                        rows[f"{who} mirror={mode}"].append(ms)
        finally:
            for driver in drivers.values():
                driver.close()
    return rows


if __name__ == "__main__":
    main()
