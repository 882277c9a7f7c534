"""Fixtures for the flows tests: an experiment of their own on the session's server, data files."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from lifelines.datasets import load_rossi

EXPERIMENT = "mlflow_plugin-flows-tests"


@pytest.fixture()
def flows_uri(tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The server URI, with this package's test experiment active for fluent runs."""
    import mlflow

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
    # set_experiment exports MLFLOW_EXPERIMENT_ID; let monkeypatch put the old value back.
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    mlflow.set_experiment(EXPERIMENT)
    yield tracking_uri
    while mlflow.active_run() is not None:  # a failed test must not leak an open run
        mlflow.end_run("FAILED")


@pytest.fixture()
def rossi_csv(tmp_path) -> str:
    path = tmp_path / "rossi.csv"
    load_rossi().to_csv(path, index=False)
    return str(path)


def shuffled_training_rows(holdout_share: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """rossi whose training rows have shuffled labels, and whose holdout rows are real.

    The rows main's random holdout (same share and seed) would keep out get the latest
    ``enrolled`` times, so with ``time_col=enrolled`` they are exactly the holdout again and the
    champion trained by main on plain rossi never saw them; every other row has its
    (week, arrest) pair shuffled among the training rows.
    """
    frame = load_rossi()
    n = len(frame)
    k = int(round(n * holdout_share))
    order = np.random.default_rng(seed).permutation(n)
    holdout, train = np.sort(order[n - k :]), np.sort(order[: n - k])
    rng = np.random.default_rng(1234)
    labels = frame.loc[train, ["week", "arrest"]].to_numpy()
    frame.loc[train, ["week", "arrest"]] = labels[rng.permutation(len(train))]
    enrolled = np.empty(n)
    enrolled[train] = np.arange(len(train))
    enrolled[holdout] = len(train) + np.arange(k)
    return frame.assign(enrolled=enrolled)
