"""Controller, ledger and CLI against a real ``mlflow server`` (SQLite, and PostgreSQL on CI)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlflow_plugin import GateFailed
from mlflow_plugin.cli import main
from mlflow_plugin.controller import Controller
from mlflow_plugin.registry._adapter import Registry
from mlflow_plugin.testing import MlflowServer, count_http_calls, free_port

from helpers import FAILED, make_versions

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed console script as a user would."""
    exe = Path(sys.executable).with_name("mlflow-plugin")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture()
def controller(tracking_uri: str) -> Controller:
    return Controller.from_uri(tracking_uri)


class TestPromoteAndRollback:
    def test_model_uris_follow_promotion_and_rollback(self, tracking_uri, controller, model_name):
        """Both models:/NAME@champion and models:/NAME/Production load the version just set."""
        import mlflow

        versions = make_versions(tracking_uri, model_name, 2)
        controller.promote(model_name, versions[0])
        controller.promote(model_name, versions[1])
        registry = controller.registry

        def serving() -> tuple[str, str]:
            by_alias = registry.client.get_model_version_by_alias(model_name, "champion").version
            prod = [
                v.version for v in registry.list_versions(model_name) if v.stage == "Production"
            ]
            assert len(prod) == 1
            return str(by_alias), prod[0]

        assert serving() == ("2", "2")
        mlflow.pyfunc.load_model(f"models:/{model_name}@champion")
        mlflow.pyfunc.load_model(f"models:/{model_name}/Production")

        controller.rollback(model_name, reason="v2 misbehaves")
        assert serving() == ("1", "1")
        assert registry.get_version(model_name, "2").stage == "Archived"
        (event,) = controller.ledger.events(model_name, "rollback")
        assert (event.version, event.from_version, event.message, event.actor) == (
            "1",
            "2",
            "v2 misbehaves",
            "pytest",
        )
        assert event.extra["mlflow_plugin.rollback"] == "true"

    def test_rejected_promotion_records_event_and_keeps_champion(
        self, tracking_uri, controller, model_name
    ):
        """A failed gate leaves the champion alone and writes a rejected event."""
        good = make_versions(tracking_uri, model_name, 1)[0]
        bad = make_versions(tracking_uri, model_name, 1, FAILED)[0]
        controller.promote(model_name, good)
        with pytest.raises(GateFailed):
            controller.promote(model_name, bad)
        assert controller.registry.get_model(model_name).aliases["champion"] == good
        rejected = controller.ledger.events(model_name, "rejected")
        assert [(e.version, e.from_version) for e in rejected] == [(bad, good)]

    def test_ledger_runs_carry_design_tags(self, tracking_uri, controller, model_name):
        """Each event is one finished run in the audit experiment with the DESIGN.md tags."""
        make_versions(tracking_uri, model_name, 1)
        event = controller.promote(model_name, "1").event
        assert event is not None
        run = controller.ledger.client.get_run(event.run_id)
        tags = run.data.tags
        assert run.info.status == "FINISHED"
        assert {
            k: tags[k]
            for k in (
                "mlflow_plugin.event",
                "mlflow_plugin.model",
                "mlflow_plugin.version",
                "mlflow_plugin.from_version",
                "mlflow_plugin.actor",
                "mlflow_plugin.strategy",
            )
        } == {
            "mlflow_plugin.event": "deployment",
            "mlflow_plugin.model": model_name,
            "mlflow_plugin.version": "1",
            "mlflow_plugin.from_version": "",
            "mlflow_plugin.actor": "pytest",
            "mlflow_plugin.strategy": "all_at_once",
        }
        exp = controller.registry.client.get_experiment(run.info.experiment_id)
        assert exp.name == "mlflow_plugin-deployments"

    def test_long_ledger_is_appended_to_from_its_newest_runs(self, controller, model_name):
        """An event is appended behind the head read from the newest runs alone (one bounded
        request, not the whole ledger), and the chain stays whole and linear."""
        ledger = controller.ledger
        ledger.head_window = 3
        for i in range(5):
            ledger.record("config_change", model_name, message=f"setting {i}")
        with count_http_calls() as calls:
            event = ledger.record("config_change", model_name, message="after five")
        assert calls.count("runs/search") == 1, calls.summary()
        report = ledger.verify_chain(model_name)
        assert report.ok and report.events == 6 and report.head_seq == 6, report.problems
        head = ledger.chain_head(model_name)
        assert (head.head_seq, head.head_hash) == (6, report.head_hash)
        assert head.events == 3  # read: the newest three runs, not the six
        assert ledger.events(model_name)[-1].run_id == event.run_id
        # A deleted older event does not move the head; the full check still reports it.
        first = ledger.events(model_name)[0]
        ledger.client.delete_run(first.run_id)
        assert ledger.chain_head(model_name).head_seq == 6
        ledger.record("config_change", model_name, message="after a deletion")
        broken = ledger.verify_chain(model_name)
        assert not broken.ok and broken.head_seq == 7
        assert any("deleted" in problem for problem in broken.problems), broken.problems


