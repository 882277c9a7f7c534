"""``mlflow-plugin doctor`` against a real ``mlflow server``: healthy, then each check broken in
turn."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlflow_plugin.cli import main
from mlflow_plugin.controller import Controller
from mlflow_plugin.doctor import HEARTBEAT_TAG
from mlflow_plugin.integrity._manifest import record_digest
from mlflow_plugin.testing import free_port

from helpers import register_own_artifacts

pytestmark = pytest.mark.integration
POLICY = Path(__file__).resolve().parents[2] / "flows" / "policy.yaml"


@pytest.fixture(scope="module")
def healthy(mlflow_server, tmp_path_factory):
    """A model with champion 2, fallback 1 (enabled), stages in sync and a fresh heartbeat."""
    model = f"doctor-{uuid.uuid4().hex[:8]}"
    controller = Controller.from_uri(mlflow_server.uri)
    register_own_artifacts(mlflow_server.uri, model, 2)
    controller.promote(model, "1")
    controller.promote(model, "2")
    controller.fallback_enable(model)
    for version in ("1", "2"):  # registration records them too; make sure
        record_digest(controller.registry, model, version)
    tmp = tmp_path_factory.mktemp("doctor")
    return mlflow_server, controller, model, tmp


def doctor(healthy, *extra: str, uri: str | None = None) -> tuple[int, dict]:
    server, controller, model, tmp = healthy
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    controller.registry.set_model_tag(model, HEARTBEAT_TAG, now)
    args = [
        "--tracking-uri",
        uri or server.uri,
        "doctor",
        model,
        "--json",
        "--backend-store-uri",
        server.backend_store_uri,
        "--path",
        str(tmp),
        "--prediction-log",
        f"sqlite:///{tmp / 'predictions.db'}",
        "--policy",
        str(POLICY),
        "--min-free-gb",
        "0.01",
        *extra,
    ]
    result = CliRunner().invoke(main, args)
    return result.exit_code, json.loads(result.stdout)


class TestDoctor:
    def test_healthy_setup_passes(self, healthy):
        """Exit 0; every check passes (skips only for features this build lacks)."""
        code, report = doctor(healthy)
        assert code == 0 and report["ok"] and report["failed"] == []
        statuses = {c["check"]: c["status"] for c in report["checks"]}
        model = healthy[2]
        for name in (
            "tracking server",
            "backend",
            "database schema",
            "artifact store",
            "disk space",
            "policy file",
            "prediction log writable",
            f"{model}: champion",
            f"{model}: stage mirror",
            f"{model}: lock",
            f"{model}: fallback",
            f"{model}: operator heartbeat",
        ):
            assert statuses[name] == "pass", (name, report)
        assert "MLflow 3." in report["checks"][0]["detail"]

    def test_text_table_is_aligned(self, healthy):
        """The table's columns line up and the summary says all passed."""
        server, _, model, tmp = healthy
        result = CliRunner().invoke(
            main,
            [
                "--tracking-uri",
                server.uri,
                "doctor",
                model,
                "--path",
                str(tmp),
                "--min-free-gb",
                "0.01",
            ],
        )
        lines = result.stdout.splitlines()
        assert lines[0].split() == ["check", "status", "detail", "how", "to", "fix"]
        col = lines[0].index("status")
        assert all(line[col - 2 : col] == "  " for line in lines[1:-1])
        assert lines[-1].startswith("doctor: all checks passed")

    def test_server_down(self, healthy):
        """An unreachable server fails that check and skips what needs it."""
        code, report = doctor(healthy, uri=f"http://127.0.0.1:{free_port()}")
        assert (code, report["failed"]) == (1, ["tracking server"])

    def test_credentials_in_the_uri_are_used_and_never_printed(self, healthy):
        """``http://user:password@host``: the server is reached (Basic auth, as MLflow sends it)
        and the password appears nowhere in the report; the same when the server is down."""
        server = healthy[0]
        with_password = server.uri.replace("http://", "http://alice:hunter2@")
        code, report = doctor(healthy, uri=with_password)
        text = json.dumps(report)
        assert "hunter2" not in text and "***@" in text
        assert {c["check"]: c["status"] for c in report["checks"]}["tracking server"] == "pass"
        code, report = doctor(healthy, uri=f"http://alice:hunter2@127.0.0.1:{free_port()}")
        assert (code, report["failed"]) == (1, ["tracking server"])
        assert "hunter2" not in json.dumps(report)

    def test_disk_threshold(self, healthy):
        """Less free space than --min-free-gb fails the disk check."""
        code, report = doctor(healthy, "--min-free-gb", "1000000")
        assert (code, report["failed"]) == (1, ["disk space"])

    def test_mirror_out_of_sync(self, healthy):
        """A second Production version is named, with reconcile as the fix."""
        _, controller, model, _ = healthy
        controller.registry.set_stage(model, "1", "Production")
        try:
            code, report = doctor(healthy)
        finally:
            controller.reconcile(model)
        assert (code, report["failed"]) == (1, [f"{model}: stage mirror"])
        check = next(c for c in report["checks"] if c["check"] == f"{model}: stage mirror")
        assert "v1 Production->Archived" in check["detail"] and "reconcile" in check["fix"]

    def test_stale_lock(self, healthy):
        """A lock left by a holder killed while holding it is reported as stale."""
        server, controller, model, _ = healthy
        code = (
            "import os, sys\n"
            "from mlflow_plugin.registry._adapter import Registry\n"
            "Registry(sys.argv[1]).lock(sys.argv[2], intent={'op': 'test'}).__enter__()\n"
            "os._exit(137)\n"
        )
        env = {**os.environ, "MLFLOW_PLUGIN_LOCK_LEASE": "1"}
        proc = subprocess.run([sys.executable, "-c", code, server.uri, model], env=env, timeout=120)
        assert proc.returncode == 137
        time.sleep(1.5)  # past the lease, whatever else tells the holder is dead
        try:
            code_, report = doctor(healthy)
        finally:
            controller.reconcile(model)  # breaks the lock and records the interrupted operation
        assert (code_, report["failed"]) == (1, [f"{model}: lock"])
        check = next(c for c in report["checks"] if c["check"] == f"{model}: lock")
        assert "stale" in check["detail"] and "reconcile" in check["fix"]
        assert doctor(healthy)[1]["failed"] == []

    def test_stale_heartbeat(self, healthy):
        """A heartbeat older than --heartbeat-max-age fails; a live operator lease passes."""
        code, report = doctor(healthy, "--heartbeat-max-age", "0")
        assert report["failed"] == [f"{healthy[2]}: operator heartbeat"] and code == 1
        _, controller, model, _ = healthy
        lease = json.dumps({"owner": "operator@host:1", "expires": time.time() + 600})
        controller.registry.set_model_tag(model, "mlflow_plugin.operator_lease", lease)
        try:
            code, report = doctor(healthy, "--heartbeat-max-age", "0")
        finally:
            controller.registry.delete_model_tag(model, "mlflow_plugin.operator_lease")
        assert (code, report["failed"]) == (0, [])

    def test_broken_chain(self, healthy):
        """An audit run edited after the fact breaks the chain."""
        _, controller, model, _ = healthy
        event = controller.ledger.events(model, "deployment")[0]
        client = controller.ledger.client
        client.set_tag(event.run_id, "mlflow_plugin.reason", "edited afterwards")
        try:
            code, report = doctor(healthy)
        finally:
            client.set_tag(event.run_id, "mlflow_plugin.reason", event.message)
        assert (code, report["failed"]) == (1, [f"{model}: ledger chain"])

    def test_tampered_artifact(self, healthy):
        """A champion artifact changed on disk fails its digest check."""
        server, controller, model, _ = healthy
        download = controller.registry.artifact_uri(model, "2")  # mlflow-artifacts:/<path>
        root = Path(server.workdir, "artifacts", download.split(":", 1)[1].lstrip("/"))
        victim = root / "MLmodel"
        original = victim.read_bytes()
        victim.write_bytes(original + b"\n# tampered\n")
        try:
            code, report = doctor(healthy)
        finally:
            victim.write_bytes(original)
        assert (code, report["failed"]) == (1, [f"{model}: champion artifacts"])


def test_bad_policy_and_server_down_are_both_named(tmp_path):
    """Every failing check is named, not only the first."""
    bad = tmp_path / "policy.yaml"
    bad.write_text("gates: {f1: {treshold: 0.4}}\n")
    args = [
        "--tracking-uri",
        f"http://127.0.0.1:{free_port()}",
        "doctor",
        "--json",
        "--policy",
        str(bad),
        "--path",
        str(tmp_path),
        "--min-free-gb",
        "0.01",
        "--prediction-log",
        f"sqlite:///{tmp_path / 'p.db'}",
    ]
    result = CliRunner().invoke(main, args)
    report = json.loads(result.stdout)
    assert (result.exit_code, report["failed"]) == (1, ["tracking server", "policy file"])
    assert "doctor: 2 check(s) failed: tracking server, policy file" in result.stderr
    policy = next(c for c in report["checks"] if c["check"] == "policy file")
    assert policy["detail"].startswith("gates.f1.treshold: unknown key")
