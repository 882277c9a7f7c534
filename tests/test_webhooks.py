"""The webhook receiver: signatures, the HTTP endpoint, coalescing, and MLflow delivering for real."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from mlflow_plugin import BadInput
from mlflow_plugin.registry._adapter import LOCK_PREFIX
from mlflow_plugin.testing import AppServer, MlflowServer
from mlflow_plugin.types import Event
from mlflow_plugin.webhooks._receiver import (
    DELIVERY_ID_HEADER,
    EVENTS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ReconcileQueue,
    SignatureError,
    create_app,
    parse_payload,
    register_webhook,
    sign,
    verify_signature,
    webhook_receiver,
)

from helpers import make_versions

SECRET = "webhook-secret-for-tests"
DEADLINE = 60.0  # seconds a poll may wait before the test fails (never a timing assertion)


def body_for(event: str = "model_version_alias.created", **data: Any) -> bytes:
    entity, _, action = event.rpartition(".")
    data.setdefault("name", "model-a")
    return json.dumps(
        {"entity": entity, "action": action, "timestamp": "2025-01-01T00:00:00Z", "data": data}
    ).encode()


def signed(
    body: bytes,
    *,
    secret: str = SECRET,
    timestamp: int | None = None,
    delivery_id: str | None = None,
) -> dict[str, str]:
    """Headers as MLflow sends them with ``body``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    did = delivery_id or str(uuid.uuid4())
    return {
        SIGNATURE_HEADER: sign(secret, did, ts, body),
        TIMESTAMP_HEADER: ts,
        DELIVERY_ID_HEADER: did,
        "Content-Type": "application/json",
    }


class Recorder:
    """A reconcile stand-in that records the models it was called with."""

    def __init__(self) -> None:
        self.models: list[str] = []
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()

    def __call__(self, model: str) -> list[Event]:
        self.started.set()
        self.release.wait(DEADLINE)
        self.models.append(model)
        if model == "broken":
            raise BadInput("registered model 'broken' does not exist")
        return [Event("deployment", model, version="2", actor="registry-ui")]


class LiveReceiver(AppServer):
    """The receiver app on uvicorn in a thread; ``url`` is its webhook endpoint."""

    def __init__(self, app: Any) -> None:
        super().__init__(app, startup_timeout=DEADLINE)
        self.url = f"{self.base_url}/webhook"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        status, _, raw = self.raw_request(method, path, body, headers, timeout=DEADLINE)
        return status, json.loads(raw or b"null")

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        return self.request("POST", "/webhook", body, headers)

    @property
    def queue(self) -> ReconcileQueue:
        return self.app.state.queue  # type: ignore[no-any-return]


@pytest.fixture()
def recorder() -> Recorder:
    """Records which models the receiver reconciled."""
    return Recorder()


@pytest.fixture()
def receiver(recorder: Recorder) -> Iterator[LiveReceiver]:
    """A running receiver whose reconcile is ``recorder``."""
    with LiveReceiver(create_app(SECRET, recorder)) as live:
        yield live


