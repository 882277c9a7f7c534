"""Test helpers shipped with the package (like ``structlog.testing``).

- :class:`MlflowServer` starts a real ``mlflow server`` subprocess on a free loopback port.
- :class:`InMemoryRegistry` (re-exported from :mod:`mlflow_plugin.testing._memory`) has the interface of
  :class:`mlflow_plugin.registry._adapter.Registry` and keeps everything in dicts, for controller unit tests.
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

from mlflow_plugin.testing._memory import InMemoryLedger, InMemoryRegistry

__all__ = [
    "AppServer",
    "HttpCalls",
    "InMemoryLedger",
    "InMemoryRegistry",
    "MlflowServer",
    "SERVER_UVICORN_OPTS",
    "count_http_calls",
    "endpoint_of",
    "free_port",
    "postgres_database",
]


def _server_uvicorn_opts() -> str:
    import importlib.util

    return "--loop uvloop" if importlib.util.find_spec("uvloop") is not None else ""


#: What a team should pass to ``mlflow server`` (with ``uvloop`` installed next to it):
#: ``--uvicorn-opts "--loop uvloop"``. Empty where uvloop is not installed (e.g. Windows).
SERVER_UVICORN_OPTS = _server_uvicorn_opts()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _PortTaken(RuntimeError):
    """The server could not bind its port (taken between :func:`free_port` and the bind)."""


class MlflowServer:
    """A real ``mlflow server`` subprocess with its stores in a temporary directory.

    Args:
        backend_store_uri: SQLAlchemy URI; default an SQLite file in the temp dir.
        workers: number of server worker processes.
        startup_timeout: seconds to wait for ``/health``.
        env: extra environment variables for the server process (e.g.
            ``MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true`` to deliver webhooks to loopback).
        uvicorn_opts: ``mlflow server --uvicorn-opts``; default :data:`SERVER_UVICORN_OPTS`
            (the uvloop event loop, which sets ``TCP_NODELAY`` on every connection; without
            it a kept-alive request to a multi-worker server pays a ~40 ms Nagle/delayed-ACK
            stall: docs/ARCHITECTURE.md, "HTTP round trips and the tracking server"). Pass
            ``""`` for uvicorn's own default.
        artifacts_destination: ``mlflow server --artifacts-destination``; default a directory
            in the temp dir. A plugin scheme such as ``encrypted+file:///...`` is resolved by
            the server through MLflow's ``mlflow.artifact_repository`` entry points.
        extra_args: more ``mlflow server`` options (e.g. ``["--enable-workspaces"]``).
        admin_password: start MLflow's basic-auth app (``--app-name basic-auth``, users in an
            SQLite file in the temp dir) with the admin ``admin`` and this password.
    """

    def __init__(
        self,
        backend_store_uri: str | None = None,
        *,
        workers: int = 2,
        startup_timeout: float = 120.0,
        env: dict[str, str] | None = None,
        uvicorn_opts: str | None = None,
        artifacts_destination: str | None = None,
        extra_args: list[str] | None = None,
        admin_password: str | None = None,
    ) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="mlflow-plugin-server-"))
        self.artifacts_destination = artifacts_destination
        self.extra_args = list(extra_args or [])
        self.admin_password = admin_password
        self.backend_store_uri = backend_store_uri or f"sqlite:///{self.workdir / 'mlflow.db'}"
        self.workers = workers
        self.startup_timeout = startup_timeout
        self.env = dict(env or {})
        self.uvicorn_opts = SERVER_UVICORN_OPTS if uvicorn_opts is None else uvicorn_opts
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = self.workdir / "server.log"

    def start(self) -> MlflowServer:
        """Start the server and wait for ``/health``.

        :func:`free_port` releases the port it found before the server binds it; another
        process (a parallel test worker, an outgoing connection) may take it in between. A
        server that exits because its port is taken is started again on a new port.
        """
        for attempt in range(3):
            try:
                return self._start_once()
            except _PortTaken as exc:
                if attempt == 2:
                    raise RuntimeError(f"mlflow server found no free port:\n{exc}") from None
                self.port = free_port()
                self.uri = f"http://127.0.0.1:{self.port}"
        raise AssertionError("unreachable")

    def _start_once(self) -> MlflowServer:
        artifacts = self.workdir / "artifacts"
        artifacts.mkdir(exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            self.backend_store_uri,
            "--artifacts-destination",
            self.artifacts_destination or str(artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        if self.uvicorn_opts:
            cmd += ["--uvicorn-opts", self.uvicorn_opts]
        cmd += self.extra_args
        env = dict(os.environ)
        env.pop("MLFLOW_TRACKING_URI", None)
        for key in ("MLFLOW_WORKSPACE", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            env.pop(key, None)
        if self.admin_password is not None:
            cmd += ["--app-name", "basic-auth"]
            ini = self.workdir / "basic_auth.ini"
            ini.write_text(
                "[mlflow]\n"
                "default_permission = READ\n"
                f"database_uri = sqlite:///{self.workdir / 'basic_auth.db'}\n"
                "admin_username = admin\n"
                f"admin_password = {self.admin_password}\n"
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                "grant_default_workspace_access = false\n"
                # PBKDF2 per request costs ~0.1-1 s of CPU; tests change no passwords.
                "auth_cache_ttl_seconds = 600\n"
            )
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
            env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", uuid.uuid4().hex)
        # MLflow 3 starts a huey job runner and three consumer processes per server for its
        # GenAI jobs; nothing here uses them, and on a 2-core machine they cost startup CPU.
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        env.update(self.env)
        with open(self._log, "wb") as log:
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = self.log_tail()
                if "address already in use" in tail.lower():
                    self._proc = None
                    raise _PortTaken(tail)
                raise RuntimeError(f"mlflow server exited early:\n{tail}")
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
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database or "postgres",
    )
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; the test extra ships psycopg2.
        yield url.set(drivername="postgresql+psycopg2", database=name).render_as_string(
            hide_password=False
        )
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
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
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
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request on a fresh connection: status, lower-cased headers, body."""
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()


