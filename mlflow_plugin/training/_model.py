"""The model a ``train`` run logs: a pyfunc that predicts a risk score and a distribution of the
event time over buckets.

``predict`` returns one row per input row: ``risk`` (higher means an earlier event: a Cox model's
partial hazard, or the classifier's probability of the event within the horizon) and the
probability columns ``p_<lo>_<hi>`` of the event falling in ``(lo, hi]``, ending with
``p_gt_<horizon>``, "no event within the grid". The probability columns sum to 1.

This module is pickled *by value* into the logged model (see :func:`pickled_by_value`), so a
registered model loads wherever mlflow, pandas, lifelines and scikit-learn are installed,
without mlflow_plugin. Hence the rule for this file: import only those libraries, and raise only
built-in exceptions.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

__all__ = [
    "MODEL_KINDS",
    "FeatureEncoder",
    "SurvivalModel",
    "bucket_columns",
    "bucket_edges",
    "censoring_weights",
    "default_horizon",
    "event_labels",
    "f1_threshold",
    "fit_model",
    "pickled_by_value",
    "time_grid",
]

MODEL_KINDS = ("coxph", "classifier")
_BUCKET = re.compile(r"^p_(?P<lo>[0-9.e+\-]+)_(?P<hi>[0-9.e+\-]+)$")
_LAST = re.compile(r"^p_gt_(?P<hi>[0-9.e+\-]+)$")


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def bucket_columns(grid: Sequence[float]) -> list[str]:
    """``[0.5, 1]`` -> ``["p_0_0.5", "p_0.5_1", "p_gt_1"]``."""
    edges = [0.0, *grid]
    names = [f"p_{_fmt(lo)}_{_fmt(hi)}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    return [*names, f"p_gt_{_fmt(grid[-1])}"]


def bucket_edges(columns: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The probability columns of a prediction, in order, and their upper edges (the grid).

    Raises:
        ValueError: the columns do not follow the ``p_<lo>_<hi>`` ... ``p_gt_<t>`` contract.
    """
    names = [c for c in columns if str(c).startswith("p_")]
    if not names:
        raise ValueError("predictions have no probability columns (p_<lo>_<hi>, ..., p_gt_<t>)")
    last = _LAST.match(str(names[-1]))
    if last is None:
        raise ValueError(f"the last probability column is {names[-1]!r}, expected p_gt_<time>")
    uppers = []
    for name in names[:-1]:
        match = _BUCKET.match(str(name))
        if match is None:
            raise ValueError(f"probability column {name!r} is not p_<lo>_<hi>")
        uppers.append(float(match["hi"]))
    grid = np.array(uppers or [float(last["hi"])])
    if len(uppers) and abs(uppers[-1] - float(last["hi"])) > 1e-9 * max(1.0, uppers[-1]):
        raise ValueError(f"{names[-1]!r} does not continue the grid ending at {uppers[-1]:g}")
    if (np.diff(grid) <= 0).any():
        raise ValueError("probability columns are not in increasing time order")
    return names, grid


def default_horizon(durations: np.ndarray) -> float:
    """The 90th percentile of the durations, kept strictly below the end of follow-up (where
    the IPCW Brier score is not defined): ``rossi`` -> 51 weeks.

    Raises:
        ValueError: every duration is the same.
    """
    values = np.asarray(durations, dtype=float)
    end = float(values.max())
    horizon = float(np.quantile(values, 0.9))
    if horizon >= end:
        below = values[values < end]
        if below.size == 0:
            raise ValueError("cannot choose a horizon: every duration is the same; pass horizon")
        horizon = float(below.max())
    if horizon <= 0:
        raise ValueError("cannot choose a horizon: the durations are not positive; pass horizon")
    return float(_fmt(horizon))


def time_grid(horizon: float, buckets: int) -> list[float]:
    """``buckets`` equal-width bucket ends up to ``horizon`` (rounded as the column names)."""
    return [float(_fmt(horizon * i / buckets)) for i in range(1, buckets + 1)]


