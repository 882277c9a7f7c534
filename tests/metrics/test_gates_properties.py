"""Property tests written once over the table of gates (scikit-learn's ``test_common.py`` way).

Every gate in :data:`GATES` gets the same checks: it agrees with the library it wraps, it does
not depend on row order, it stays within its bounds, and a NaN in any argument is a
``ValueError`` whose message starts with that argument's name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from lifelines.utils import concordance_index
from sklearn import metrics as skm
from sksurv.metrics import brier_score, integrated_brier_score
from sksurv.util import Surv

from mlflow_plugin.metrics import (
    UndefinedMetric,
    brier_loss,
    c_index_score,
    f1_score,
    integrated_brier_loss,
    precision_score,
    recall_score,
    survival_brier_loss,
)

Kwargs = dict[str, Any]

GATE_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

probability = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def survival_data(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Integer durations (so ties are common), with at least one event and two distinct times."""
    n = draw(st.integers(3, 40))
    durations = np.array(draw(st.lists(st.integers(1, 10), min_size=n, max_size=n)), float)
    events = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    events[draw(st.integers(0, n - 1))] = True
    assume(durations.min() < durations.max())
    return durations, events


@st.composite
def c_index_args(draw: st.DrawFn) -> Kwargs:
    durations, events = draw(survival_data())
    risk = draw(st.lists(st.integers(-3, 3), min_size=len(durations), max_size=len(durations)))
    return {"durations": durations, "events": events, "risk": np.array(risk, float)}


@st.composite
def brier_args(draw: st.DrawFn) -> Kwargs:
    durations, events = draw(survival_data())
    n = len(durations)
    inside = np.unique(durations)[:-1]  # horizons in [min, max)
    return {
        "durations": durations,
        "events": events,
        "survival_at_horizon": np.array(draw(st.lists(probability, min_size=n, max_size=n))),
        "horizon": float(draw(st.sampled_from(inside.tolist()))),
        "train_durations": durations.copy(),
        "train_events": events.copy(),
    }


@st.composite
def integrated_args(draw: st.DrawFn) -> Kwargs:
    durations, events = draw(survival_data())
    inside = np.unique(durations)[:-1]
    assume(inside.size >= 2)
    times = np.array(sorted(draw(st.sets(st.sampled_from(inside.tolist()), min_size=2))))
    size = len(durations) * times.size
    cells = draw(st.lists(probability, min_size=size, max_size=size))
    return {
        "durations": durations,
        "events": events,
        "survival_matrix": np.array(cells).reshape(len(durations), times.size),
        "times": times,
        "train_durations": durations.copy(),
        "train_events": events.copy(),
    }


@st.composite
def classification_args(draw: st.DrawFn) -> Kwargs:
    n = draw(st.integers(1, 60))
    return {
        "y_true": np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))),
        "y_prob": np.array(draw(st.lists(probability, min_size=n, max_size=n))),
    }


def _surv(kwargs: Kwargs, prefix: str = "") -> np.ndarray:
    return Surv.from_arrays(kwargs[f"{prefix}events"], kwargs[f"{prefix}durations"])


def _sksurv_brier(a: Kwargs) -> float:
    _, scores = brier_score(_surv(a, "train_"), _surv(a), a["survival_at_horizon"], a["horizon"])
    return float(scores[0])


def _sksurv_integrated(a: Kwargs) -> float:
    return float(
        integrated_brier_score(_surv(a, "train_"), _surv(a), a["survival_matrix"], a["times"])
    )


def _sklearn_at_half(metric: Callable[..., float]) -> Callable[[Kwargs], float]:
    return lambda a: metric(a["y_true"], (a["y_prob"] >= 0.5).astype(int), zero_division=0.0)


@dataclass(frozen=True)
class Gate:
    """One row of the table: the gate, its inputs, and what it must agree with."""

    fn: Callable[..., float]
    args: Callable[[], st.SearchStrategy[Kwargs]]
    rows: tuple[str, ...]  # row-aligned arguments, permuted together
    bounds: tuple[float, float]
    reference: Callable[[Kwargs], float]