class TestCli:
    def test_promote_rollback_status_events(self, tracking_uri, model_name):
        """The worked example of the README, through the CLI."""
        make_versions(tracking_uri, model_name, 2)
        assert invoke("promote", model_name, "--version", "1").exit_code == 0
        assert invoke("promote", model_name, "--version", "2").exit_code == 0
        result = invoke("rollback", model_name, "--reason", "latency regression")
        assert result.exit_code == 0, result.output
        status = json.loads(invoke("status", model_name, "--json").output)
        assert status["champion"] == "1"
        assert status["stages"]["Production"] == ["1"]
        assert status["last_event"]["event_type"] == "rollback"
        out = invoke("events", "--model", model_name, "--format", "csv").output
        rows = list(csv.DictReader(io.StringIO(out)))
        assert list(rows[0]) == [
            "timestamp",
            "event_type",
            "model_name",
            "version",
            "from_version",
            "actor",
            "message",
        ]
        assert [(r["event_type"], r["version"], r["from_version"]) for r in rows] == [
            ("deployment", "1", ""),
            ("deployment", "2", "1"),
            ("rollback", "1", "2"),
        ]
        assert rows[0]["timestamp"].endswith("Z")
        table = invoke("events", "--model", model_name).output.splitlines()
        assert table[0].split() == [
            "timestamp",
            "event_type",
            "model_name",
            "version",
            "from_version",
            "actor",
            "message",
        ]
        only = invoke("events", "--model", model_name, "--event", "rollback", "--format", "json")
        assert [e["event_type"] for e in json.loads(only.output)] == ["rollback"]
        future = invoke(
            "events", "--model", model_name, "--since", "2999-01-01", "--format", "json"
        )
        assert json.loads(future.output) == []

    def test_gate_refusal_exits_3(self, tracking_uri, model_name):
        """A promotion refused by a gate exits 3 with one line on stderr."""
        make_versions(tracking_uri, model_name, 1, FAILED)
        result = invoke("promote", model_name, "--version", "1")
        assert result.exit_code == 3
        assert result.stderr.count("\n") == 1 and "validation=failed" in result.stderr

    @pytest.mark.parametrize(
        "args",
        [
            ("promote", "no-such-model", "--version", "1"),
            ("promote", "{model}", "--version", "abc"),
            ("promote", "{model}", "--version", "99"),
            ("promote", "{model}", "--version"),
            ("rollback", "{model}", "--reason", ""),
            ("rollback", "{model}", "--reason", "x", "--to-version", "one"),
            (
                "log-event",
                "--event",
                "party",
                "--model",
                "{model}",
                "--version",
                "1",
                "--message",
                "m",
            ),
            ("events", "--since", "yesterday"),
            ("fallback", "enable", "{model}", "--version", "v1"),
        ],
    )
    def test_bad_input_exits_2(self, tracking_uri, model_name, args):
        """Bad input gets exit 2 and a single line, and changes nothing."""
        make_versions(tracking_uri, model_name, 1)
        result = invoke(*(a.replace("{model}", model_name) for a in args))
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        assert Controller.from_uri(tracking_uri).ledger.events(model_name) == []

    def test_log_event_and_fallback_commands(self, tracking_uri, model_name):
        """log-event writes a manual entry; fallback enable/disable/status round-trip."""
        make_versions(tracking_uri, model_name, 2)
        invoke("promote", model_name, "--version", "1")
        invoke("promote", model_name, "--version", "2")
        result = invoke(
            "log-event",
            "--event",
            "error",
            "--model",
            model_name,
            "--version",
            "2",
            "--message",
            "p99 latency spike",
        )
        assert result.exit_code == 0, result.output
        assert invoke("fallback", "enable", model_name).exit_code == 0
        state = json.loads(invoke("fallback", "status", model_name).output)
        assert (state["enabled"], state["version"]) == (True, "1")
        assert invoke("fallback", "disable", model_name).exit_code == 0
        assert json.loads(invoke("fallback", "status", model_name).output)["enabled"] is False
        types = [e.event_type for e in Controller.from_uri(tracking_uri).ledger.events(model_name)]
        assert types == ["deployment", "deployment", "error", "config_change", "config_change"]

    def test_reconcile_notices_registry_ui_changes(self, tracking_uri, model_name):
        """An alias moved and a stage changed by hand are recorded and the mirror repaired."""
        make_versions(tracking_uri, model_name, 3)
        invoke("promote", model_name, "--version", "1")
        registry = Registry(tracking_uri)
        registry.set_alias(model_name, "champion", "2")  # what the registry UI does
        registry.set_stage(model_name, "3", "Production")
        result = invoke("reconcile", model_name)
        assert result.exit_code == 0, result.output
        events = Controller.from_uri(tracking_uri).ledger.events(model_name)
        assert [(e.event_type, e.actor) for e in events[1:]] == [
            ("deployment", "registry-ui"),
            ("config_change", "registry-ui"),
        ]
        stages = {v.version: v.stage for v in registry.list_versions(model_name)}
        assert stages == {"1": "Archived", "2": "Production", "3": "Archived"}
        assert "in sync" in invoke("reconcile", model_name).output


