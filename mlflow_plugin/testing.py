"""Test helpers shipped with the package (like ``structlog.testing``).

- :class:`MlflowServer` starts a real ``mlflow server`` subprocess on a free loopback port.
- :class:`InMemoryRegistry` (re-exported from :mod:`mlflow_plugin._memory`) has the interface of
  :class:`mlflow_plugin.registry.Registry` and keeps everything in dicts, for controller unit tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlflow_plugin._memory import InMemoryLedger, InMemoryRegistry

__all__ = [
    "AppServer",
    "InMemoryLedger",
    "InMemoryRegistry",
    "MlflowServer",
    "free_port",
    "postgres_database",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MlflowServer:
    """A real ``mlflow server`` subprocess with its stores in a temporary directory.

    Args:
        backend_store_uri: SQLAlchemy URI; default an SQLite file in the temp dir.
        workers: number of server worker processes.
        startup_timeout: seconds to wait for ``/health``.
        env: extra environment variables for the server process (e.g.
            ``MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true`` to deliver webhooks to loopback).
    """

    def __init__(
        self,
        backend_store_uri: str | None = None,
        *,
        workers: int = 2,
        startup_timeout: float = 120.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="mlflow-plugin-server-"))
        self.backend_store_uri = backend_store_uri or f"sqlite:///{self.workdir / 'mlflow.db'}"
        self.workers = workers
        self.startup_timeout = startup_timeout
        self.env = dict(env or {})
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = self.workdir / "server.log"

    def start(self) -> MlflowServer:
        artifacts = self.workdir / "artifacts"
        artifacts.mkdir(exist_ok=True)
        cmd = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", self.backend_store_uri,
            "--artifacts-destination", str(artifacts),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--workers", str(self.workers),
        ]  # fmt: skip
        env = dict(os.environ)
        env.pop("MLFLOW_TRACKING_URI", None)
        env.update(self.env)
        with open(self._log, "wb") as log:
            self._proc = subprocess.Popen(
                cmd, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited early:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"mlflow server did not answer /health in {self.startup_timeout}s")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            # The server forks workers; signal the whole process group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, 15)
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, 9)
                self._proc.wait(timeout=10)
        self._proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def postgres_database(admin_uri: str) -> Iterator[str]:
    """Create a fresh PostgreSQL database next to ``admin_uri``; yield its URI; drop it after."""
    import psycopg2  # test extra
    from sqlalchemy.engine import make_url

    url = make_url(admin_uri)
    name = f"mlflow_plugin_test_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password,
        dbname=url.database or "postgres",
    )  # fmt: skip
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; the test extra ships psycopg2.
        yield url.set(drivername="postgresql+psycopg2", database=name).render_as_string(hide_password=False)
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


class AppServer:
    """An ASGI app (the serving app, the webhook receiver) on uvicorn in a thread, on a free
    loopback port; a context manager."""

    def __init__(self, app: Any, *, startup_timeout: float = 30.0) -> None:
        import uvicorn

        self.app = app
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout = startup_timeout
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                access_log=False, lifespan="on")  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> AppServer:
        self.thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(self.startup_timeout)

    def raw_request(
        self, method: str, path: str, body: bytes | str | None = None,
        headers: dict[str, str] | None = None, timeout: float = 30.0,
    ) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
        """One HTTP request on a fresh connection: status, lower-cased headers, body."""
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()
