"""Rollouts in serve: two ``mlflow-plugin serve`` replicas against the real server.

The replicas are started once for the module (per backend) and every case writes the rollout
state itself, as the rollout engine does (aliases ``canary`` / ``preview``, the tags of
``RolloutState.to_tags()``), waits until both replicas show it in ``/health``, and clears it
after. The champion is ``r1`` (risk 0.1); the rollout's version is ``echo`` (risk = the row's
``age``, raises on ``age == -1``), so an answer says who made it. No test asserts a timing.
"""

from __future__ import annotations

import functools
import http.client
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from serving_helpers import features, register, shared_model

from mlflow_plugin.rollouts._state import ROLLOUT_TAGS, RolloutState, routes_to_canary
from mlflow_plugin.testing import MlflowServer, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def wait_until(predicate, timeout: float = 60.0, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


@functools.cache
def body(age: float) -> str:
    row = features().head(1).assign(age=age)
    return json.dumps({"dataframe_split": row.to_dict(orient="split")})


@dataclass
class Answer:
    status: int
    role: str | None
    version: str | None
    risk: float | None


@dataclass
class Replicas:
    """Two serve processes on one model, and the rollout writer the tests use."""

    uri: str
    name: str
    versions: dict[str, str]
    ports: list[int] = field(default_factory=list)
    dbs: list[Path] = field(default_factory=list)
    procs: list[subprocess.Popen] = field(default_factory=list)
    _local: threading.local = field(default_factory=threading.local)

    @property
    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(self.uri, registry_uri=self.uri)

    def start_rollout(self, alias: str, version: str, **fields: Any) -> RolloutState:
        fields.setdefault("strategy", "canary" if alias == "canary" else "blue_green")
        state = RolloutState(rollout_id=f"r-{uuid.uuid4().hex[:8]}", version=version, **fields)
        self.write(state)
        if alias:
            self.client.set_registered_model_alias(self.name, alias, version)
        return state

    def write(self, state: RolloutState) -> None:
        for key, value in state.to_tags().items():
            self.client.set_registered_model_tag(self.name, key, value)

    def clear(self) -> None:
        client = self.client
        aliases = client.get_registered_model(self.name).aliases
        for alias in ("canary", "preview"):
            if alias in aliases:
                client.delete_registered_model_alias(self.name, alias)
        for key in ROLLOUT_TAGS.values():
            client.delete_registered_model_tag(self.name, key)
        assert self.wait_health(lambda h: h["rollout"] is None)

    def health(self, port: int) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
            return json.loads(r.read())

    def wait_health(self, predicate, timeout: float = 60.0) -> bool:
        """Until ``predicate(health)`` holds on both replicas."""
        return all(
            wait_until(lambda p=port: predicate(self.health(p)), timeout) for port in self.ports
        )

    def metrics(self, port: int) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            return r.read().decode()

    def post(self, port: int, age: float, key: str | None = None, rid: str | None = None) -> Answer:
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        if port not in conns:
            conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["X-Entity-Key"] = key
        if rid is not None:
            headers["X-Request-Id"] = rid
        try:
            conn = conns[port]
            conn.request("POST", "/invocations", body=body(age), headers=headers)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException):
            # The server closed an idle keep-alive connection: one new connection, one retry.
            conns[port].close()
            conn = conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", "/invocations", body=body(age), headers=headers)
            resp = conn.getresponse()
        raw = resp.read()
        risk = json.loads(raw)["predictions"][0]["risk"] if resp.status == 200 else None
        return Answer(
            resp.status, resp.getheader("x-model-role"), resp.getheader("x-model-version"), risk
        )

    def many(self, calls: list[tuple], threads: int = 6) -> list[Answer]:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(lambda c: self.post(*c), calls))

    def log_rows(self, request_ids: set[str], until: Any = None, timeout: float = 60.0) -> Any:
        """The rows of ``request_ids`` from both replicas' prediction logs, once all are there
        (and ``until(rows)`` holds)."""
        frames: list[pd.DataFrame] = []

        def read() -> bool:
            frames.clear()
            for db in self.dbs:
                engine = sa.create_engine(f"sqlite:///{db}")
                try:
                    frames.append(pd.read_sql("SELECT * FROM predictions ORDER BY id", engine))
                except Exception:  # noqa: BLE001 - not created yet
                    return False
                finally:
                    engine.dispose()
            frame = pd.concat(frames, ignore_index=True)
            frame = frame[frame.request_id.isin(request_ids)]
            return request_ids <= set(frame.request_id) and (until is None or until(frame))

        assert wait_until(read, timeout, step=0.2), "prediction rows never appeared"
        frame = pd.concat(frames, ignore_index=True)
        return frame[frame.request_id.isin(request_ids)]


