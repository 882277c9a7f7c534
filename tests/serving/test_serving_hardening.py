"""Serving a client cannot hurt: input problems are 400s, body limits, verified loads, batching.

Against the real ``mlflow server``; loads are bounded and no test asserts a timing.
"""

from __future__ import annotations

import json
import random
import socket
import threading

import pytest
from pickled_model import artifact_dir, booby_trap, log_pickled
from serving_helpers import PASSED, features, log_model, ranged_model, register, shared_model

from mlflow_plugin.controller import FALLBACK_ENABLED_TAG
from mlflow_plugin.integrity._manifest import record_digest
from mlflow_plugin.ledger._ledger import Ledger
from mlflow_plugin.registry._adapter import Registry
from mlflow_plugin.serving import ChampionModel, create_app
from mlflow_plugin.testing import AppServer
from mlflow_plugin.webhooks._receiver import create_app as webhook_app

pytestmark = [pytest.mark.integration]


def records(**changes) -> str:
    """Five Rossi rows as ``dataframe_records``; ``changes`` = {column: (row, value)}."""
    rows = features().head(5).to_dict(orient="records")
    for column, (row, value) in changes.items():
        rows[row][column] = value
    return json.dumps({"dataframe_records": rows})


def booleans(column: str, value: bool) -> str:
    """Five Rossi rows as ``dataframe_records`` with ``column`` a JSON boolean in every row."""
    rows = features().head(5).to_dict(orient="records")
    for row in rows:
        row[column] = value
    return json.dumps({"dataframe_records": rows})


def oversized(port: int, path: str, total: int, *, chunked: bool) -> bytes:
    """POST ``total`` bytes, with a Content-Length or chunked; the raw answer (status line first).

    Sending stops quietly when the server closes: it answered without reading the rest.
    """
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\n\r\n".encode()
        )
        chunk = b"x" * 65536
        sent = 0
        try:
            while sent < total:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk)
                sent += len(chunk)
        except OSError:
            pass
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except OSError:
            pass
        return answer
    finally:
        sock.close()


def set_champion(tracking_uri: str, model: str, champion: str, fallback: str | None = None) -> None:
    """Point the aliases directly, as a person in the registry UI would (no controller checks)."""
    registry = Registry(tracking_uri)
    registry.set_alias(model, "champion", champion)
    if fallback is not None:
        registry.set_alias(model, "fallback", fallback)
        registry.set_model_tag(model, FALLBACK_ENABLED_TAG, "true")


class TestInputProblems:
    @pytest.fixture()
    def server(self, served, model_name, tracking_uri):
        version = register(tracking_uri, model_name, ranged_model(tracking_uri))
        set_champion(tracking_uri, model_name, version)
        return served(event_interval=0.0)

    @pytest.mark.parametrize(
        ("body", "where", "what"),
        [
            (records(age=(2, None)), "column 'age', row 2", "null"),
            (records(prio=(4, float("nan"))), "column 'prio', row 4", "null"),
            (records(age=(1, 1e308)), "column 'age', row 1", "outside the training range"),
            (records(age=(3, float("inf"))), "column 'age', row 3", "not finite"),
            (records(fin=(0, "abc")), "column 'fin', row 0", "'abc' is not a number"),
            (records(age=(2, True)), "column 'age', row 2", "true is not a number"),
            (booleans("prio", False), "column 'prio', row 0", "false is not a number"),
        ],
        ids=["null", "nan", "1e308", "inf", "wrong-type", "boolean", "boolean-column"],
    )
    def test_bad_values_are_400_naming_column_and_row(
        self, server, tracking_uri, model_name, body, where, what
    ):
        """null / NaN / 1e308 / inf / text / true: 400 with one line naming column and row; no ledger event."""
        status, _, raw = server.request("POST", "/invocations", body)
        payload = json.loads(raw)
        assert status == 400, payload
        assert where in payload["message"] and what in payload["message"]
        assert "\n" not in payload["message"]
        assert server.request("POST", "/invocations", records())[0] == 200
        server.model.events.flush(30)
        assert Ledger(tracking_uri).events(model_name, "error") == []
        assert Ledger(tracking_uri).events(model_name, "recovery") == []
        _, _, metrics = server.request("GET", "/metrics")
        assert b'mlflow_plugin_serving_requests_total{code="400"} 1.0' in metrics

    def test_observe_flags_out_of_range(self, served, model_name, tracking_uri):
        """--input-guardrails observe: a far-out value is answered, flagged and counted."""
        from mlflow_plugin.serving._inputs import InputGuard

        version = register(tracking_uri, model_name, ranged_model(tracking_uri))
        set_champion(tracking_uri, model_name, version)
        server = served(input_guard=InputGuard("observe"))
        status, headers, _ = server.request("POST", "/invocations", records(age=(1, 1e6)))
        assert status == 200 and "out_of_range" in headers["x-guardrail-flags"]
        assert server.model.counts()[("input_guardrail", "out_of_range")] == 1
        # Nulls are refused in observe mode too: the model cannot score them.
        assert server.request("POST", "/invocations", records(age=(0, None)))[0] == 400