class TestSignature:
    def test_matches_what_mlflow_sends(self):
        """Our signing equals MLflow's own, header names included."""
        from mlflow.webhooks import constants
        from mlflow.webhooks.delivery import _generate_hmac_signature

        body = body_for()
        assert sign(SECRET, "d-1", "1700000000", body) == _generate_hmac_signature(
            SECRET, "d-1", "1700000000", body.decode()
        )
        assert (SIGNATURE_HEADER, TIMESTAMP_HEADER, DELIVERY_ID_HEADER) == (
            constants.WEBHOOK_SIGNATURE_HEADER,
            constants.WEBHOOK_TIMESTAMP_HEADER,
            constants.WEBHOOK_DELIVERY_ID_HEADER,
        )

    def test_good_signature_passes(self):
        """A fresh delivery signed with the secret is accepted; so is one of several signatures."""
        body = body_for()
        h = signed(body)
        verify_signature(
            SECRET,
            body,
            signature=h[SIGNATURE_HEADER],
            timestamp=h[TIMESTAMP_HEADER],
            delivery_id=h[DELIVERY_ID_HEADER],
        )
        verify_signature(
            SECRET,
            body,
            signature="v1,AAAA " + h[SIGNATURE_HEADER],
            timestamp=h[TIMESTAMP_HEADER],
            delivery_id=h[DELIVERY_ID_HEADER],
        )

    @pytest.mark.parametrize(
        ("change", "reason"),
        [
            ({"secret": "other-secret"}, "does not match"),
            ({"body": b'{"tampered": true}'}, "does not match"),
            ({"delivery_id": "someone-else"}, "does not match"),
            ({"signature": None}, "missing X-MLflow-Signature"),
            ({"timestamp": None}, "missing X-MLflow-Timestamp"),
            ({"now_offset": 301}, "old"),
            ({"now_offset": -301}, "future"),
        ],
    )
    def test_rejections_name_the_reason(self, change, reason):
        """Wrong secret, tampered body or id, missing header, stale or future timestamp."""
        body = body_for()
        h = signed(body, secret=change.get("secret", SECRET))
        kwargs = {
            "signature": h[SIGNATURE_HEADER],
            "timestamp": h[TIMESTAMP_HEADER],
            "delivery_id": change.get("delivery_id", h[DELIVERY_ID_HEADER]),
        }
        for key in ("signature", "timestamp"):
            if key in change:
                kwargs[key] = change[key]
        now = int(h[TIMESTAMP_HEADER]) + change.get("now_offset", 0)
        with pytest.raises(SignatureError, match=reason) as info:
            verify_signature(SECRET, change.get("body", body), now=now, **kwargs)
        assert "\n" not in str(info.value)


class TestParsePayload:
    def test_handled_and_ignored_events(self):
        """The three registry events name a model; anything else is ignored (model None)."""
        for event in EVENTS:
            assert parse_payload(body_for(event, name="m")) == (event, "m")
        assert parse_payload(body_for("registered_model.created")) == (
            "registered_model.created",
            None,
        )

    @pytest.mark.parametrize(
        "body", [b"{not json", b"\xff\xfe", b"[1, 2]", b'{"entity": "x"}', body_for(name="")]
    )
    def test_malformed_bodies(self, body):
        """Not JSON, not an object, no entity/action/data, or no model name: BadInput."""
        with pytest.raises(BadInput):
            parse_payload(body)


class TestEndpoint:
    def test_good_delivery_reconciles_its_model(self, receiver, recorder):
        """202 at once; the named model is reconciled in the background and reported."""
        body = body_for(name="model-a", alias="champion", version="2")
        status, reply = receiver.post(body, signed(body))
        assert status == 202
        assert reply == {
            "event": "model_version_alias.created",
            "model": "model-a",
            "coalesced": False,
        }
        assert receiver.queue.wait_idle(DEADLINE)
        assert recorder.models == ["model-a"]
        status, recent = receiver.request("GET", "/recent")
        assert recent["runs"][-1]["events"][0]["actor"] == "registry-ui"

    @pytest.mark.parametrize(
        ("headers", "reason"),
        [
            (lambda b: signed(b, secret="wrong"), "does not match"),
            (lambda b: {k: v for k, v in signed(b).items() if k != SIGNATURE_HEADER}, "missing"),
            (lambda b: signed(b, timestamp=int(time.time()) - 600), "old"),
            (lambda b: signed(b, timestamp=10**400), "not a Unix time"),
        ],
        ids=["bad", "missing", "stale", "400-digit-timestamp"],
    )
    def test_unauthentic_deliveries_get_401(self, receiver, recorder, headers, reason):
        """Bad, missing or stale signatures: 401 with a one-line reason; nothing reconciled."""
        body = body_for()
        status, reply = receiver.post(body, headers(body))
        assert status == 401
        assert reason in reply["error"] and "\n" not in reply["error"]
        assert receiver.queue.wait_idle(DEADLINE)
        assert recorder.models == []

    def test_malformed_json_gets_400(self, receiver, recorder):
        """A correctly signed body that is not JSON: 400, nothing reconciled."""
        body = b'{"entity": "model_version_alias", "action": '
        status, reply = receiver.post(body, signed(body))
        assert status == 400 and reply["error"] == "body is not valid JSON"
        assert recorder.models == []

    def test_other_events_and_lock_models_are_ignored(self, receiver, recorder):
        """200 {"ignored": ...} for unhandled events and for our own promotion-lock models."""
        for body in (
            body_for("model_version.created", version="1"),
            body_for(name=LOCK_PREFIX + "model-a", alias="x", version="1"),
        ):
            status, reply = receiver.post(body, signed(body))
            assert status == 200 and "ignored" in reply
        assert receiver.queue.wait_idle(DEADLINE)
        assert recorder.models == []

    def test_replayed_delivery_is_not_acted_on_twice(self, receiver, recorder):
        """The same signed delivery sent again inside the window: 200 duplicate, one reconcile."""
        body = body_for()
        headers = signed(body)
        assert receiver.post(body, headers)[0] == 202
        status, reply = receiver.post(body, headers)
        assert status == 200 and reply["duplicate"] == headers[DELIVERY_ID_HEADER]
        assert receiver.queue.wait_idle(DEADLINE)
        assert recorder.models == ["model-a"]

    def test_health(self, receiver):
        """GET /health answers with the queue's state."""
        status, reply = receiver.request("GET", "/health")
        assert status == 200 and reply["status"] == "ok" and reply["pending"] == []


