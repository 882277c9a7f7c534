"""The REST API's deploy and rollback against the same controller calls in-process.

Starts a local ``mlflow server --enable-workspaces --app-name basic-auth`` (SQLite, 2 workers,
MLflow's credential cache on), one organisation and its user, and the API (uvicorn in a
thread). Interleaved in one run, each round: ``POST …/deploy`` then ``POST …/rollback`` through
the API, and ``Controller.promote`` then ``Controller.rollback`` in-process with the same
credentials and workspace (a scoped controller built per call, as the API does per request).
Prints p50/p95 of each and the ratio of medians (target <= 1.2). Not a test.

    .venv/bin/python benchmarks/bench_api.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "api"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from api_fixtures import ADMIN, MODEL, ORGS, _setup  # noqa: E402

from mlflow_plugin.api import create_app  # noqa: E402
from mlflow_plugin.controller import Controller  # noqa: E402
from mlflow_plugin.mlflow_io._workspace import Scope  # noqa: E402
from mlflow_plugin.settings import acting_as  # noqa: E402
from mlflow_plugin.testing import AppServer, MlflowServer  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    workspace, user = "org-a", ORGS["org-a"]
    server = MlflowServer(
        workers=2, extra_args=["--enable-workspaces"], admin_password=ADMIN[1], startup_timeout=600
    ).start()
    try:
        versions = _setup(server)[workspace]
        with AppServer(create_app(server.uri)) as api:
            base = f"{api.base_url}/api/model-deployment/organizations/{workspace}"
            session = requests.Session()
            session.auth = user

            def via_api(version: str) -> None:
                r = session.post(f"{base}/deploy", json={"model": MODEL, "version": version})
                assert r.status_code == 200, r.text
                r = session.post(f"{base}/rollback", json={"model": MODEL, "reason": "bench"})
                assert r.status_code == 200, r.text

            def in_process(version: str) -> None:
                scope = Scope(workspace, *user)
                with acting_as(user[0]):
                    Controller.from_uri(server.uri, scope=scope).promote(MODEL, version)
                    Controller.from_uri(server.uri, scope=scope).rollback(MODEL, reason="bench")

            with acting_as(user[0]):  # the champion every rollback returns to
                Controller.from_uri(server.uri, scope=Scope(workspace, *user)).promote(
                    MODEL, versions[0]
                )
            in_process(versions[1])  # warm-up: trust-on-first-use digest of versions[1]
            via_api(versions[1])
            timings: dict[str, list[float]] = {"api": [], "controller": []}
            for i in range(args.rounds):
                order = [("api", via_api), ("controller", in_process)]
                for name, fn in order if i % 2 == 0 else order[::-1]:
                    t0 = time.perf_counter()
                    fn(versions[1])
                    timings[name].append(time.perf_counter() - t0)
    finally:
        server.stop()
    for name, values in timings.items():
        print(
            f"{name:10s} deploy+rollback p50 {statistics.median(values):.3f} s  "
            f"p95 {pct(values, 0.95):.3f} s  (n={len(values)})"
        )
    ratio = statistics.median(timings["api"]) / statistics.median(timings["controller"])
    print(f"ratio api/controller (medians): {ratio:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
