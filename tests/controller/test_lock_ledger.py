"""The promotion lock, the hash-chained ledger, gate enforcement, hostile names and exit codes:
one contract suite over the in-memory registry and the real adapter, then real-server cases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _servers import BACKENDS, _start
from click.testing import CliRunner

from mlflow_plugin import GateFailed
from mlflow_plugin.cli import main
from mlflow_plugin.controller import Controller
from mlflow_plugin.errors import LockLost, PromotionConflict
from mlflow_plugin.testing import InMemoryLedger, InMemoryRegistry, free_port

from helpers import FAILED, PASSED, make_versions

EXE = Path(sys.executable).with_name("mlflow-plugin")
HOSTILE = ['it\'s "q" \\ back', "mödel ünï 模型 ✓", "a  b'\\'c"]


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 180):
    base = {k: v for k, v in os.environ.items() if k != "MLFLOW_EXPERIMENT_ID"}
    return subprocess.run(
        [str(EXE), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**base, **(env or {})},
    )


def _memory(name: str, n: int, tags=None) -> Controller:
    registry = InMemoryRegistry()
    for _ in range(n):
        registry.register_version(name, "src", None, dict(PASSED if tags is None else tags))
    return Controller(registry, InMemoryLedger())


@pytest.fixture(params=["memory", *BACKENDS, *(f"{b}-rest" for b in BACKENDS)])
def make(request, monkeypatch):
    """Build a controller over ``n`` versions of a model, in memory or on a real server (with
    MLflow's client, or ``-rest``: the REST client of the CLI's controller commands)."""
    if request.param == "memory":
        return _memory
    backend, _, client = request.param.partition("-")
    uri = _start(backend, request).uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_PLUGIN_ACTOR", "pytest")

    def build(name: str, n: int, tags=None) -> Controller:
        make_versions(uri, name, n, tags)
        ctl = Controller.from_uri(uri, rest=client == "rest")
        assert (type(ctl.registry.client).__name__ == "RestClient") == (client == "rest")
        return ctl

    return build


class TestContract:
    """The same assertions on InMemoryRegistry/InMemoryLedger and the real adapters."""

    def test_lock_is_exclusive_reentrant_and_reported(self, make, model_name):
        """A held lock blocks others, nests in its holder, shows in lock_status, and is gone after."""
        ctl = make(model_name, 1)
        reg = ctl.registry
        assert reg.lock_status(model_name) is None
        with reg.lock(model_name, intent={"op": "test", "actor": "me"}) as lock:
            with reg.lock(model_name) as inner:  # re-entrant in the holder's thread
                inner.check()
            status = reg.lock_status(model_name)
            assert status["token"] == lock.token and status["stale"] is False
            assert status["intent"]["op"] == "test" and status["lease_expires"] > time.time()
            errors: list[BaseException] = []

            def other() -> None:
                try:
                    reg.lock(model_name, timeout=1.0).acquire()
                except BaseException as exc:  # noqa: BLE001
                    errors.append(exc)

            t = threading.Thread(target=other)
            t.start()
            t.join(30)
            assert errors and isinstance(errors[0], PromotionConflict)
        assert reg.lock_status(model_name) is None

    def test_expired_lease_is_broken_once_and_old_holder_cannot_write(self, make, model_name):
        """A holder without heartbeat past its lease loses the lock: the next acquirer breaks
        exactly that instance (reported as stale), and the old holder's check() refuses."""
        ctl = make(model_name, 1)
        reg = ctl.registry
        old = reg.lock(
            model_name, intent={"op": "promote", "version": "1"}, lease=1.0, heartbeat=False
        ).acquire()
        time.sleep(1.2)
        assert reg.lock_status(model_name)["stale"] is True
        result: list = []
        t = threading.Thread(
            target=lambda: result.append(reg.lock(model_name, timeout=20).acquire())
        )
        t.start()
        t.join(60)
        new = result[0]
        try:
            assert [(s.token, s.intent["op"]) for s in new.stale] == [(old.token, "promote")]
            with pytest.raises(LockLost):
                old.check()
            new.check()
        finally:
            old.release()  # must not remove the new holder's lock
            assert reg.lock_status(model_name)["token"] == new.token
            new.release()
        assert reg.lock_status(model_name) is None

    def test_heartbeat_keeps_a_long_holder(self, make, model_name):
        """With the heartbeat, holding past the lease keeps the lock."""
        reg = make(model_name, 1).registry
        with reg.lock(model_name, lease=4.0) as lock:
            time.sleep(6.0)
            lock.check()
            assert reg.lock_status(model_name)["stale"] is False

    @pytest.mark.parametrize("name", HOSTILE)
    def test_hostile_names_work_end_to_end(self, make, name, model_name):
        """Quotes, backslashes, spaces and unicode: events, rollback and the chain all work."""
        name = f"{name} {model_name[-4:]}"  # each client variant on the same server: its own
        ctl = make(name, 3)
        ctl.promote(name, "1")
        ctl.promote(name, "2")
        assert ctl.rollback(name, reason="bad").event.version == "1"
        events = ctl.ledger.events(name)
        assert [(e.event_type, e.version) for e in events] == [
            ("deployment", "1"),
            ("deployment", "2"),
            ("rollback", "1"),
        ]
        assert all(e.model == name for e in events)
        report = ctl.ledger.verify_chain(name)
        assert (report.ok, report.events) == (True, 3), report.problems
        assert ctl.reconcile(name) == []

    def test_chain_tags_link_every_event(self, make, model_name):
        """seq counts 1, 2, 3 and each prev_hash is the previous event's hash."""
        ctl = make(model_name, 2)
        ctl.promote(model_name, "1")
        ctl.promote(model_name, "2")
        ctl.rollback(model_name, reason="r")
        events = ctl.ledger.events(model_name)
        assert [e.extra["mlflow_plugin.seq"] for e in events] == ["1", "2", "3"]
        assert events[0].extra["mlflow_plugin.prev_hash"] == "0" * 64
        for a, b in zip(events, events[1:], strict=False):
            assert b.extra["mlflow_plugin.prev_hash"] == a.extra["mlflow_plugin.hash"]

    @pytest.mark.parametrize("enforce", [False, True])
    def test_ui_bypass_is_flagged_and_reverted_when_enforced(self, make, model_name, enforce):
        """A champion that failed its gates, set outside the controller: gates_bypassed and a
        warning; with enforcement the champion goes back with a rollback event."""
        ctl = make(model_name, 1)
        ctl.registry.register_version(model_name, "src", None, dict(FAILED)) if isinstance(
            ctl.registry, InMemoryRegistry
        ) else make_versions(ctl.registry.uri, model_name, 1, FAILED)
        ctl.promote(model_name, "1")
        ctl.registry.set_alias(model_name, "champion", "2")  # the registry UI
        if enforce:
            ctl.registry.set_model_tag(model_name, "mlflow_plugin.enforce_gates", "true")
        written = ctl.reconcile(model_name)
        ui = written[0]
        assert (ui.event_type, ui.actor, ui.version) == ("deployment", "registry-ui", "2")
        assert ui.extra["mlflow_plugin.gates_bypassed"] == "validation=failed"
        assert "gates bypassed" in ui.message
        champion = ctl.registry.get_model(model_name).aliases["champion"]
        if enforce:
            revert = written[1]
            assert (revert.event_type, revert.version, revert.from_version) == (
                "rollback",
                "1",
                "2",
            )
            assert "gate enforcement" in revert.message and champion == "1"
        else:
            assert champion == "2"
        assert ctl.reconcile(model_name) == []
        assert ctl.ledger.verify_chain(model_name).ok