def event_labels(
    durations: np.ndarray, events: np.ndarray, horizon: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(label, known)``: label 1 when the event happened by ``horizon``; rows censored before
    the horizon have no known label."""
    d = np.asarray(durations, dtype=float)
    e = np.asarray(events).astype(bool)
    label = e & (d <= horizon)
    known = label | (d >= horizon)
    return label.astype(int), known


def censoring_weights(
    durations: np.ndarray, events: np.ndarray, horizon: float, known: np.ndarray
) -> np.ndarray:
    """Inverse probability of censoring weights of the ``known`` rows at ``horizon``
    (``1/G(T)`` for an event by the horizon, ``1/G(horizon)`` for a row followed past it; ``G``
    the Kaplan-Meier estimate of the censoring distribution on these rows), as the gates
    weigh them (docs/ARCHITECTURE.md, "Statistics of the gates")."""
    from lifelines import KaplanMeierFitter

    d = np.asarray(durations, dtype=float)
    e = np.asarray(events).astype(bool)
    if e.all():
        return np.ones(int(np.asarray(known).sum()))
    km = KaplanMeierFitter().fit(d, ~e)
    at = np.where(e & (d <= horizon), d, horizon)[known]
    g = np.asarray(km.survival_function_at_times(at), dtype=float)
    return np.where(g > 0, 1.0 / np.where(g > 0, g, 1.0), 0.0)


def f1_threshold(
    labels: np.ndarray, probability: np.ndarray, weights: np.ndarray | None = None
) -> float:
    """The decision threshold (predict positive when ``p >= t``) with the best F1 on these rows
    (weighted by ``weights``, the censoring weights, when given).

    Chosen on the training rows, as scikit-learn's ``TunedThresholdClassifierCV`` would; a
    plain 0.5 cut makes no sense for a rare event.
    """
    from sklearn.metrics import precision_recall_curve

    y = np.asarray(labels).astype(int)
    if y.min() == y.max():
        return 0.5
    precision, recall, thresholds = precision_recall_curve(y, probability, sample_weight=weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return float(thresholds[int(np.argmax(f1[:-1]))])


@dataclass(frozen=True)
class FeatureEncoder:
    """Raw feature columns -> model matrix: numbers as floats, text one-hot encoded.

    Attributes:
        columns: the raw feature columns, in order.
        levels: text column -> the levels seen in training, sorted; the first is the
            reference level (no column), unseen levels encode as all zeros.
    """

    columns: tuple[str, ...]
    levels: dict[str, tuple[str, ...]]

    @classmethod
    def fit(cls, frame: pd.DataFrame, columns: Sequence[str]) -> FeatureEncoder:
        levels = {
            c: tuple(sorted(frame[c].astype(str).unique()))
            for c in columns
            if not pd.api.types.is_numeric_dtype(frame[c])
        }
        return cls(tuple(columns), levels)

    @property
    def output_columns(self) -> list[str]:
        out: list[str] = []
        for c in self.columns:
            out += [f"{c}={lvl}" for lvl in self.levels[c][1:]] if c in self.levels else [c]
        return out

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise ValueError(f"input is missing feature column(s): {', '.join(missing)}")
        parts: dict[str, Any] = {}
        for c in self.columns:
            if c in self.levels:
                text = frame[c].astype(str).to_numpy()
                for level in self.levels[c][1:]:
                    parts[f"{c}={level}"] = (text == level).astype(float)
            else:
                try:
                    parts[c] = pd.to_numeric(frame[c]).to_numpy(dtype=float)
                except (TypeError, ValueError):
                    raise ValueError(f"feature column {c!r} must be numeric") from None
        return pd.DataFrame(parts, index=frame.index, columns=self.output_columns)


class SurvivalModel(PythonModel):
    """A fitted survival model behind MLflow's pyfunc interface.

    Args:
        kind: ``coxph`` or ``classifier``.
        estimator: the fitted lifelines ``CoxPHFitter`` or scikit-learn pipeline.
        encoder: raw features -> model matrix.
        grid: bucket upper edges, increasing, ending at ``horizon``.
        decision_threshold: predict "event by horizon" when its probability is at least this
            (chosen for the best F1 on the training rows).
    """

    def __init__(
        self,
        kind: str,
        estimator: Any,
        encoder: FeatureEncoder,
        grid: Sequence[float],
        decision_threshold: float,
    ) -> None:
        self.kind = kind
        self.estimator = estimator
        self.encoder = encoder
        self.grid = [float(t) for t in grid]
        self.decision_threshold = float(decision_threshold)

    @property
    def horizon(self) -> float:
        return self.grid[-1]

    @property
    def columns(self) -> list[str]:
        return ["risk", *bucket_columns(self.grid)]

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:  # noqa: E501
        """``risk`` and the bucket probabilities for each row of ``model_input``."""
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        X = self.encoder.transform(frame)
        risk, probs = self._predict(X)
        out = pd.DataFrame(probs, columns=bucket_columns(self.grid), index=frame.index)
        out.insert(0, "risk", risk)
        return out

    def event_probability(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability of the event by the horizon, per row."""
        _, probs = self._predict(self.encoder.transform(frame))
        return 1.0 - probs[:, -1]

    def _predict(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "coxph":
            risk = np.asarray(self.estimator.predict_partial_hazard(X), dtype=float).reshape(-1)
            surv = np.asarray(
                self.estimator.predict_survival_function(X, times=self.grid), dtype=float
            ).T
            cdf = np.clip(1.0 - surv, 0.0, 1.0)
        else:
            p_event = self.estimator.predict_proba(X.to_numpy())[:, 1]
            risk, cdf = p_event, p_event.reshape(-1, 1)
        cdf = np.maximum.accumulate(cdf, axis=1)  # guard against rounding: a CDF never decreases
        n = len(X)
        edges = np.column_stack([np.zeros(n), cdf, np.ones(n)])
        return risk, np.diff(edges, axis=1)


def _fit_coxph(X: pd.DataFrame, durations: np.ndarray, events: np.ndarray, penalizer: float) -> Any:
    from lifelines import CoxPHFitter

    frame = X.copy()
    frame["__duration"], frame["__event"] = durations, events.astype(int)
    fitter = CoxPHFitter(penalizer=penalizer)
    with _quiet():
        fitter.fit(frame, duration_col="__duration", event_col="__event")
    return fitter


def _fit_classifier(X: pd.DataFrame, labels: np.ndarray, penalizer: float) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    C = 1.0 / penalizer if penalizer > 0 else 1e6
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000))
    return model.fit(X.to_numpy(), labels)


