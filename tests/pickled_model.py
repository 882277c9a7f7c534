"""A pyfunc model stored as a pickle (``python_model.pkl``), and a pickle that must never load.

The integrity tests overwrite a version's ``python_model.pkl`` with :func:`booby_trap`: unpickling
it creates a marker file, so "the marker is absent" proves nothing was unpickled.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class PickledRisk(PythonModel):
    def __init__(self, risk: float) -> None:
        self.risk = risk

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        n = len(model_input)
        return pd.DataFrame(
            {
                "risk": np.full(n, self.risk),
                "p_low": np.full(n, 1 - self.risk),
                "p_high": np.full(n, self.risk),
            }
        )


class _Trap:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # What an attacker's pickle does on load; here it only creates a file.
        return (open, (self.marker, "w"))


def booby_trap(marker: str) -> bytes:
    return pickle.dumps(_Trap(marker))


def log_pickled(tracking_uri: str, risk: float) -> str:
    """Log a :class:`PickledRisk` (stored as ``python_model.pkl``); return its ``models:/`` URI."""
    import mlflow
    from lifelines.datasets import load_rossi

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("mlflow_plugin-integrity-tests")
    example = load_rossi().drop(columns=["week", "arrest"]).head(3)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model", python_model=PickledRisk(risk), input_example=example, pip_requirements=[]
        )
    return str(info.model_uri)


def artifact_dir(server_workdir: str, model_uri: str):  # type: ignore[no-untyped-def]
    """Where the server's artifact store keeps a logged model's files."""
    from pathlib import Path

    import mlflow

    location = mlflow.get_logged_model(model_uri.removeprefix("models:/")).artifact_location
    return Path(server_workdir) / "artifacts" / location.split(":/", 1)[1].lstrip("/")