class TestModelFaults:
    def test_model_that_raises_falls_back_with_an_error_event(
        self, served, model_name, tracking_uri, one_row
    ):
        """A champion that raises: the fallback answers, an error event blames the champion."""
        bad = register(tracking_uri, model_name, shared_model(tracking_uri, "raise"))
        good = register(tracking_uri, model_name, shared_model(tracking_uri, "r1"))
        set_champion(tracking_uri, model_name, bad, fallback=good)
        server = served(event_interval=0.0)
        status, headers, _ = server.request("POST", "/invocations", one_row)
        assert status == 200 and headers["x-model-version"] == good
        assert headers["x-model-role"] == "fallback"
        server.model.events.flush(30)
        errors = Ledger(tracking_uri).events(model_name, "error")
        assert any(e.version == bad and "raised in predict" in e.message for e in errors)

    def test_tampered_pickle_is_never_unpickled(
        self, model_name, tracking_uri, mlflow_server, tmp_path, one_row
    ):
        """serve: the champion's changed pickle fails verification; the fallback answers; an error
        event names the file; the pickle's __reduce__ never ran."""
        registry = Registry(tracking_uri)
        good = register(tracking_uri, model_name, shared_model(tracking_uri, "r1"))
        uri = log_pickled(tracking_uri, 0.7)
        bad = registry.register_version(model_name, uri, None, dict(PASSED)).version
        record_digest(registry, model_name, bad)
        marker = tmp_path / "pwned"
        (artifact_dir(str(mlflow_server.workdir), uri) / "python_model.pkl").write_bytes(
            booby_trap(str(marker))
        )
        set_champion(tracking_uri, model_name, bad, fallback=good)
        model = ChampionModel(
            model_name, tracking_uri=tracking_uri, event_interval=0.0, watch=False
        )
        try:
            with AppServer(create_app(model, close_model=False)) as server:
                status, headers, _ = server.raw_request(
                    "POST", "/invocations", one_row, {"Content-Type": "application/json"}
                )
            assert status == 200 and headers["x-model-version"] == good
            assert "python_model.pkl" in model.status()["champion"]["error"]
            model.events.flush(30)
        finally:
            model.close()
        errors = Ledger(tracking_uri).events(model_name, "error")
        assert any(e.version == bad and "python_model.pkl" in e.message for e in errors)
        assert not marker.exists()


class TestLimits:
    @pytest.fixture()
    def server(self, served, versions, model_name, tracking_uri):
        (v1,) = versions("r1")
        set_champion(tracking_uri, model_name, v1)
        return served(app_kwargs={"max_body_mb": 0.25})

    def test_serve_body_limit_plain_and_chunked(self, server, one_row):
        """413 for a declared 1 MB body and for a chunked one, read no further; small chunked bodies work."""
        for chunked in (False, True):
            answer = oversized(server.port, "/invocations", 8 << 20, chunked=chunked)
            assert answer.startswith(b"HTTP/1.1 413"), (chunked, answer[:200])
        assert server.request("POST", "/invocations", one_row)[0] == 200

    def test_request_timeout_is_a_503_and_the_server_keeps_answering(
        self, served, model_name, tracking_uri, one_row
    ):
        """A predict slower than --request-timeout gets 503 with the reason; /ping still answers."""
        slow = register(tracking_uri, model_name, log_model(tracking_uri, {"sleep": 3.0}))
        set_champion(tracking_uri, model_name, slow)
        server = served(app_kwargs={"request_timeout": 0.5})
        status, _, raw = server.request("POST", "/invocations", one_row)
        assert status == 503, raw
        assert "request timed out after 0.5s" in json.loads(raw)["message"]
        assert server.request("GET", "/ping")[0] == 200

    def test_docs_are_off(self, server):
        """/docs and /openapi.json are not served unless asked for."""
        assert server.request("GET", "/docs")[0] == 404
        assert server.request("GET", "/openapi.json")[0] == 404

    def test_webhook_body_limit_plain_and_chunked(self):
        """The webhook receiver answers 413 while reading, chunked or not."""
        app = webhook_app("secret", lambda model: [])
        with AppServer(app) as server:
            for chunked in (False, True):
                answer = oversized(server.port, "/webhook", 8 << 20, chunked=chunked)
                assert answer.startswith(b"HTTP/1.1 413"), (chunked, answer[:200])
            status, _, _ = server.raw_request(
                "POST", "/webhook", b"{}", {"Content-Type": "application/json"}
            )
            assert status == 401  # small bodies still reach the signature check


