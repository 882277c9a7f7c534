"""Serving test helpers: real pyfunc models on the real server, a live HTTP server, a load generator."""

from __future__ import annotations

import functools
import http.client
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow_plugin.registry._adapter import Registry
from mlflow_plugin.testing import AppServer

MODEL_CODE = str(Path(__file__).with_name("model_code.py"))
PASSED = {"mlflow_plugin.validation": "passed", "mlflow_plugin.backtest": "passed"}
# Models every integration test can share: name -> model_config of tests/serving/model_code.py.
SHARED = {
    "r1": {"risk": 0.1},
    "r2": {"risk": 0.2},
    "raise": {"risk": 0.9, "mode": "raise"},
    "nan": {"risk": 0.8, "mode": "nan"},
    "echo": {"risk": 0.0, "mode": "echo"},
}


@functools.cache
def features() -> Any:
    """Rossi's covariates (lifelines ships the data set)."""
    from lifelines.datasets import load_rossi

    return load_rossi().drop(columns=["week", "arrest"])


def log_model(
    tracking_uri: str, config: dict[str, Any], metadata: dict[str, Any] | None = None
) -> str:
    """Log one ``model_code.py`` pyfunc with ``config`` and a signature; return its URI."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("mlflow_plugin-serving-tests")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=MODEL_CODE,
            model_config=config,
            input_example=features().head(3),
            pip_requirements=[],
            metadata=metadata,
        )
    return str(info.model_uri)


@functools.cache
def ranged_model(tracking_uri: str) -> str:
    """A model whose MLmodel records the training range of each feature, as the pipeline's do."""
    from mlflow_plugin._internal.feature_ranges import FEATURE_RANGES_KEY, feature_ranges

    return log_model(tracking_uri, {"risk": 0.4}, {FEATURE_RANGES_KEY: feature_ranges(features())})


@functools.cache
def shared_model(tracking_uri: str, kind: str) -> str:
    return log_model(tracking_uri, SHARED[kind])


def register(tracking_uri: str, model: str, source: str) -> str:
    """Register ``source`` as a new version of ``model`` with its gates passed."""
    return Registry(tracking_uri).register_version(model, source, None, dict(PASSED)).version


class LiveServer(AppServer):
    """The serving app on uvicorn in a thread; ``url`` is its base URL."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.url = self.base_url

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": content_type} if body is not None else {}
        return self.raw_request(method, path, body, headers)

    def json(self, method: str, path: str, payload: Any = None) -> tuple[int, dict[str, str], Any]:
        body = None if payload is None else json.dumps(payload)
        status, headers, raw = self.request(method, path, body)
        return status, headers, json.loads(raw) if raw.strip() else None


@dataclass(frozen=True)
class Response:
    sent: float
    received: float
    status: int
    version: str | None
    role: str | None
    risk: float | None
    error: str | None = None


class Load:
    """A bounded load generator: ``threads`` keep-alive clients posting ``body`` on loopback.

    Stops on :meth:`stop`, after ``max_requests`` in all, or after ``max_seconds``.
    """

    def __init__(
        self,
        port: int,
        body: str,
        *,
        threads: int = 3,
        max_requests: int = 5000,
        max_seconds: float = 60.0,
    ) -> None:
        self.port = port
        self.body = body
        self.max_requests = max_requests
        self.deadline = time.monotonic() + max_seconds
        self.responses: list[Response] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[Response]:
        self._stop.set()
        for t in self._threads:
            t.join(60)
        return list(self.responses)

    def count(self) -> int:
        return len(self.responses)

    def wait_for(self, predicate, timeout: float = 60.0) -> bool:
        """Wait until ``predicate(responses)`` holds (or the load ended / timed out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stop.is_set():
            with self._lock:
                snapshot = list(self.responses)
            if predicate(snapshot):
                return True
            time.sleep(0.02)
        return False

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Content-Type": "application/json"}
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            with self._lock:
                if len(self.responses) >= self.max_requests:
                    return
            sent = time.monotonic()
            try:
                conn.request("POST", "/invocations", body=self.body, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                risk = None
                if resp.status == 200:
                    risk = json.loads(raw)["predictions"][0]["risk"]
                out = Response(
                    sent,
                    time.monotonic(),
                    resp.status,
                    resp.getheader("X-Model-Version"),
                    resp.getheader("X-Model-Role"),
                    risk,
                    None if resp.status == 200 else raw.decode()[:300],
                )
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                out = Response(sent, time.monotonic(), 0, None, None, None, repr(exc))
            with self._lock:
                self.responses.append(out)
        conn.close()
