"""Blue-green mirroring: the ``preview`` version scores a copy of live traffic, off the request path.

After the client's answer is ready, :meth:`Mirror.submit` puts a reference to the request and the
answer on a bounded queue and returns (a full queue drops the mirror and counts it): the client's
answer is never delayed, changed or failed by the preview. One background thread takes what is
queued within ``linger`` (20 ms) - one request, or many under load, scored with one ``predict``
and split back by row counts - scores it with the preview version on a copy of the input,
compares the preview's answer with the client's (counted as agreements and disagreements), logs
the preview's rows to the prediction log with ``route='preview'`` (errors too) and discards the
answer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from mlflow_plugin._internal.background import BackgroundQueue
from mlflow_plugin.serving._outputs import one_line, split_rows
from mlflow_plugin.serving._prediction_log import PredictionLog, PredictionRecord

__all__ = ["Mirror", "same_answer"]


@dataclass(frozen=True)
class _Job:
    version: str
    role: str
    model: Any
    data: Any
    params: dict[str, Any] | None
    request_id: str
    answer: Any


class Mirror:
    """A bounded queue and one background scorer for shadow routes.

    Args:
        model_name: registered model name (for the prediction log).
        prediction_log: where the shadow's rows go (None: not logged).
        guardrails: output rules whose broken rules are logged as the row's flags.
        max_queue: mirrored requests waiting before new ones are dropped (counted).
        max_batch: most queued requests scored with one ``predict``.
        linger: seconds the scorer waits for more mirrors before a ``predict``, so that under
            load one call carries many requests (the preview costs CPU, not client latency).
    """

    def __init__(
        self,
        model_name: str,
        *,
        prediction_log: PredictionLog | None = None,
        guardrails: Any = None,
        max_queue: int = 1000,
        max_batch: int = 64,
        linger: float = 0.02,
    ) -> None:
        self.model_name = model_name
        self.prediction_log = prediction_log
        self.guardrails = guardrails
        self.max_batch = max(1, max_batch)
        self.linger = linger
        self._scorer = BackgroundQueue(
            self._score,
            name="mirror",
            max_queue=max(1, max_queue),
            max_batch=self.max_batch,
            linger=linger,
        )
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(
            ("submitted", "dropped", "scored", "predicts", "agree", "disagree", "errors"), 0
        )

    # -- request path --------------------------------------------------------------------
    def submit(
        self,
        route: Any,
        data: Any,
        params: dict[str, Any] | None,
        request_id: str,
        answer: Any,
    ) -> bool:
        """Queue a mirror of one answered request without waiting; False (counted) if dropped."""
        job = _Job(
            route.deployment.version,
            route.role,
            route.deployment.model,
            data,
            params,
            request_id,
            answer,
        )
        # The first mirror starts the thread: a server without a preview has none.
        if not self._scorer.started and not self._scorer.closed:
            self._scorer.start()
        if not self._scorer.put(job):
            self._bump("dropped")
            return False
        self._bump("submitted")
        return True

    # -- observing -----------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        """submitted, dropped, scored, predicts, agree, disagree, errors, queued."""
        with self._lock:
            out = dict(self._counts)
        out["queued"] = self._scorer.qsize()
        return out

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued mirror is scored; False on timeout."""
        return self._scorer.flush(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Score what is queued (up to ``timeout``) and stop."""
        self._scorer.close(timeout)

    # -- scorer --------------------------------------------------------------------------
    def _score(self, jobs: list[_Job]) -> None:
        groups: dict[int, list[_Job]] = {}
        for job in jobs:
            groups.setdefault(id(job.model), []).append(job)
        for group in groups.values():
            if len(group) > 1 and self._score_together(group):
                continue
            for job in group:
                self._score_one(job)

    def _score_together(self, group: list[_Job]) -> bool:
        """One ``predict`` for tabular jobs without params; False when they must go one by one."""
        import pandas as pd

        if any(j.params or not isinstance(j.data, pd.DataFrame) or not len(j.data) for j in group):
            return False
        t0 = time.perf_counter()
        try:
            combined = pd.concat([j.data for j in group], ignore_index=True)
            self._bump("predicts")
            output = group[0].model.predict(combined)
            parts = split_rows(output, [len(j.data) for j in group])
        except Exception:  # noqa: BLE001 - one request may be what breaks it: score alone
            return False
        if parts is None:
            return False
        latency = time.perf_counter() - t0
        for job, part in zip(group, parts, strict=True):
            self._record(job, part, None, latency)
        return True

    def _score_one(self, job: _Job) -> None:
        data = job.data.copy() if hasattr(job.data, "copy") else job.data
        t0 = time.perf_counter()
        self._bump("predicts")
        try:
            output = job.model.predict(data, job.params) if job.params else job.model.predict(data)
        except Exception as exc:  # noqa: BLE001 - a failing preview is recorded, never raised
            self._record(
                job,
                None,
                f"{job.role} version {job.version} raised in predict: {one_line(exc)}",
                time.perf_counter() - t0,
            )
            return
        self._record(job, output, None, time.perf_counter() - t0)

    def _record(self, job: _Job, output: Any, error: str | None, latency: float) -> None:
        flags: tuple[str, ...] = ()
        if error is None:
            if self.guardrails is not None:
                flags = tuple(v.rule for v in self.guardrails.check(output))
            self._bump("agree" if same_answer(output, job.answer) else "disagree")
        else:
            self._bump("errors")
        self._bump("scored")
        if self.prediction_log is not None:
            self.prediction_log.log(
                PredictionRecord(
                    job.request_id,
                    time.time(),
                    self.model_name,
                    job.version,
                    job.role,
                    False,
                    latency,
                    job.data,
                    output,
                    error,
                    flags,
                )
            )

    def _bump(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1


def same_answer(a: Any, b: Any) -> bool:
    """Whether two model outputs agree: same shape and columns, numbers equal within 1e-9
    (NaN equals NaN); anything else compared as values."""
    import numpy as np
    import pandas as pd

    try:
        if isinstance(a, pd.DataFrame) or isinstance(b, pd.DataFrame):
            if not (isinstance(a, pd.DataFrame) and isinstance(b, pd.DataFrame)):
                return False
            if a.shape != b.shape or list(a.columns) != list(b.columns):
                return False
        left, right = np.asarray(a), np.asarray(b)
        if left.shape != right.shape:
            return False
        if left.dtype.kind in "fiub" and right.dtype.kind in "fiub":
            return bool(np.allclose(left, right, rtol=1e-9, atol=1e-12, equal_nan=True))
        return bool(np.array_equal(left.astype(object), right.astype(object)))
    except Exception:  # noqa: BLE001 - incomparable outputs disagree
        return False