@pytest.fixture(scope="module")
def replicas(
    mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    uri = mlflow_server.uri
    name = f"rollout-{uuid.uuid4().hex[:8]}"
    versions = {kind: register(uri, name, shared_model(uri, kind)) for kind in ("r1", "echo", "r2")}
    out = Replicas(uri, name, versions)
    out.client.set_registered_model_alias(name, "champion", versions["r1"])
    workdir = tmp_path_factory.mktemp("replicas")
    exe = Path(sys.executable).with_name("mlflow-plugin")
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_PLUGIN_ACTOR": "pytest"}
    logs = []
    for i in range(2):
        port, db = free_port(), workdir / f"replica-{i}.db"
        log = open(workdir / f"replica-{i}.log", "wb")  # noqa: SIM115 - closed at teardown
        logs.append(log)
        cmd = [str(exe), "serve", name, "--port", str(port), "--poll-interval", "0.5"]
        cmd += ["--prediction-log", f"sqlite:///{db}"]
        out.procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
        out.ports.append(port)
        out.dbs.append(db)

    def up(port: int, proc: subprocess.Popen) -> bool:
        assert proc.poll() is None, (workdir / "replica-0.log").read_text()[-2000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        for port, proc in zip(out.ports, out.procs, strict=True):
            assert wait_until(lambda p=port, q=proc: up(p, q), timeout=120, step=0.3)
        yield out
    finally:
        for proc in out.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in out.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()


@pytest.fixture()
def rollout(replicas: Replicas) -> Iterator[Replicas]:
    """The replicas, with any rollout cleared after the test."""
    yield replicas
    replicas.clear()


def canary_ready(version: str, weight: float, phase: str = "running"):
    def check(h: dict[str, Any]) -> bool:
        r = h["rollout"] or {}
        return (
            r.get("roles", {}).get("canary", {}).get("loaded") == version
            and r.get("weight") == weight
            and r.get("phase") == phase
        )

    return check


def test_canary_share_and_stickiness_across_replicas(rollout):
    """Each entity key gets the same role on both replicas, the one routes_to_canary names, and
    the share is within a binomial tolerance of the weight."""
    echo, champion = rollout.versions["echo"], rollout.versions["r1"]
    state = rollout.start_rollout("canary", echo, weight=30, steps=(30, 100))
    assert rollout.wait_health(canary_ready(echo, 30))
    keys = [f"entity-{i}-ü'\"\\" for i in range(800)]  # hostile characters survive the header
    keys = [k.encode("utf-8").decode("latin-1") for k in keys]  # as HTTP carries it
    calls = [(port, 20 + i % 30, key) for i, key in enumerate(keys) for port in rollout.ports]
    answers = rollout.many(calls)
    assert {a.status for a in answers} == {200}
    by_key: dict[str, set[str | None]] = {}
    for (_, age, key), a in zip(calls, answers, strict=True):
        by_key.setdefault(key, set()).add(a.role)
        expected = "canary" if routes_to_canary(key, state) else "champion"
        assert a.role == expected, key
        assert (a.version, a.risk) == ((echo, age) if a.role == "canary" else (champion, 0.1))
    assert all(len(roles) == 1 for roles in by_key.values())  # sticky across the replicas
    share = sum(roles == {"canary"} for roles in by_key.values()) / len(keys)
    assert abs(share - 0.30) <= 4 * math.sqrt(0.3 * 0.7 / len(keys)), share
    metrics = rollout.metrics(rollout.ports[0])
    assert (
        f'mlflow_plugin_serving_rollout_weight{{phase="running",strategy="canary",version="{echo}"}} 30.0'
        in metrics
    )
    assert f'mlflow_plugin_serving_model_loaded{{role="canary",version="{echo}"}} 1.0' in metrics


def test_failing_canary_fails_no_client_request(rollout):
    """The canary raises on some rows: every client gets 200 (the champion answers those), and
    the log has the canary's failed attempt, then the champion's fallback row."""
    echo, champion = rollout.versions["echo"], rollout.versions["r1"]
    rollout.start_rollout("canary", echo, weight=100, steps=(100,))
    assert rollout.wait_health(canary_ready(echo, 100))
    run = uuid.uuid4().hex[:6]
    calls = [
        (rollout.ports[i % 2], -1 if i % 3 == 0 else 30 + i, f"k{i}", f"{run}-{i}")
        for i in range(60)
    ]
    answers = rollout.many(calls)
    assert {a.status for a in answers} == {200}
    for (_, age, _, _), a in zip(calls, answers, strict=True):
        if age == -1:
            assert (a.role, a.version, a.risk) == ("champion", champion, 0.1)
        else:
            assert (a.role, a.version, a.risk) == ("canary", echo, age)
    frame = rollout.log_rows({c[3] for c in calls})
    for _, age, _, rid in calls:
        rows = frame[frame.request_id == rid]
        got = rows[["route", "model_version", "fallback"]].values.tolist()
        if age == -1:
            assert got == [["canary", echo, False], ["champion", champion, True]], rid
            assert "raised in predict" in rows.iloc[0]["error"] and rows.iloc[1]["error"] is None
        else:
            assert got == [["canary", echo, False]] and rows.iloc[0]["error"] is None
    failures = sum(
        float(line.rsplit(" ", 1)[1])
        for port in rollout.ports
        for line in rollout.metrics(port).splitlines()
        if line.startswith('mlflow_plugin_serving_canary_failures_total{cause="predict"}')
    )
    assert failures >= 20
    assert {rollout.health(p)["status"] for p in rollout.ports} == {"ok"}


def test_blue_green_mirror_never_changes_an_answer(rollout):
    """preview scores a mirror of each request off the path: every client gets the champion's
    answer, and the preview's rows (its errors too) are in the prediction log."""
    echo, champion = rollout.versions["echo"], rollout.versions["r1"]
    rollout.start_rollout("preview", echo)
    assert rollout.wait_health(
        lambda h: ((h["rollout"] or {}).get("roles", {}).get("preview") or {}).get("loaded") == echo
    )
    run = uuid.uuid4().hex[:6]
    calls = [
        (rollout.ports[i % 2], -1 if i % 10 == 0 else 20 + i % 40, f"k{i}", f"{run}-{i}")
        for i in range(100)
    ]
    answers = rollout.many(calls)
    assert {(a.status, a.role, a.version, a.risk) for a in answers} == {
        (200, "champion", champion, 0.1)
    }
    # The mirror logs a little after the client's row: wait for the preview's rows too.
    frame = rollout.log_rows({c[3] for c in calls}, lambda f: (f.route == "preview").sum() == 100)
    preview = frame[frame.route == "preview"]
    for _, age, _, rid in calls:
        row = preview[preview.request_id == rid].iloc[0]
        assert row["model_version"] == echo
        if age == -1:
            assert "raised in predict" in row["error"]
        else:
            assert json.loads(row["output"])["risk"] == age
    stats = [rollout.health(p)["rollout"]["mirror"] for p in rollout.ports]
    assert sum(s["disagree"] for s in stats) == 90 and sum(s["errors"] for s in stats) == 10
    assert sum(s["dropped"] for s in stats) == 0


def test_pause_keeps_the_share_and_abort_stops_it_on_both_replicas(rollout):
    echo, champion = rollout.versions["echo"], rollout.versions["r1"]
    state = rollout.start_rollout("canary", echo, weight=100, steps=(100,))
    assert rollout.wait_health(canary_ready(echo, 100))
    rollout.write(RolloutState(**{**state.__dict__, "phase": "paused"}))
    assert rollout.wait_health(canary_ready(echo, 100, "paused"))
    answers = rollout.many([(port, 30, f"p{i}") for i in range(20) for port in rollout.ports])
    assert {(a.role, a.version) for a in answers} == {("canary", echo)}
    # Abort: the alias goes (the tags too); every replica stops sending traffic within a poll.
    rollout.client.delete_registered_model_alias(rollout.name, "canary")
    for port in rollout.ports:
        assert wait_until(lambda p=port: rollout.post(p, 30, "p0").role == "champion", 30)
    answers = rollout.many([(port, 30, f"p{i}") for i in range(20) for port in rollout.ports])
    assert {(a.status, a.role, a.version) for a in answers} == {(200, "champion", champion)}


def test_keep_previous_loads_the_previous_version(rollout):
    """After a blue-green switch the replaced champion stays loaded until keep_previous_until."""
    r2 = rollout.versions["r2"]
    state = rollout.start_rollout(
        "",
        rollout.versions["r1"],
        phase="watching",
        previous=r2,
        keep_previous_until=time.time() + 3600,
    )
    assert rollout.wait_health(
        lambda h: ((h["rollout"] or {}).get("roles", {}).get("previous") or {}).get("loaded") == r2
    )
    assert f'mlflow_plugin_serving_model_loaded{{role="previous",version="{r2}"}} 1.0' in (
        rollout.metrics(rollout.ports[1])
    )
    assert {rollout.post(p, 30).role for p in rollout.ports} == {"champion"}
    rollout.write(RolloutState(**{**state.__dict__, "keep_previous_until": time.time() - 1}))
    assert rollout.wait_health(lambda h: "previous" not in (h["rollout"] or {}).get("roles", {}))
