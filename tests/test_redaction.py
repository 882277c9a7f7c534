"""One redaction path: no command, server or log line prints the password of a tracking URI.

Every command runs against a tracking URI with credentials (``http://alice:SECRET@...``) on a
port where nothing listens: the short-lived ones in-process, the servers as processes stopped
after their start-up lines. The secret appears nowhere in what they print; the URI does, masked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlflow_plugin.cli import main
from mlflow_plugin.testing import free_port

SECRET = "hunter2-Zq9"
EXE = Path(sys.executable).with_name("mlflow-plugin")


@pytest.fixture(autouse=True)
def _no_retries(monkeypatch):
    """A port nobody listens on answers at once; no retries, so each command fails fast."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_PLUGIN_CONNECT_TIMEOUT", "2")


@pytest.fixture(scope="module")
def uri() -> str:
    return f"http://alice:{SECRET}@127.0.0.1:{free_port()}"


COMMANDS = [
    ["promote", "m", "--version", "1"],
    ["rollback", "m", "--reason", "x"],
    ["status", "m"],
    ["events"],
    ["log-event", "--event", "alert", "--model", "m", "--version", "1", "--message", "x"],
    ["fallback", "enable", "m"],
    ["fallback", "disable", "m"],
    ["fallback", "status", "m"],
    ["reconcile", "m"],
    ["verify-ledger", "m"],
    ["sign", "m", "--version", "1"],
    ["verify", "m", "--version", "1"],
    ["rollout", "status", "m"],
    ["rollout", "resume", "m"],
    ["rollout", "abort", "m", "--reason", "x"],
    ["rollout", "promote", "m"],
    ["monitor", "m"],
    ["tick"],
    ["retention", "m", "--dry-run"],
    ["doctor"],
    ["validate", "--model-name", "m"],
    ["backtest", "--model-name", "m"],
    ["retrain", "--model-name", "m"],
    ["serve", "m"],
]


class TestEveryCommand:
    @pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
    def test_secret_never_printed(self, uri, args):
        """The server is down: a one-line error (exit 4, doctor's table: 1) with the URI masked."""
        result = CliRunner().invoke(main, ["--tracking-uri", uri, *args])
        printed = result.stdout + result.stderr
        assert SECRET not in printed
        assert result.exit_code == (1 if args[0] == "doctor" else 4), printed
        assert "***@127.0.0.1" in printed

    @pytest.mark.parametrize(
        "args",
        [["api", "--port", "{port}"], ["webhook-receiver", "--port", "{port}"]],
        ids=["api", "webhook-receiver"],
    )
    def test_servers_start_up_lines_are_masked(self, uri, args):
        """The long-running servers name the tracking server they use, masked."""
        argv = [str(EXE), "--tracking-uri", uri, *(a.format(port=free_port()) for a in args)]
        env = {**os.environ, "MLFLOW_PLUGIN_WEBHOOK_SECRET": "hook-secret"}
        proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the start-up line, printed before serving
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
        printed = first + rest
        assert SECRET not in printed
        assert "***@127.0.0.1" in first, printed