def check_learnable(
    kind: str, durations: np.ndarray, events: np.ndarray, horizon: float
) -> tuple[np.ndarray, np.ndarray]:
    """The rows' ``(label, known)`` at ``horizon`` when a model of ``kind`` can learn from them.
    Checked before any run starts (bad data creates no run), and again by :func:`fit_model`.

    Raises:
        ValueError: no event happens by the horizon (all censored, say), or, for a classifier,
            every row with a known label has the same one.
    """
    labels, known = event_labels(durations, events, horizon)
    if labels.sum() == 0:
        raise ValueError(f"no event happens by the horizon {horizon:g}; nothing to learn")
    if kind != "coxph" and labels[known].min() == labels[known].max():
        raise ValueError(f"every row has the same outcome at the horizon {horizon:g}")
    return labels, known


def fit_model(
    kind: str,
    frame: pd.DataFrame,
    features: Sequence[str],
    durations: np.ndarray,
    events: np.ndarray,
    *,
    penalizer: float,
    horizon: float,
    buckets: int,
) -> SurvivalModel:
    """Fit a model of ``kind`` on checked data.

    Raises:
        ValueError: the fit is impossible (no events before the horizon, no convergence).
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"model_kind: expected one of {', '.join(MODEL_KINDS)}, got {kind!r}")
    encoder = FeatureEncoder.fit(frame, features)
    X = encoder.transform(frame)
    labels, known = check_learnable(kind, durations, events, horizon)
    if kind == "coxph":
        estimator = _fit_coxph(X, durations, events, penalizer)
        grid = time_grid(horizon, buckets)
    else:
        estimator = _fit_classifier(X.loc[known], labels[known], penalizer)
        grid = [float(_fmt(horizon))]
    model = SurvivalModel(kind, estimator, encoder, grid, 0.5)
    p_event = model.event_probability(frame.loc[known])
    weights = censoring_weights(durations, events, horizon, known)
    model.decision_threshold = f1_threshold(labels[known], p_event, weights)
    return model


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """lifelines warns at length about convergence details; the gates judge the result."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def pickled_by_value() -> Iterator[None]:
    """While logging, pickle this module's classes by value so the model needs no mlflow_plugin."""
    import cloudpickle

    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    try:
        yield
    finally:
        cloudpickle.unregister_pickle_by_value(module)