def test_memory_lock_cannot_be_held_twice_under_threads():
    """12 threads x 10 critical sections on the in-memory lock: never two inside at once."""
    ctl = _memory("m", 1)
    inside, overlaps = [0], [0]
    guard = threading.Lock()

    def work() -> None:
        for _ in range(10):
            with ctl.registry.lock("m", lease=5.0, timeout=60):
                with guard:
                    inside[0] += 1
                    overlaps[0] += inside[0] > 1
                time.sleep(0.001)
                with guard:
                    inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert overlaps[0] == 0


@pytest.mark.integration
class TestLedgerTampering:
    """verify-ledger reports a deleted, edited, reordered or forked event and exits 5."""

    @pytest.mark.parametrize("tamper", ["delete", "edit", "reorder", "fork"])
    def test_tampered_ledger_exits_5(self, tracking_uri, model_name, tamper):
        make_versions(tracking_uri, model_name, 3)
        ctl = Controller.from_uri(tracking_uri)
        for v in ("1", "2", "3"):
            ctl.promote(model_name, v)
        assert CliRunner().invoke(main, ["verify-ledger", model_name]).exit_code == 0
        events = ctl.ledger.events(model_name)
        client = ctl.ledger.client
        if tamper == "delete":
            client.delete_run(events[1].run_id)
        elif tamper == "edit":
            client.set_tag(events[1].run_id, "mlflow_plugin.reason", "nothing to see")
        elif tamper == "reorder":
            client.set_tag(events[1].run_id, "mlflow_plugin.seq", "3")
            client.set_tag(events[2].run_id, "mlflow_plugin.seq", "2")
        else:  # a second writer appended at the same place (what the lock cannot prevent)
            run = client.create_run(
                ctl.ledger.experiment_id(),
                tags={
                    **{k: v for k, v in client.get_run(events[2].run_id).data.tags.items()},
                },
            )
            client.set_terminated(run.info.run_id, "FINISHED")
        result = CliRunner().invoke(main, ["verify-ledger", model_name])
        assert result.exit_code == 5, result.output
        word = {"delete": "deleted", "edit": "edited", "reorder": "edited", "fork": "fork"}[tamper]
        assert word in result.stderr and result.stderr.count("\n") == 1
        assert not ctl.ledger.verify_chain(model_name).ok
        assert "BROKEN" in CliRunner().invoke(main, ["status", model_name]).output
        assert "BROKEN" in CliRunner().invoke(main, ["reconcile", model_name]).stderr