class HttpCalls:
    """What :func:`count_http_calls` saw: requests per endpoint and the time spent in them."""

    def __init__(self) -> None:
        from collections import Counter

        self.by_endpoint: Counter[str] = Counter()
        self.seconds_by_endpoint: dict[str, float] = {}
        self.seconds = 0.0
        self.intervals: list[tuple[float, float]] = []  # (start, end) of each request
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        return sum(self.by_endpoint.values())

    def count(self, fragment: str) -> int:
        """Calls whose endpoint contains ``fragment`` (e.g. ``"registered-models/get"``)."""
        return sum(n for key, n in self.by_endpoint.items() if fragment in key)

    @property
    def sequential(self) -> int:
        """Sequential round trips: the longest chain of requests each sent after the previous
        one was answered (requests that overlap in time count once)."""
        chain, free_at = 0, float("-inf")
        for start, end in sorted(self.intervals, key=lambda iv: iv[1]):
            if start >= free_at:
                chain, free_at = chain + 1, end
        return chain

    def record(self, endpoint: str, seconds: float, start: float | None = None) -> None:
        with self._lock:
            if start is not None:
                self.intervals.append((start, start + seconds))
            self.by_endpoint[endpoint] += 1
            self.seconds_by_endpoint[endpoint] = (
                self.seconds_by_endpoint.get(endpoint, 0.0) + seconds
            )
            self.seconds += seconds

    def summary(self) -> str:
        """One line per endpoint (calls, milliseconds per call), most frequent first."""
        return "\n".join(
            f"{n:4d}  {1000 * self.seconds_by_endpoint[key] / n:6.1f} ms  {key}"
            for key, n in self.by_endpoint.most_common()
        )


def endpoint_of(method: str, url: str) -> str:
    """``"GET registered-models/get"``, ``"PUT artifacts"``: a request's endpoint, without host,
    API prefix, query or the artifact path."""
    from urllib.parse import urlsplit

    path = urlsplit(url).path
    for prefix in ("/ajax-api/2.0/mlflow/", "/api/2.0/mlflow/", "/api/3.0/mlflow/"):
        if path.startswith(prefix):
            path = path[len(prefix) :]
            break
    if path.startswith("/api/2.0/mlflow-artifacts/artifacts") or "mlflow-artifacts" in path:
        path = "artifacts"
    return f"{method.upper()} {path.strip('/')}"


_counters: list[HttpCalls] = []
_counters_lock = threading.Lock()
_original_send: Any = None


def _counting_send(self: Any, request: Any, **kwargs: Any) -> Any:
    start = time.perf_counter()
    try:
        return _original_send(self, request, **kwargs)
    finally:
        elapsed = time.perf_counter() - start
        endpoint = endpoint_of(request.method or "GET", request.url or "")
        for counter in list(_counters):
            counter.record(endpoint, elapsed, start)


@contextlib.contextmanager
def count_http_calls() -> Iterator[HttpCalls]:
    """Count the HTTP requests this process sends (any thread) while the block runs.

    It observes ``requests.Session.send``, the transport under MLflow's REST client and its HTTP
    artifact repository; nothing is changed or mocked. Used by the call-budget tests and
    ``benchmarks/bench_pipeline.py``::

        with count_http_calls() as calls:
            run_pipeline(params)
        assert calls.total <= 40, calls.summary()
    """
    global _original_send
    import requests

    calls = HttpCalls()
    with _counters_lock:
        if _original_send is None:
            _original_send = requests.Session.send
            requests.Session.send = _counting_send  # type: ignore[method-assign]
        _counters.append(calls)
    try:
        yield calls
    finally:
        with _counters_lock:
            _counters.remove(calls)
            if not _counters:
                requests.Session.send = _original_send  # type: ignore[method-assign]
                _original_send = None
