"""Windowed performance of a model version on matured predictions.

Windows start at the version's promotion and have a fixed length, so window ``k`` is the same
span on every pass (its metrics are logged at step ``k``, and a trigger's dedupe key names it).

A survival prediction's label **matures** at the horizon: 1 when the event happened by then,
0 when the follow-up reached it, unknown when the entity was censored earlier. Precision and
recall count matured rows only (a row censored before the horizon is never a negative); the
Brier score is the gates' IPCW Brier at the horizon over every matched row, its censoring
distribution estimated from all matched outcomes of the version; the C-index is the gates'.
Every metric is computed by :mod:`mlflow_plugin.metrics`; an undefined one is ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["METRICS", "Window", "matured_labels", "window_metrics", "window_spans"]

#: Realised metrics per window, as the gates name them.
METRICS = ("brier", "c_index", "precision", "recall")


@dataclass(frozen=True)
class Window:
    """One window of a version's life.

    Attributes:
        index: 0 for the first window after promotion (the MLflow step).
        start, end: the span ``[start, end)``, UTC.
        complete: whether ``end`` has passed (only complete windows are judged).
        metrics: realised ``brier``, ``c_index``, ``precision``, ``recall`` (None: undefined).
        counts: ``rows``, ``requests``, ``errors``, ``guardrail_flags``, ``matched``, ``matured``.
    """

    index: int
    start: datetime
    end: datetime
    complete: bool
    metrics: dict[str, float | None] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """A stable name of the window (for dedupe keys): its start, ISO-8601."""
        return self.start.strftime("%Y-%m-%dT%H:%M:%SZ")

    @property
    def rates(self) -> dict[str, float]:
        rows = self.counts.get("rows", 0)
        answered_or_failed = rows + self.counts.get("errors", 0)
        return {
            "error_rate": self.counts.get("errors", 0) / answered_or_failed
            if answered_or_failed
            else 0.0,
            "guardrail_rate": self.counts.get("guardrail_flags", 0) / rows if rows else 0.0,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "complete": self.complete,
            "metrics": self.metrics,
            "counts": self.counts,
            **self.rates,
        }


def window_spans(
    origin: datetime, now: datetime, length: timedelta
) -> list[tuple[int, datetime, datetime]]:
    """``(index, start, end)`` of every window from ``origin`` up to the one holding ``now``."""
    if now < origin:
        return []
    count = int((now - origin) / length) + 1
    return [(k, origin + k * length, origin + (k + 1) * length) for k in range(count)]


def matured_labels(
    durations: np.ndarray, events: np.ndarray, horizon: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(label, matured)``: 1 if the event happened by ``horizon``; matured when that is known
    (event by the horizon, or follow-up reaching it)."""
    d = np.asarray(durations, dtype=float)
    e = np.asarray(events).astype(bool)
    label = e & (d <= horizon)
    return label.astype(int), label | (d >= horizon)


def window_metrics(
    frame: pd.DataFrame,
    *,
    horizon: float,
    decision_threshold: float,
    censoring: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[dict[str, float | None], int]:
    """Realised metrics of the matched rows in ``frame`` and how many rows matured.

    Args:
        frame: rows of :meth:`OutcomeStore.matched` (``risk``, ``survival``, ``duration``,
            ``event``, ``label``).
        horizon: the version's horizon.
        decision_threshold: predict "event by the horizon" when its probability reaches this.
        censoring: ``(durations, events)`` for the IPCW censoring distribution (default: the
            frame's own rows).
    """
    from mlflow_plugin import metrics

    out: dict[str, float | None] = dict.fromkeys(METRICS)
    if frame.empty:
        return out, 0
    survival = (
        frame["duration"].notna().to_numpy() if "duration" in frame else np.zeros(len(frame), bool)
    )
    rows = frame[survival] if survival.any() else frame[frame["label"].notna()]
    rows = rows[rows["survival"].notna()]
    if rows.empty:
        return out, 0
    p_event = np.clip(1.0 - rows["survival"].to_numpy(dtype=float), 0.0, 1.0)
    if survival.any():
        durations = rows["duration"].to_numpy(dtype=float)
        events = rows["event"].to_numpy().astype(bool)
        labels, matured = matured_labels(durations, events, horizon)
        train_d, train_e = censoring if censoring is not None else (durations, events)
        out["brier"] = _attempt(
            metrics.survival_brier_loss,
            durations,
            events,
            1.0 - p_event,
            horizon,
            train_durations=train_d,
            train_events=train_e,
        )
        risk = rows["risk"].to_numpy(dtype=float)
        if np.isfinite(risk).all():
            out["c_index"] = _attempt(metrics.c_index_score, durations, events, risk)
    else:
        labels = rows["label"].to_numpy().astype(int)
        matured = np.ones(len(rows), bool)
        out["brier"] = _attempt(metrics.brier_loss, labels, p_event)
    if matured.any():
        decided = (p_event[matured] >= decision_threshold).astype(float)
        y = labels[matured]
        # Undefined (not 0) when nothing is predicted positive or nothing happened.
        out["precision"] = _attempt(metrics.precision_score, y, decided, zero_division=float("nan"))
        out["recall"] = _attempt(metrics.recall_score, y, decided, zero_division=float("nan"))
    return out, int(matured.sum())


def _attempt(fn: Any, *args: Any, **kwargs: Any) -> float | None:
    try:
        return float(fn(*args, **kwargs))
    except ValueError:  # UndefinedMetric included: no value on these rows
        return None
