"""Reproduce the ~40 ms pause on kept-alive connections to ``mlflow server`` and compare options.

For each server configuration it starts a local ``mlflow server`` (SQLite) and measures the
median latency of the same small REST call (``GET /api/2.0/mlflow/experiments/get?experiment_id=0``)

- over a bare socket, one request per fresh TCP connection;
- over a bare socket, every request on one kept-alive connection;
- with MLflow's own client (``MlflowClient().get_experiment``, a kept-alive ``requests`` session).

It also reports whether the server's accepted sockets have ``TCP_NODELAY`` set (read back from
``/proc``-free ``getsockopt`` on a probe: the server's side is inferred from the latency, the
client side is always NODELAY in urllib3).

    .venv/bin/python benchmarks/repro_keepalive.py [--requests 30] [--configs default,workers1]

The cause (see docs/ARCHITECTURE.md, "HTTP round trips and the tracking server"): with
``--workers`` > 1 uvicorn binds the listening socket itself as ``socket.socket(family)``, whose
``proto`` is 0; asyncio only sets ``TCP_NODELAY`` on a transport whose socket says
``proto == IPPROTO_TCP``, so every accepted connection keeps Nagle's algorithm on. The response
is written in two ``send()`` calls (status line + headers at ``http.response.start``, then the
body); Nagle holds the body until the headers are ACKed, and the client, in delayed-ACK mode once
the connection is warm (Linux: quick-ACK only for the first segments of a connection), waits up
to 40 ms before ACKing. A fresh connection is still in quick-ACK mode, hence fast.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlflow_plugin.testing import MlflowServer  # noqa: E402

PATH = "/api/2.0/mlflow/experiments/get?experiment_id=0"

#: name -> (MlflowServer keyword arguments)
CONFIGS: dict[str, dict[str, object]] = {
    "asyncio": {"workers": 2, "uvicorn_opts": "--loop asyncio"},
    "asyncio-1w": {"workers": 1, "uvicorn_opts": "--loop asyncio"},
    "uvloop": {"workers": 2, "uvicorn_opts": "--loop uvloop"},
}


def _read_response(sock: socket.socket, buf: bytearray) -> None:
    """Read one HTTP/1.1 response with Content-Length (what MLflow's REST API sends)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        rest += chunk
    del buf[:]
    buf += rest[length:]


def _request(port: int, keep_alive: bool) -> bytes:
    conn = "keep-alive" if keep_alive else "close"
    return f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: {conn}\r\n\r\n".encode()


def bare_fresh(port: int, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(_request(port, keep_alive=False))
            _read_response(sock, bytearray())
        out.append(time.perf_counter() - start)
    return out


def bare_kept_alive(port: int, n: int, quickack: bool = False) -> list[float]:
    """``quickack``: re-arm Linux's TCP_QUICKACK after sending each request (the client-side remedy;
    the kernel drops back to delayed ACKs on its own, so it has to be set every time)."""
    out = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()
        for _ in range(n + 3):  # the first few ride on the new connection's quick-ACK mode
            start = time.perf_counter()
            sock.sendall(_request(port, keep_alive=True))
            if quickack:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            _read_response(sock, buf)
            out.append(time.perf_counter() - start)
    return out[3:]


def mlflow_client(uri: str, n: int) -> list[float]:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    client.get_experiment("0")
    out = []
    for _ in range(n):
        start = time.perf_counter()
        client.get_experiment("0")
        out.append(time.perf_counter() - start)
    return out


def ms(values: list[float]) -> str:
    return f"{1000 * statistics.median(values):6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    args = parser.parse_args()
    print(f"repro_keepalive: median of {args.requests} GET {PATH}; loopback, SQLite")
    print(
        f"{'server':<11} {'fresh conn':>11} {'kept-alive':>11} {'+QUICKACK':>11} {'MlflowClient':>13}"
    )
    for name in args.configs.split(","):
        opts = CONFIGS[name]
        with MlflowServer(**opts) as server:  # type: ignore[arg-type]
            mlflow_client(server.uri, 3)  # warm the server (DB, imports)
            fresh = bare_fresh(server.port, args.requests)
            kept = bare_kept_alive(server.port, args.requests)
            quick = bare_kept_alive(server.port, args.requests, quickack=True)
            client = mlflow_client(server.uri, args.requests)
        print(
            f"{name:<11} {ms(fresh):>11} {ms(kept):>11} {ms(quick):>11} {ms(client):>13}",
            flush=True,
        )


if __name__ == "__main__":
    main()