@pytest.mark.integration
@pytest.mark.parametrize("failpoint", ["promote.locked", "promote.before_alias"])
def test_stopped_holder_past_its_lease_cannot_write(tracking_uri, model_name, failpoint):
    """SIGSTOP a promoter holding the lock past its lease (right after it took the lock, and
    after the slow digest check, just before the alias writes); another promote takes over; the
    resumed process fails with a clear error and writes nothing; the chain stays linear."""
    make_versions(tracking_uri, model_name, 3)
    ctl = Controller.from_uri(tracking_uri)
    ctl.promote(model_name, "1")
    env = {
        **os.environ,
        "MLFLOW_PLUGIN_FAILPOINT": f"{failpoint}:stop",
        "MLFLOW_PLUGIN_LOCK_LEASE": "2",
    }
    proc = subprocess.Popen(
        [str(EXE), "promote", model_name, "--version", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until it stopped itself holding the lock
        state = Path(f"/proc/{proc.pid}/stat").read_text().split()[2]
        if state == "T":
            break
        time.sleep(0.1)
    time.sleep(3)  # past the 2 s lease
    ctl.promote(model_name, "3")
    os.kill(proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "lost the lock" in err and err.count("\n") == 1
    assert ctl.registry.get_model(model_name).aliases["champion"] == "3"
    chain = ctl.champion_events(model_name)
    assert [(e.version, e.from_version) for e in chain] == [("1", ""), ("3", "1")]
    assert ctl.verify_ledger(model_name).ok
    assert ctl.registry.lock_status(model_name) is None


def _race(uri: str, model: str, commands: list[list[str]]) -> list[tuple[int, str]]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_PLUGIN_LOCK_TIMEOUT": "600"}
    procs = [
        subprocess.Popen(
            [str(EXE), *c], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for c in commands
    ]
    return [(p.wait(timeout=600), p.communicate()[1]) for p in procs]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("trial", [1, 2])
def test_sixteen_promoters_and_a_mix_form_one_chain(tracking_uri, model_name, trial):
    """16 promoters at once, then promotes mixed with rollbacks: every exit 0, one linear
    chain, one champion in Production, no leftover lock."""
    make_versions(tracking_uri, model_name, 16)
    results = _race(
        tracking_uri,
        model_name,
        [["promote", model_name, "--version", str(v)] for v in range(1, 17)],
    )
    assert [r for r in results if r[0] != 0] == []
    mix = [["promote", model_name, "--version", str(v)] for v in (3, 5, 7, 9)]
    mix += [["rollback", model_name, "--reason", f"r{i}", "--force"] for i in range(4)]
    results = _race(tracking_uri, model_name, mix)
    # A rollback may find nothing to go back to (exit 2, one line): never 1, never a traceback.
    assert [r for r in results if r[0] not in (0, 2)] == []
    assert all("Traceback" not in err for _, err in results)
    ctl = Controller.from_uri(tracking_uri)
    chain = ctl.champion_events(model_name)
    assert chain[0].from_version == ""
    for before, after in zip(chain, chain[1:], strict=False):
        assert after.from_version == before.version
    champion = ctl.registry.get_model(model_name).aliases["champion"]
    assert chain[-1].version == champion
    prod = [v.version for v in ctl.registry.list_versions(model_name) if v.stage == "Production"]
    assert prod == [champion]
    assert ctl.verify_ledger(model_name).ok
    assert ctl.registry.lock_status(model_name) is None


@pytest.mark.integration
class TestExitCodes:
    @pytest.mark.parametrize(
        "version", ["٣", "３", "³", "1" * 25, "2147483648", "-1", "1.0", " 1", "1\n", "1 "]
    )
    def test_versions_are_ascii_digits_of_sane_size(self, tracking_uri, model_name, version):
        """Non-ASCII digits and huge versions: exit 2, one line, nothing recorded."""
        make_versions(tracking_uri, model_name, 3)
        result = CliRunner().invoke(main, ["promote", model_name, "--version", version])
        assert result.exit_code == 2, result.output
        assert result.stderr.count("\n") == 1
        assert Controller.from_uri(tracking_uri).ledger.events(model_name) == []

    @pytest.mark.parametrize(
        "option", [["--watch", "99999999999d"], ["--strategy", "canary", "--interval", "9999w"]]
    )
    def test_durations_past_ten_years_are_refused(self, tracking_uri, model_name, option):
        """A duration past the documented maximum: exit 2, one line, no rollout, no event."""
        make_versions(tracking_uri, model_name, 2)
        result = CliRunner().invoke(main, ["promote", model_name, "--version", "1", *option])
        assert result.exit_code == 2, result.output
        assert "at most 3650d" in result.stderr and result.stderr.count("\n") == 1
        assert Controller.from_uri(tracking_uri).ledger.events(model_name) == []

    def test_bad_scheme_and_credentials(self):
        """A bad scheme exits 2; credentials never appear in what is printed."""
        bad = cli("--tracking-uri", "gopher://alice:hunter2@host/x", "status", "m")
        assert bad.returncode == 2, bad.stderr
        assert "hunter2" not in bad.stderr + bad.stdout
        down = cli("--tracking-uri", f"http://alice:hunter2@127.0.0.1:{free_port()}", "status", "m")
        assert down.returncode == 4, down.stderr
        assert "hunter2" not in down.stderr + down.stdout and "***@127.0.0.1" in down.stderr

    def test_broken_pipe_is_quiet(self, tracking_uri, model_name):
        """``status | head -1`` ends quietly."""
        make_versions(tracking_uri, model_name, 1)
        Controller.from_uri(tracking_uri).promote(model_name, "1")
        proc = subprocess.run(
            f"'{EXE}' events --format json | head -c 1",
            shell=True,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri},
        )
        assert "BrokenPipe" not in proc.stderr and "Traceback" not in proc.stderr

    def test_deep_policy_yaml_is_bad_input(self, tmp_path):
        """A 50,000-deep YAML policy is a ConfigError (exit 2), not a crash."""
        from mlflow_plugin.errors import ConfigError
        from mlflow_plugin.policy import Policy

        path = tmp_path / "deep.yaml"
        path.write_text("[" * 50_000 + "]" * 50_000)
        with pytest.raises(ConfigError):
            Policy.from_yaml(path)

    def test_retrain_with_server_down_exits_4(self, tmp_path):
        """retrain against a dead server: exit 4 with one line."""
        proc = cli(
            "--tracking-uri",
            f"http://127.0.0.1:{free_port()}",
            "retrain",
            "--model-name",
            "m",
            env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"},
        )
        assert proc.returncode == 4, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr


def test_gate_failed_on_memory_records_rejected_in_chain():
    """A refused promotion is an event of the chain too."""
    ctl = _memory("m", 1, FAILED)
    with pytest.raises(GateFailed):
        ctl.promote("m", "1")
    assert ctl.ledger.verify_chain("m").ok and ctl.ledger.events("m")[0].event_type == "rejected"
    assert json.dumps(ctl.status("m")["ledger"])
