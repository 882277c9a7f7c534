"""Answering several requests with one ``predict`` call: the model's half of adaptive
batching (:mod:`._batching` gathers the requests; :class:`BatchScorer` scores them)."""

from __future__ import annotations

import threading
from typing import Any

from mlflow_plugin.errors import MlflowPluginError
from mlflow_plugin.serving._guardrails import Violation
from mlflow_plugin.serving._outputs import split_rows
from mlflow_plugin.serving._routing import Plan
from mlflow_plugin.serving._scoring import Scorer

__all__ = ["BatchScorer"]


class BatchScorer:
    """Scoring a batch of requests by plan, each request settled on its own rows by ``scorer``
    (which also answers what cannot be settled in the batch)."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        # Scores a batch's second plan (a canary's share) beside the first: created on the
        # first split batch, so a server without a canary never starts it.
        self._groups_pool: Any = None
        self._pool_lock = threading.Lock()

    def close(self) -> None:
        """Stop the second plan's thread (if it was started)."""
        if self._groups_pool is not None:
            self._groups_pool.shutdown(wait=False)

    def score_batch(self, requests: list[tuple[Any, str, float, tuple[str, ...]]]) -> list[Any]:
        """Answer several requests with one ``predict`` call (adaptive batching).

        Each request is ``(frame, request_id, t0, input_flags)`` with its input guardrails
        already applied. The frames are concatenated, scored once by the primary route and the
        output is split back by row counts; each request is then guardrailed, counted and
        logged on its own rows. Whatever cannot be settled in the batch (the model raises on
        the batch, the output is not row-aligned, a request's rows break a guardrail, no
        primary route) is scored alone, so a bad request affects only itself.

        Returns:
            One :class:`Prediction` or exception (``BadInput``/``ModelUnavailable``) per request,
            in order.
        """
        # Requests split by plan (a canary's share and the rest); each group is one batch.
        scorer = self.scorer
        fleet = scorer.follower.fleet
        groups: dict[int, tuple[Plan, list[int]]] = {}
        for i, item in enumerate(requests):
            plan = scorer.router.plan(fleet, item[1], scorer.entity_key(item[0]))
            groups.setdefault(id(plan), (plan, []))[1].append(i)
        out: list[Any] = [None] * len(requests)
        jobs = list(groups.values())
        if not jobs:
            return out
        # A canary's share and the champion's are two predicts on two models: run them side
        # by side (predict releases the GIL in numpy/pandas), not one after the other - a
        # batch then takes about the longer predict, not their sum.
        pending = [
            (indices, self._pool().submit(self._score_group, plan, [requests[i] for i in indices]))
            for plan, indices in jobs[1:]
        ]
        plan, indices = jobs[0]
        done = [(indices, self._score_group(plan, [requests[i] for i in indices]))]
        done += [(indices, future.result()) for indices, future in pending]
        for indices, results in done:
            for i, result in zip(indices, results, strict=True):
                out[i] = result
        return out

    def _pool(self) -> Any:
        # Its own pool, not mlflow_plugin._internal.concurrency's: it lives as long as this
        # model, runs predicts (CPU-bound, seconds) rather than round trips to the tracking
        # server, and must not queue behind (or hold up) the registry calls sharing that pool.
        pool = self._groups_pool
        if pool is None:
            from concurrent.futures import ThreadPoolExecutor

            with self._pool_lock:
                if self._groups_pool is None:
                    self._groups_pool = ThreadPoolExecutor(2, thread_name_prefix="serve-plan")
                pool = self._groups_pool
        return pool

    def _score_group(
        self, plan: Plan, requests: list[tuple[Any, str, float, tuple[str, ...]]]
    ) -> list[Any]:
        import pandas as pd

        scorer = self.scorer

        def alone(item: tuple[Any, str, float, tuple[str, ...]]) -> Any:
            try:
                return scorer.score_checked(item[0], None, item[1], item[2], item[3])
            except MlflowPluginError as exc:
                return exc

        if len(requests) == 1 or not plan.routes or plan.skipped:
            return [alone(r) for r in requests]
        route = plan.routes[0]
        sizes = [len(r[0]) for r in requests]
        try:
            combined = pd.concat([r[0] for r in requests], ignore_index=True)
            output = route.deployment.model.predict(combined)
            parts = split_rows(output, sizes)
        except Exception:  # noqa: BLE001 - a request in the batch may be what breaks it
            parts = None
        # The rules hold row by row: a batch that passes as a whole passes in every part.
        clean = parts is not None and not scorer.guardrails.check(output)
        if parts is None:
            scorer.observer.count("batch_splits")
            return [alone(r) for r in requests]
        scorer.observer.count("batches")
        scorer.observer.count("batched_requests", n=len(requests))
        out: list[Any] = []
        for item, part in zip(requests, parts, strict=True):
            violations: tuple[Violation, ...] = () if clean else scorer.guardrails.check(part)
            if violations:
                scorer.observer.count_violations(violations, route.deployment.version)
                if scorer.guardrails.enforce:
                    out.append(alone(item))
                    continue
            prediction = scorer.answer(
                item[0],
                part,
                item[1],
                item[2],
                route.role,
                route.deployment.version,
                violations,
                item[3],
                [],
            )
            scorer.mirror_to(plan, item[0], None, prediction)
            out.append(prediction)
        return out