class TestReconcileQueue:
    def test_burst_coalesces_per_model(self, receiver, recorder):
        """Deliveries during a running reconcile queue one more run, not one per delivery."""
        recorder.release.clear()
        for i in range(6):
            body = body_for(name="model-a", alias="champion", version=str(i + 1))
            assert receiver.post(body, signed(body))[0] == 202
            if i == 0:
                assert recorder.started.wait(DEADLINE)  # the first run is now in progress
        body = body_for(name="model-b")
        assert receiver.post(body, signed(body))[0] == 202
        recorder.release.set()
        assert receiver.queue.wait_idle(DEADLINE)
        assert sorted(recorder.models) == ["model-a", "model-a", "model-b"]
        runs = {(r["model"], r["triggers"]) for r in receiver.request("GET", "/recent")[1]["runs"]}
        assert runs == {("model-a", 1), ("model-a", 5), ("model-b", 1)}

    def test_failed_reconcile_is_reported_and_the_worker_goes_on(self, recorder):
        """An error is kept with the run; the next model is still reconciled."""
        queue = ReconcileQueue(recorder, threads=1).start()
        try:
            queue.submit("broken")
            queue.submit("model-a")
            assert queue.wait_idle(DEADLINE)
        finally:
            queue.close()
        assert recorder.models == ["broken", "model-a"]
        assert [(r.model, r.error) for r in queue.recent] == [
            ("broken", "registered model 'broken' does not exist"),
            ("model-a", None),
        ]
        assert queue.snapshot()["failures"] == 1
        with pytest.raises(RuntimeError):
            queue.submit("model-a")


class TestCommand:
    def test_missing_secret_is_bad_input(self, monkeypatch):
        """No secret in the named variable: BadInput (exit 2), naming the variable."""
        monkeypatch.delenv("HOOK_SECRET", raising=False)
        result = CliRunner().invoke(webhook_receiver, ["--secret-env", "HOOK_SECRET"])
        assert isinstance(result.exception, BadInput) and result.exception.exit_code == 2
        assert "$HOOK_SECRET" in str(result.exception)

    def test_secret_is_not_an_option(self):
        """The secret itself cannot be passed on the command line."""
        result = CliRunner().invoke(webhook_receiver, ["--secret", "x"])
        assert result.exit_code == 2 and "No such option" in result.output


# -- against a real mlflow server that delivers webhooks --------------------------------------