class TestFaults:
    @pytest.mark.parametrize(
        "failpoint,command,then,expected,next_target",
        [
            (
                "promote.locked",
                ("promote", "{model}", "--version", "3"),
                "reconcile",
                ("error", "2"),
                "1",
            ),
            (
                "promote.after_alias",
                ("promote", "{model}", "--version", "3"),
                "reconcile",
                ("deployment", "3"),
                "2",
            ),
            (
                "promote.after_mirror",
                ("promote", "{model}", "--version", "3"),
                "promote",
                ("deployment", "3"),
                "2",
            ),
            (
                "rollback.locked",
                ("rollback", "{model}", "--reason", "bad v2"),
                "promote",
                ("error", "2"),
                "1",
            ),
            (
                "rollback.after_alias",
                ("rollback", "{model}", "--reason", "bad v2"),
                "reconcile",
                ("rollback", "1"),
                None,
            ),
            (
                "rollback.after_mirror",
                ("rollback", "{model}", "--reason", "bad v2"),
                "promote",
                ("rollback", "1"),
                None,
            ),
        ],
    )
    def test_killed_process_is_completed_as_what_it_was(
        self, tracking_uri, model_name, failpoint, command, then, expected, next_target
    ):
        """kill -9 at a failpoint, then reconcile or another promote: the interrupted
        operation is recorded with its own type, reason and actor, prepared runs end KILLED,
        the chain stays linear, and the next rollback goes to the right version."""
        make_versions(tracking_uri, model_name, 3)
        ctl = Controller.from_uri(tracking_uri)
        ctl.promote(model_name, "1")
        ctl.promote(model_name, "2")
        env = {**os.environ, "MLFLOW_PLUGIN_FAILPOINT": failpoint, "MLFLOW_PLUGIN_ACTOR": "alice"}
        exe = Path(sys.executable).with_name("mlflow-plugin")
        proc = subprocess.run(
            [str(exe), *(c.replace("{model}", model_name) for c in command)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 137, proc.stderr
        assert ctl.registry.lock_status(model_name)["stale"]  # the dead holder's lock is left
        if then == "reconcile":
            written = ctl.reconcile(model_name)
        else:  # the next holder completes it before its own (here: nothing to do) work
            before = len(ctl.ledger.events(model_name))
            ctl.promote(model_name, ctl.registry.get_model(model_name).aliases["champion"])
            written = ctl.ledger.events(model_name)[before:]
        first = written[0]
        champion = ctl.registry.get_model(model_name).aliases["champion"]
        if expected[0] == "error":  # killed before any write: nothing changed, said so
            assert (first.event_type, champion) == expected
            assert "alice" in first.message and "nothing had changed" in first.message
        else:
            assert (first.event_type, first.version) == expected
            assert first.actor == "alice" and "after an interrupted" in first.message
        if first.event_type == "rollback":
            assert first.message.startswith("bad v2") and first.from_version == "2"
        assert ctl.registry.lock_status(model_name) is None
        runs = ctl.ledger.client.search_runs(
            [ctl.ledger.experiment_id()], "attributes.status = 'RUNNING'"
        )
        assert not [r for r in runs if r.data.tags.get("mlflow_plugin.model") == model_name]
        versions = ctl.registry.list_versions(model_name)
        champion = ctl.registry.get_model(model_name).aliases["champion"]
        assert [v.version for v in versions if v.stage == "Production"] == [champion]
        assert ctl.champion_events(model_name)[-1].version == champion
        assert ctl.reconcile(model_name) == []
        assert ctl.verify_ledger(model_name).ok
        if next_target is not None and champion != next_target:
            outcome = ctl.rollback(model_name, reason="next")
            assert outcome.event is not None and outcome.event.version == next_target
        elif first.event_type == "rollback":
            # v2 was rolled back from: it is never a rollback target again.
            assert ctl.last_known_good(model_name) != "2"

    def test_server_down_exits_4_quickly(self):
        """An unreachable tracking server: exit 4 within 30 s, naming the URI."""
        uri = f"http://127.0.0.1:{free_port()}"
        start = time.monotonic()
        proc = cli("--tracking-uri", uri, "rollback", "m", "--reason", "x")
        assert proc.returncode == 4, proc.stderr
        assert time.monotonic() - start < 30
        assert uri in proc.stderr and "Traceback" not in proc.stderr
        assert proc.stderr.count("\n") == 1


@pytest.mark.slow
def test_concurrent_promotions_form_one_chain():
    """8 processes promote 8 versions at once on --workers 4: one champion, one chain."""
    with MlflowServer(workers=4) as server:
        model = "concurrent"
        make_versions(server.uri, model, 8)
        exe = Path(sys.executable).with_name("mlflow-plugin")
        env = {**os.environ, "MLFLOW_TRACKING_URI": server.uri}
        procs = [
            subprocess.Popen(
                [str(exe), "promote", model, "--version", str(v)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for v in range(1, 9)
        ]
        results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
        assert all(code == 0 for code, _, _ in results), results
        ctl = Controller.from_uri(server.uri)
        info = ctl.registry.get_model(model)
        versions = ctl.registry.list_versions(model)
        assert [v.version for v in versions if v.stage == "Production"] == [
            info.aliases["champion"]
        ]
        chain = ctl.ledger.events(model, "deployment")
        assert len(chain) == 8
        assert chain[0].from_version == ""
        for before, after in zip(chain, chain[1:], strict=False):
            assert after.from_version == before.version
        assert chain[-1].version == info.aliases["champion"]