GATES: dict[str, Gate] = {
    "c_index": Gate(
        c_index_score,
        c_index_args,
        ("durations", "events", "risk"),
        (0.0, 1.0),
        lambda a: concordance_index(a["durations"], -a["risk"], a["events"]),
    ),
    "survival_brier": Gate(
        survival_brier_loss,
        brier_args,
        ("durations", "events", "survival_at_horizon"),
        (0.0, math.inf),  # IPCW weights can push it above 1
        _sksurv_brier,
    ),
    "integrated_brier": Gate(
        integrated_brier_loss,
        integrated_args,
        ("durations", "events", "survival_matrix"),
        (0.0, math.inf),
        _sksurv_integrated,
    ),
    "brier": Gate(
        brier_loss,
        classification_args,
        ("y_true", "y_prob"),
        (0.0, 1.0),
        lambda a: skm.brier_score_loss(a["y_true"], a["y_prob"], pos_label=1),
    ),
    "f1": Gate(
        f1_score,
        classification_args,
        ("y_true", "y_prob"),
        (0.0, 1.0),
        _sklearn_at_half(skm.f1_score),
    ),
    "precision": Gate(
        precision_score,
        classification_args,
        ("y_true", "y_prob"),
        (0.0, 1.0),
        _sklearn_at_half(skm.precision_score),
    ),
    "recall": Gate(
        recall_score,
        classification_args,
        ("y_true", "y_prob"),
        (0.0, 1.0),
        _sklearn_at_half(skm.recall_score),
    ),
}


def outcome(fn: Callable[..., float], kwargs: Kwargs) -> float | str:
    """The gate's value, or ``"undefined"``."""
    try:
        return fn(**kwargs)
    except UndefinedMetric:
        return "undefined"


@pytest.mark.parametrize("name", sorted(GATES))
class TestEveryGate:
    @GATE_SETTINGS
    @given(data=st.data())
    def test_agrees_with_the_library(self, name: str, data: st.DataObject) -> None:
        """The gate returns what the wrapped library returns on the same data."""
        gate = GATES[name]
        kwargs = data.draw(gate.args())
        value = outcome(gate.fn, kwargs)
        assume(value != "undefined")
        assert value == pytest.approx(gate.reference(kwargs), rel=1e-9, abs=1e-12)

    @GATE_SETTINGS
    @given(data=st.data())
    def test_row_order_invariance(self, name: str, data: st.DataObject) -> None:
        """Permuting the rows (all row-aligned arguments together) leaves the value unchanged."""
        gate = GATES[name]
        kwargs = data.draw(gate.args())
        n = len(kwargs[gate.rows[0]])
        order = np.array(data.draw(st.permutations(range(n))))
        permuted = {**kwargs, **{key: kwargs[key][order] for key in gate.rows}}
        before, after = outcome(gate.fn, kwargs), outcome(gate.fn, permuted)
        if isinstance(before, str) or isinstance(after, str):
            assert before == after
        else:
            assert after == pytest.approx(before, rel=1e-9, abs=1e-12)

    @GATE_SETTINGS
    @given(data=st.data())
    def test_bounds(self, name: str, data: st.DataObject) -> None:
        """The value is a finite float within the gate's bounds (or explicitly undefined)."""
        gate = GATES[name]
        value = outcome(gate.fn, data.draw(gate.args()))
        if value != "undefined":
            assert isinstance(value, float) and math.isfinite(value)
            lo, hi = gate.bounds
            assert lo <= value <= hi

    @GATE_SETTINGS
    @given(data=st.data())
    def test_nan_names_the_argument(self, name: str, data: st.DataObject) -> None:
        """A NaN anywhere in any argument raises ValueError starting with that argument's name."""
        gate = GATES[name]
        kwargs = data.draw(gate.args())
        target = data.draw(st.sampled_from(sorted(kwargs)))
        poisoned = np.array(kwargs[target], dtype=float)  # a 0-d array for scalars
        poisoned.flat[data.draw(st.integers(0, poisoned.size - 1))] = math.nan
        if poisoned.ndim == 0:
            poisoned = poisoned[()]
        with pytest.raises(ValueError) as info:
            gate.fn(**{**kwargs, target: poisoned})
        assert not isinstance(info.value, UndefinedMetric)
        assert str(info.value).startswith(f"{target}: ")
        assert "\n" not in str(info.value)