@pytest.fixture(scope="module")
def delivering(request: pytest.FixtureRequest) -> Iterator[tuple[MlflowServer, LiveReceiver, str]]:
    """A SQLite ``mlflow server`` allowed to deliver to loopback, our receiver, the webhook id."""
    import mlflow
    from cryptography.fernet import Fernet

    from mlflow_plugin.controller import Controller

    env = {
        # Loopback over plain http is refused by default (SSRF protection); fine for a test.
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        # Without one shared key each server worker encrypts webhook secrets with its own.
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    }
    with MlflowServer(workers=2, env=env) as server:
        app = create_app(SECRET, Controller.from_uri(server.uri).reconcile)
        with LiveReceiver(app) as live:
            # Before any alias changes: each server worker caches the webhook list per event.
            hook_id = register_webhook(server.uri, live.url, SECRET)
            yield server, live, hook_id
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]


@pytest.mark.integration
class TestDeliveredByMlflow:
    def test_alias_moved_by_hand_is_recorded(self, delivering, model_name):
        """Moving champion with MlflowClient: a registry-ui deployment event appears, mirror follows."""
        from mlflow import MlflowClient

        from mlflow_plugin.controller import Controller

        server, live, _ = delivering
        controller = Controller.from_uri(server.uri)
        v1, v2 = make_versions(server.uri, model_name, 2)
        controller.promote(model_name, v1)
        MlflowClient(server.uri, server.uri).set_registered_model_alias(model_name, "champion", v2)

        deadline = time.monotonic() + DEADLINE
        moved: list[Event] = []
        while not moved and time.monotonic() < deadline:
            moved = [
                e
                for e in controller.ledger.events(model_name, "deployment")
                if e.version == v2 and e.actor == "registry-ui"
            ]
            time.sleep(0.2)
        assert moved, f"no registry-ui event; receiver saw {live.queue.recent_runs()}"
        assert moved[0].from_version == v1
        assert live.queue.wait_idle(DEADLINE)
        stages = {v.version: v.stage for v in controller.registry.list_versions(model_name)}
        assert stages == {v1: "Archived", v2: "Production"}

    def test_registration_is_idempotent_and_mlflow_signatures_verify(self, delivering):
        """Registering again updates the same webhook; MLflow's own test delivery is accepted."""
        from mlflow import MlflowClient

        server, live, hook_id = delivering
        assert register_webhook(server.uri, live.url, SECRET) == hook_id
        client = MlflowClient(server.uri, server.uri)
        assert [h.webhook_id for h in client.list_webhooks()] == [hook_id]
        result = client.test_webhook(hook_id)
        assert result.success and result.response_status == 202, result


class TestFuzzing:
    """Property-based fuzzing from the receiver's OpenAPI schema: no 5xx on any input."""

    def test_no_server_error_on_any_delivery(self) -> None:
        """Random headers and bodies, most of them signed with the secret: never a 5xx."""
        from fuzzing import fuzz, load
        from hypothesis import strategies as st
        from schemathesis.python.asgi import shutdown_lifespans

        def prepare(case: Any, draw: Any) -> dict[str, Any]:
            how = draw(st.sampled_from(["signed", "drawn headers signed", "as drawn"]))
            if not isinstance(case.body, dict) or how == "as drawn":
                return {}
            body = json.dumps(case.body).encode()
            if how == "signed":
                return {"data": body, "headers": signed(body)}
            ts = str(case.headers.get(TIMESTAMP_HEADER, ""))
            did = str(case.headers.get(DELIVERY_ID_HEADER, ""))
            headers = {**signed(body), TIMESTAMP_HEADER: ts, DELIVERY_ID_HEADER: did}
            headers[SIGNATURE_HEADER] = sign(SECRET, did, ts, body)
            return {"data": body, "headers": headers}

        recorder = Recorder()
        app = create_app(SECRET, recorder)
        try:
            found = fuzz("webhook-receiver", load(app, app.openapi()), prepare=prepare, examples=50)
        finally:
            shutdown_lifespans()
        print("\n" + found.report())
        assert found.failures == {}, found.failures
        assert found.cases["POST /webhook"] >= 60
        assert found.statuses[401] and found.statuses[400], "signed deliveries reach the payload"
