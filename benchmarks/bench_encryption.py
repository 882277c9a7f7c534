"""Model load time with encryption at rest against without, interleaved in one run. Not a test.

Starts two local ``mlflow server`` processes (SQLite): one with a plain artifact store, one with
``--artifacts-destination encrypted+file://...`` (docs/ARCHITECTURE.md, "Encryption at rest").
Logs the same pyfunc model on both (a pickled object of ``--mb`` megabytes, so decryption has
real work to do) and registers it, then loads ``models:/NAME/1`` with ``mlflow.pyfunc.load_model``
from each server in turn, pair by pair (target: median ratio encrypted / plain <= 1.2).
Also times the cipher alone (encrypt and decrypt of the same bytes, in memory).

    .venv/bin/python benchmarks/bench_encryption.py [--loads 15] [--mb 20]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from mlflow.pyfunc import PythonModel

from mlflow_plugin.encryption._format import decrypt_stream, encrypt_stream
from mlflow_plugin.registry._adapter import Registry
from mlflow_plugin.testing import MlflowServer


class Weights(PythonModel):
    def __init__(self, weights: np.ndarray) -> None:
        self.weights = weights

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return np.full(len(model_input), float(self.weights[:8].sum()))


def log_and_register(uri: str, model: PythonModel) -> None:
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment("bench-encryption")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=model, pip_requirements=[])
    Registry(uri).register_version("bench-enc", info.model_uri, None, {})


def load_seconds(uri: str) -> float:
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    start = time.perf_counter()
    mlflow.pyfunc.load_model("models:/bench-enc/1")
    return time.perf_counter() - start


def cipher_only(mb: int) -> tuple[float, float]:
    data, key = os.urandom(mb << 20), os.urandom(32)
    out = io.BytesIO()
    start = time.perf_counter()
    encrypt_stream(io.BytesIO(data), out, key, "k1", "default")
    enc = time.perf_counter() - start
    start = time.perf_counter()
    decrypt_stream(io.BytesIO(out.getvalue()), io.BytesIO(), lambda h: key)
    return enc, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=15, help="load pairs")
    parser.add_argument("--mb", type=int, default=20, help="size of the pickled weights")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    enc, dec = cipher_only(args.mb)
    print(f"cipher alone, {args.mb} MiB: encrypt {1000 * enc:.0f} ms, decrypt {1000 * dec:.0f} ms")

    root = Path(tempfile.mkdtemp(prefix="bench-encryption-"))
    store = root / "store"
    store.mkdir()
    keyfile = root / "keys.json"
    keyfile.write_text(
        json.dumps({"default": [{"id": "k1", "key": base64.b64encode(os.urandom(32)).decode()}]})
    )
    model = Weights(np.random.default_rng(0).random((args.mb << 20) // 8))
    plain = MlflowServer(workers=1)
    encrypted = MlflowServer(
        workers=1,
        artifacts_destination=f"encrypted+file://{store}",
        env={"MLFLOW_PLUGIN_KEY_FILE": str(keyfile)},
    )
    with plain, encrypted:
        for server in (plain, encrypted):
            log_and_register(server.uri, model)
        load_seconds(plain.uri), load_seconds(encrypted.uri)  # warm both paths
        ratios, plain_s, enc_s = [], [], []
        for i in range(args.loads):
            # Alternate which goes first so neither always benefits from a warm cache.
            order = [(plain, plain_s), (encrypted, enc_s)]
            for server, sink in order if i % 2 == 0 else order[::-1]:
                sink.append(load_seconds(server.uri))
            ratios.append(enc_s[-1] / plain_s[-1])
    print(
        f"pyfunc.load_model ({args.mb} MiB model, {args.loads} pairs): "
        f"plain p50 {1000 * statistics.median(plain_s):.0f} ms, "
        f"encrypted p50 {1000 * statistics.median(enc_s):.0f} ms, "
        f"median ratio {statistics.median(ratios):.2f} (target <= 1.2)"
    )


if __name__ == "__main__":
    main()