class TestBatching:
    def test_each_request_gets_its_own_rows_under_32_clients(
        self, served, model_name, tracking_uri
    ):
        """32 concurrent clients, batched: every request gets exactly its rows, in order; a request
        with a null and one that makes predict raise fail alone."""
        version = register(tracking_uri, model_name, shared_model(tracking_uri, "echo"))
        set_champion(tracking_uri, model_name, version)
        server = served(
            app_kwargs={"max_batch_wait_ms": 5.0, "max_batch_rows": 64}, event_interval=0.0
        )
        base = features().head(3)
        failures: list[str] = []
        statuses: dict[str, int] = {"ok": 0, "null": 0, "poison": 0}
        lock = threading.Lock()

        def client(i: int) -> None:
            import http.client

            rnd = random.Random(i)
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            for j in range(12):
                n = rnd.randint(1, 3)
                rows = base.head(n).copy()
                ages = [1000 * i + 10 * j + k for k in range(n)]
                rows["age"] = ages
                kind = "ok"
                if i == 5 and j % 3 == 1:
                    kind = "null"
                elif i == 7 and j % 3 == 2:
                    kind = "poison"
                records = rows.to_dict(orient="records")
                if kind == "null":
                    records[0]["age"] = None
                if kind == "poison":
                    records[-1]["age"] = -1
                conn.request(
                    "POST",
                    "/invocations",
                    json.dumps({"dataframe_records": records}),
                    {"Content-Type": "application/json"},
                )
                resp = conn.getresponse()
                body = resp.read()
                with lock:
                    if kind == "ok":
                        got = (
                            [p["risk"] for p in json.loads(body)["predictions"]]
                            if resp.status == 200
                            else body
                        )
                        if resp.status != 200 or got != [float(a) for a in ages]:
                            failures.append(
                                f"client {i} request {j}: {resp.status} {got!r} != {ages}"
                            )
                        else:
                            statuses["ok"] += 1
                    elif kind == "null" and resp.status == 400:
                        statuses["null"] += 1
                    elif kind == "poison" and resp.status == 503:
                        statuses["poison"] += 1
                    else:
                        failures.append(f"client {i} {kind}: {resp.status} {body[:200]!r}")
            conn.close()

        threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert failures == []
        assert statuses == {"ok": 32 * 12 - 8, "null": 4, "poison": 4}
        counts = server.model.counts()
        assert counts.get(("batches",), 0) >= 1
        assert counts[("batched_requests",)] > counts[("batches",)]  # some batches held several


class TestFuzzing:
    """Property-based fuzzing from ``serve``'s OpenAPI schema, a real model behind it."""

    def test_no_server_error_on_any_request(self, tracking_uri, model_name):
        """Random requests, and Rossi rows holding any JSON value: 200 or a 4xx, never a 5xx."""
        from fuzzing import fuzz, load
        from hypothesis import strategies as st
        from schemathesis.python.asgi import shutdown_lifespans

        version = register(tracking_uri, model_name, ranged_model(tracking_uri))
        set_champion(tracking_uri, model_name, version)
        model = ChampionModel(model_name, tracking_uri=tracking_uri, poll_interval=0.5)
        app = create_app(model)
        schema = load(app, app.openapi())
        invocations = schema["/invocations"]["POST"]
        good = features().head(3).to_dict(orient="records")
        value = st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(),
            st.text(max_size=5),
            st.lists(st.integers(), max_size=2),
            st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        )
        rows = st.lists(
            st.fixed_dictionaries({}, optional={c: value for c in good[0]}), min_size=1, max_size=3
        )
        cases = st.one_of(
            rows.map(lambda r: {"dataframe_records": good[: len(r)] and r}),
            st.builds(
                lambda row, column, v: {
                    "dataframe_records": [{**good[row], column: v}, *good[row + 1 :]]
                },
                st.integers(0, 2),
                st.sampled_from(list(good[0])),
                value,
            ),
        ).map(lambda body: invocations.Case(body=body, media_type="application/json"))
        try:
            found = fuzz(
                "serve",
                schema,
                extra=[("POST /invocations (Rossi rows)", cases)],
                examples=40,
                unschematic=["GET /ping"],  # MLflow's "\n" under application/json
            )
        finally:
            shutdown_lifespans()
        print("\n" + found.report())
        assert found.failures == {}, found.failures
        assert found.statuses[200] and found.statuses[400]
