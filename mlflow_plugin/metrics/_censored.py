"""Metrics at a horizon on right-censored rows: inverse probability of censoring weights.

The task is "event by ``horizon``". A row is a *case* when its event happened by the horizon, a
*control* when it was still followed after the horizon, and has no label when it was censored
before (never a negative). Cases and controls are weighted by ``1 / G(T_i)`` and ``1 / G(h)``,
``G`` the Kaplan-Meier estimate of the censoring distribution on the rows the model was fitted
on (scikit-survival's :class:`~sksurv.nonparametric.CensoringDistributionEstimator`), exactly
as :func:`sksurv.metrics.brier_score` weights them, so the IPCW Brier score here is
scikit-survival's. F1, precision and recall are computed by scikit-learn from the weighted
confusion counts (``sample_weight``). See docs/ARCHITECTURE.md, "Statistics of the gates".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mlflow_plugin.metrics._checks import (
    UndefinedMetric,
    as_durations,
    as_events,
    as_number,
    as_probabilities,
    same_length,
)

__all__ = [
    "AtHorizon",
    "at_horizon",
    "auto_horizon",
    "check_horizon",
    "horizon_range",
    "km_event_share",
]


def km_event_share(durations: ArrayLike, events: ArrayLike, horizon: float) -> float:
    """Kaplan-Meier estimate of P(event by ``horizon``) (scikit-survival's estimator)."""
    from sksurv.nonparametric import kaplan_meier_estimator

    times = as_durations("durations", durations)
    observed = as_events("events", events)
    same_length(durations=times, events=observed)
    if not observed.any():
        return 0.0
    grid, survival = kaplan_meier_estimator(observed, times)
    i = int(np.searchsorted(grid, horizon, side="right")) - 1
    return float(1.0 - survival[i]) if i >= 0 else 0.0


def horizon_range(evaluated: Sequence[ArrayLike]) -> tuple[float, float]:
    """``(0, end)``: a horizon must lie strictly below ``end``, the earliest end of follow-up
    among the evaluated row sets (the holdout, or every backtest fold)."""
    arrays = [np.asarray(d, dtype=float) for d in evaluated]
    ends = [float(a.max()) for a in arrays if a.size]
    if not ends:
        raise ValueError("horizon: no evaluated rows")
    return 0.0, min(ends)


def check_horizon(horizon: float, evaluated: Sequence[ArrayLike]) -> float:
    """``horizon`` if it lies inside the follow-up of every evaluated row set.

    Raises:
        ValueError: naming the admissible range.
    """
    lo, hi = horizon_range(evaluated)
    h = as_number("horizon", horizon)
    if not lo < h < hi:
        raise ValueError(
            f"horizon: {h:g} is outside the follow-up of the evaluated rows; "
            f"choose a value in ({lo:g}, {hi:g})"
        )
    return h


def auto_horizon(
    train_durations: ArrayLike, evaluated: Sequence[ArrayLike], *, quantile: float = 0.9
) -> float:
    """The automatic horizon: the ``quantile`` of the training durations, lowered to the same
    quantile of each evaluated row set's durations so that it lies inside the follow-up of
    every one of them (time-ordered data: the latest rows are followed for the shortest time).

    Raises:
        ValueError: no horizon fits (every duration of a set is the same or not positive).
    """
    arrays = [np.asarray(d, dtype=float) for d in evaluated]
    candidates = [np.asarray(train_durations, dtype=float)] + [a for a in arrays if a.size]
    horizon = float("inf")
    for values in candidates:
        end = float(values.max())
        h = float(np.quantile(values, quantile))
        if h >= end:
            below = values[values < end]
            if below.size == 0:
                raise ValueError(
                    "cannot choose a horizon: every duration of a row set is the same; pass horizon"
                )
            h = float(below.max())
        horizon = min(horizon, h)
    if not horizon > 0:
        raise ValueError("cannot choose a horizon: the durations are not positive; pass horizon")
    return float(f"{horizon:.6g}")


@dataclass(frozen=True)
class AtHorizon:
    """The rows' outcome at a horizon and their censoring weights.

    Attributes:
        horizon: the time point.
        labels: 1 case (event by the horizon), 0 control (followed past it), -1 censored
            before it (no label).
        weights: ``1/G(T_i)`` for cases, ``1/G(h)`` for controls, 0 for censored rows.
        km_event_share: Kaplan-Meier P(event by the horizon) on these rows.
    """

    horizon: float
    labels: NDArray[np.int8]
    weights: NDArray[np.float64]
    km_event_share: float

    @property
    def n_rows(self) -> int:
        return len(self.labels)

    @property
    def n_used(self) -> int:
        """Rows with a label (weight > 0)."""
        return int((self.labels >= 0).sum())

    @property
    def n_censored(self) -> int:
        """Rows censored before the horizon."""
        return int((self.labels < 0).sum())

    def brier_terms(self, p_event: ArrayLike) -> NDArray[np.float64]:
        """Per-row IPCW Brier terms; their mean is the IPCW Brier score."""
        p = as_probabilities("p_event", p_event)
        same_length(labels=self.labels, p_event=p)
        y = (self.labels == 1).astype(float)
        return np.asarray(self.weights * np.square(y - p), dtype=float)

    def brier(self, p_event: ArrayLike) -> float:
        """IPCW Brier score of P(event by the horizon) (= :func:`sksurv.metrics.brier_score`
        with ``S = 1 - p_event``)."""
        return float(np.mean(self.brier_terms(p_event)))

    def classification(self, decided: ArrayLike) -> dict[str, float | UndefinedMetric]:
        """Weighted F1, precision and recall of 0/1 decisions (scikit-learn, ``sample_weight``);
        rows censored before the horizon count for nothing."""
        from sklearn.metrics import precision_recall_fscore_support

        d = np.asarray(decided).astype(int).reshape(-1)
        same_length(labels=self.labels, decided=d)
        used = self.labels >= 0
        y, w, dd = self.labels[used].astype(int), self.weights[used], d[used]
        names = ("precision", "recall", "f1")
        reason = self._one_class(y)
        if reason:
            return {n: UndefinedMetric(n, reason) for n in names}
        out: dict[str, float | UndefinedMetric] = {}
        if not dd.any():
            out["precision"] = UndefinedMetric("precision", "no row predicted positive")
        p, r, f, _ = precision_recall_fscore_support(
            y, dd, sample_weight=w, average="binary", pos_label=1, zero_division=np.nan
        )
        for name, value in zip(names, (p, r, f), strict=True):
            if name not in out:
                out[name] = (
                    UndefinedMetric(name, "zero division") if np.isnan(value) else float(value)
                )
        return out

    def _one_class(self, y: NDArray[Any]) -> str:
        if y.size == 0:
            return "no row has a known outcome at the horizon"
        if y.min() == y.max():
            kind = "an event by" if y[0] == 1 else "no event by"
            return (
                f"one class: every row with a known outcome had {kind} the horizon {self.horizon:g}"
            )
        return ""

    def event_share(self) -> float:
        """IPCW estimate of P(event by the horizon) (weighted share of cases)."""
        total = float(self.weights.sum())
        return float(self.weights[self.labels == 1].sum() / total) if total > 0 else float("nan")

    def baselines(self) -> dict[str, float | UndefinedMetric]:
        """What a trivial predictor gets: ``f1``/``precision``/``recall`` of predicting every
        row positive, ``brier`` of predicting the Kaplan-Meier event share for every row."""
        used = self.labels >= 0
        reason = self._one_class(self.labels[used])
        out: dict[str, float | UndefinedMetric] = {}
        if reason:
            for n in ("f1", "precision", "recall"):
                out[n] = UndefinedMetric(n, reason)
        else:
            pi = self.event_share()
            out["precision"], out["recall"], out["f1"] = pi, 1.0, 2 * pi / (1 + pi)
        out["brier"] = self.brier(np.full(self.n_rows, min(1.0, max(0.0, self.km_event_share))))
        return out


def at_horizon(
    durations: ArrayLike,
    events: ArrayLike,
    horizon: float,
    *,
    train_durations: ArrayLike,
    train_events: ArrayLike,
) -> AtHorizon:
    """Labels and IPCW weights of the rows at ``horizon``; ``G`` from the training rows.

    Raises:
        ValueError: bad input, named.
        UndefinedMetric (``brier``): the horizon is at or beyond the end of these rows'
            follow-up or of the training rows' (the censoring distribution is unknown there),
            or the censoring survival is zero at the horizon.
    """
    from sksurv.nonparametric import CensoringDistributionEstimator
    from sksurv.util import Surv

    times = as_durations("durations", durations)
    observed = as_events("events", events)
    same_length(durations=times, events=observed)
    train_times = as_durations("train_durations", train_durations)
    train_observed = as_events("train_events", train_events)
    same_length(train_durations=train_times, train_events=train_observed)
    h = as_number("horizon", horizon, lo=0.0, lo_inclusive=False)
    end = float(times.max())
    if h >= end:
        raise UndefinedMetric(
            "brier", f"horizon {h:g} is at or beyond the end of these rows' follow-up ({end:g})"
        )
    train_end = float(train_times.max())
    if h > train_end:
        raise UndefinedMetric(
            "brier",
            f"horizon {h:g} is beyond the follow-up of the training rows ({train_end:g}): "
            "the censoring distribution is unknown there",
        )
    if not train_observed.any():
        raise UndefinedMetric("brier", "every training row is censored")
    cens = CensoringDistributionEstimator().fit(Surv.from_arrays(train_observed, train_times))
    case = observed & (times <= h)
    control = times > h
    g_h = float(cens.predict_proba(np.array([h]))[0])
    if g_h <= 0:
        raise UndefinedMetric("brier", f"no training row stays uncensored up to {h:g}")
    weights = np.zeros(len(times))
    weights[control] = 1.0 / g_h
    if case.any():
        g = cens.predict_proba(times[case])
        weights[case] = np.where(g > 0, 1.0 / np.where(g > 0, g, 1.0), 0.0)
    labels = np.full(len(times), -1, dtype=np.int8)
    labels[case], labels[control] = 1, 0
    return AtHorizon(h, labels, weights, km_event_share(times, observed, h))
