"""``ChampionModel``: serve ``models:/NAME@champion``, follow the alias, survive a bad champion.

A background thread reads the registered model (one call: aliases and tags) every
``poll_interval`` seconds, or sooner when :meth:`ChampionModel.trigger` is called (e.g. by a
registry webhook). The :class:`~mlflow_plugin.serving._routing.Router` names the versions to keep
loaded; missing ones are loaded on that thread while requests go on being answered by the current
snapshot, and the new snapshot replaces the old one in a single assignment. A request reads the
snapshot once, so it is answered wholly by the old or wholly by the new version, and never waits
for a load.

When the champion cannot load, raises in ``predict`` or breaks a guardrail, the next route of the
plan (the fallback, when enabled) answers; ``error`` and ``recovery`` events go to the ledger,
rate-limited. When no route can answer, :class:`~mlflow_plugin.ModelUnavailable` says why; it
never answers with a version the registry did not name.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlflow_plugin._errors import BadInput, IntegrityError, MlflowPluginError, ModelUnavailable
from mlflow_plugin._types import CHAMPION, FALLBACK, check_model_name
from mlflow_plugin.controller import CANARY, FALLBACK_ENABLED_TAG, RolloutState
from mlflow_plugin.serving._events import EventReporter
from mlflow_plugin.serving._guardrails import Guardrails, Violation
from mlflow_plugin.serving._inputs import InputGuard, ModelInputs
from mlflow_plugin.serving._mirror import Mirror
from mlflow_plugin.serving._prediction_log import ENTITY_KEYS_ATTR, PredictionLog, PredictionRecord
from mlflow_plugin.serving._rollout import RolloutRouter, rollout_status
from mlflow_plugin.serving._routing import Deployment, Fleet, LoadFailure, Plan, Router

__all__ = ["ChampionModel", "Prediction"]

_log = logging.getLogger(__name__)
Loader = Callable[[str, str], Any]


@dataclass(frozen=True)
class Prediction:
    """One answered request.

    Attributes:
        output: what the model's ``predict`` returned.
        version: the model version that answered.
        role: the role it played (``champion``, ``fallback`` ...).
        request_id: the request's id (also in the prediction log).
        latency_s: seconds spent in :meth:`ChampionModel.score`.
        fallback: True when the first route of the plan did not answer.
        flags: guardrails broken by the answer that did not stop it (``latency_budget``, or
            every rule when guardrails only observe).
    """

    output: Any
    version: str
    role: str
    request_id: str
    latency_s: float
    fallback: bool = False
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Cause:
    role: str
    version: str
    kind: str  # load | predict | guardrail | missing
    detail: str

    def describe(self) -> str:
        what = {
            "load": "could not be loaded",
            "predict": "raised in predict",
            "guardrail": "broke a guardrail",
            "missing": "is not set",
        }[self.kind]
        name = f"{self.role} version {self.version}" if self.version else f"{self.role} alias"
        return f"{name} {what}" + (f": {self.detail}" if self.detail else "")


class ChampionModel:
    """The champion of a registered model, hot-swapped on promotion, with a fallback.

    Args:
        model_name: registered model name.
        tracking_uri: tracking/registry server; default ``$MLFLOW_TRACKING_URI``.
        poll_interval: seconds between two registry reads.
        guardrails: output rules (default :class:`Guardrails()`; :meth:`Guardrails.off` for none).
        prediction_log: where every prediction is logged (None: not logged). Closed by
            :meth:`close`.
        router: routing policy (default :class:`~mlflow_plugin.serving._rollout.RolloutRouter`:
            the champion, and a rollout's canary / preview / previous when the registry has one).
        event_interval: seconds between two ledger events of the same kind.
        retry_interval: seconds before a version that failed to load is tried again.
        registry: registry adapter (default ``Registry(tracking_uri)``; tests pass an in-memory one).
        ledger: where events go (default the ledger on ``tracking_uri``).
        loader: ``(model_name, version) -> model`` (default: download ``models:/NAME/VERSION``
            and ``mlflow.pyfunc.load_model`` it).
        watch: start the background watcher.
        require_ready: raise at construction when no version can answer.
        input_guard: input rules (default :class:`InputGuard()`: refuse nulls, non-finite,
            non-numeric and far-out-of-range values with :class:`BadInput`).
        verify: check the downloaded files against the version's ``mlflow_plugin.sha256``
            before loading them (the default loader only; see :mod:`mlflow_plugin.integrity`).
        key_column: input column whose first row's value is a request's entity key for the
            canary split when no ``X-Entity-Key`` was sent (default the prediction log's).
        mirror_queue: mirrored (blue-green) requests waiting to be scored before new ones are
            dropped.

    Raises:
        ModelUnavailable: ``require_ready`` and neither champion nor fallback could be loaded.
        NotFound: the registered model does not exist.
        RegistryUnavailable: the tracking server could not be reached at start.
    """

    def __init__(
        self,
        model_name: str,
        *,
        tracking_uri: str | None = None,
        poll_interval: float = 5.0,
        guardrails: Guardrails | None = None,
        prediction_log: PredictionLog | None = None,
        router: Router | None = None,
        event_interval: float = 60.0,
        retry_interval: float = 30.0,
        registry: Any = None,
        ledger: Any = None,
        loader: Loader | None = None,
        watch: bool = True,
        require_ready: bool = True,
        input_guard: InputGuard | None = None,
        verify: bool = True,
        key_column: str | None = None,
        mirror_queue: int = 1000,
    ) -> None:
        self.name = check_model_name(model_name)
        if not poll_interval > 0:
            raise BadInput(f"poll_interval must be > 0, got {poll_interval!r}")
        if registry is None:
            from mlflow_plugin.registry import Registry

            registry = Registry(tracking_uri)
        self.registry = registry
        self.tracking_uri: str = getattr(registry, "uri", tracking_uri or "")
        self.poll_interval = float(poll_interval)
        self.retry_interval = float(retry_interval)
        self.guardrails = guardrails if guardrails is not None else Guardrails()
        self.prediction_log = prediction_log
        self.input_guard = input_guard if input_guard is not None else InputGuard()
        self.verify = verify
        self._degraded = False  # a backup route answered last: logged once per change
        self.router: Router = router if router is not None else RolloutRouter()
        self.key_column = key_column or getattr(prediction_log, "key_column", None)
        self.mirror = Mirror(
            self.name,
            prediction_log=prediction_log,
            guardrails=self.guardrails,
            max_queue=mirror_queue,
        )
        self.events = EventReporter(
            self.name, ledger=ledger, tracking_uri=self.tracking_uri, interval=event_interval
        )
        self._loader = loader or self._load_pyfunc
        self._workdir = tempfile.mkdtemp(prefix="mlflow-plugin-serve-")
        self._fleet = Fleet()
        self._counts: Counter[tuple[str, ...]] = Counter()
        self._counts_lock = threading.Lock()
        # Scores a batch's second plan (a canary's share) beside the first: created on the
        # first split batch, so a server without a canary never starts it.
        self._groups_pool: Any = None
        self._refresh_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        # Request ids: unique across processes and restarts, cheaper than a uuid4 per request.
        self._id_prefix = uuid.uuid4().hex[:16]
        self._ids = itertools.count(1)
        self._warned: dict[tuple[str, str], float] = {}
        self.last_swap: dict[str, Any] | None = None
        self.last_poll: float | None = None
        self.poll_error: str | None = None
        self.started_at = time.time()
        try:
            self.refresh(raise_errors=True)
            if require_ready and not self.router.plan(self._fleet, "").routes:
                raise ModelUnavailable(f"{self.name}: {self._why_unavailable(self._fleet)}")
        except BaseException:
            self.close()
            raise
        self._thread: threading.Thread | None = None
        if watch:
            self._thread = threading.Thread(
                target=self._watch, name=f"watch-{self.name}", daemon=True
            )
            self._thread.start()

    # -- answering -----------------------------------------------------------------------
    @property
    def version(self) -> str | None:
        """The version that would answer a request now (None if none can)."""
        routes = self.router.plan(self._fleet, "").routes
        return routes[0].deployment.version if routes else None

    @property
    def metadata(self) -> Any:
        """The MLmodel metadata of the version that would answer now (for request parsing)."""
        routes = self.router.plan(self._fleet, "").routes
        return routes[0].deployment.metadata if routes else None

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """Like ``PyFuncModel.predict``: the output of whichever version answers."""
        return self.score(data, params).output

    def check_input(self, data: Any) -> tuple[str, ...]:
        """Apply the input guardrails for the version that would answer now.

        Returns:
            Flags of tolerated problems (``out_of_range`` when guardrails only observe).

        Raises:
            BadInput: a value the model cannot score, naming its column and row.
        """
        if self.input_guard.mode == "off":
            return ()
        routes = self.router.plan(self._fleet, "").routes
        inputs = routes[0].deployment.inputs if routes else None
        if inputs is None:
            inputs = _NO_INPUTS
        try:
            flags = self.input_guard.check(data, inputs)
        except BadInput:
            self._count("bad_input")
            raise
        for flag in flags:
            self._count("input_guardrail", flag)
        return flags

    def new_request_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids)}"

    def score(
        self,
        data: Any,
        params: dict[str, Any] | None = None,
        *,
        request_id: str | None = None,
        input_flags: tuple[str, ...] | None = None,
    ) -> Prediction:
        """Answer one request and say who answered.

        Args:
            data: the model input.
            params: inference parameters.
            request_id: the request's id (default a new one).
            input_flags: the result of :meth:`check_input` when the caller already applied the
                input guardrails (the HTTP server checks the raw request); None checks here.

        Raises:
            BadInput: the input breaks an input guardrail or does not match the model's
                signature (no fallback is tried: another version would refuse it too).
            ModelUnavailable: no version could answer.
        """
        t0 = time.perf_counter()
        rid = request_id or self.new_request_id()
        in_flags = self.check_input(data) if input_flags is None else input_flags
        return self._score(data, params, rid, t0, in_flags)

    def _score(
        self,
        data: Any,
        params: dict[str, Any] | None,
        rid: str,
        t0: float,
        in_flags: tuple[str, ...],
    ) -> Prediction:
        plan: Plan = self.router.plan(self._fleet, rid, self._entity_key(data))
        causes = [
            _Cause(role, f.version, "missing" if not f.version else "load", f.error)
            for role, f in plan.skipped
        ]
        for cause in causes:
            if cause.role == CANARY:
                self._log_attempt(rid, data, cause, 0.0, ())
        for route in plan.routes:
            deployment = route.deployment
            t_route = time.perf_counter()
            try:
                output = (
                    deployment.model.predict(data, params)
                    if params
                    else deployment.model.predict(data)
                )
            except Exception as exc:  # noqa: BLE001 - any model failure is a reason to fall back
                if getattr(exc, "error_class", None) == "SCHEMA_ENFORCEMENT_FAILED":
                    self._count("bad_input")
                    raise BadInput(_schema_reason(exc)) from None
                cause = _Cause(route.role, deployment.version, "predict", _one_line(exc))
                causes.append(cause)
                if route.role == CANARY:
                    self._log_attempt(rid, data, cause, time.perf_counter() - t_route, in_flags)
                continue
            violations: tuple[Violation, ...] = self.guardrails.check(output)
            if violations:
                self._count_violations(violations, deployment.version)
                if self.guardrails.enforce:
                    detail = "; ".join(str(v) for v in violations)
                    cause = _Cause(route.role, deployment.version, "guardrail", detail)
                    causes.append(cause)
                    if route.role == CANARY:
                        flags = in_flags + tuple(v.rule for v in violations)
                        self._log_attempt(rid, data, cause, time.perf_counter() - t_route, flags)
                    continue
            prediction = self._answer(
                data, output, rid, t0, route.role, deployment.version, violations, in_flags, causes
            )
            self._mirror(plan, data, params, prediction)
            return prediction
        message = self._unavailable_message(causes)
        self._count("unavailable")
        for cause in causes:
            self._report_error(cause)
        if self.prediction_log is not None:
            self.prediction_log.log(
                PredictionRecord(
                    rid,
                    time.time(),
                    self.name,
                    None,
                    None,
                    False,
                    time.perf_counter() - t0,
                    data,
                    None,
                    message,
                    tuple(c.kind for c in causes),
                )
            )
        raise ModelUnavailable(message)

    def _answer(
        self,
        data: Any,
        output: Any,
        rid: str,
        t0: float,
        role: str,
        version: str,
        violations: tuple[Violation, ...],
        in_flags: tuple[str, ...],
        causes: list[_Cause],
    ) -> Prediction:
        """Count, log and wrap one request's answer."""
        latency = time.perf_counter() - t0
        slow = self.guardrails.check_latency(latency)
        if slow is not None:
            self._count_violations((slow,), version)
        flags = in_flags + tuple(v.rule for v in violations) + ((slow.rule,) if slow else ())
        fell_back = bool(causes)
        if fell_back:
            self._on_fallback(causes, role, version)
        elif self._degraded and role == CHAMPION:
            self._degraded = False
            _log.warning("%s: recovered: champion version %s answers again", self.name, version)
        with self._counts_lock:
            self._counts["predictions", version, role] += 1
        if self.prediction_log is not None:
            self.prediction_log.log(
                PredictionRecord(
                    rid,
                    time.time(),
                    self.name,
                    version,
                    role,
                    fell_back,
                    latency,
                    data,
                    output,
                    None,
                    flags,
                )
            )
        return Prediction(output, version, role, rid, latency, fell_back, flags)

    def _entity_key(self, data: Any) -> str | None:
        """The request's entity key for the canary split: the first ``X-Entity-Key``, else the
        key column's value in the first row, else None (the request id decides)."""
        keys = getattr(data, "attrs", {}).get(ENTITY_KEYS_ATTR)
        if keys:
            return str(keys[0])
        column = self.key_column
        if column and column in getattr(data, "columns", ()) and len(data):
            value = data[column].iloc[0]
            return None if value is None or value != value else str(value)  # NaN != NaN
        return None

    def _log_attempt(
        self, rid: str, data: Any, cause: _Cause, latency: float, flags: tuple[str, ...]
    ) -> None:
        """A failed canary attempt is a row of its own (the rollout's analysis counts them)."""
        self._count("canary_failures", cause.kind)
        if self.prediction_log is not None:
            self.prediction_log.log(
                PredictionRecord(
                    rid,
                    time.time(),
                    self.name,
                    cause.version or None,
                    cause.role,
                    False,
                    latency,
                    data,
                    None,
                    cause.describe(),
                    flags,
                )
            )

    def _mirror(
        self, plan: Plan, data: Any, params: dict[str, Any] | None, prediction: Prediction
    ) -> None:
        for shadow in plan.shadows:
            self.mirror.submit(shadow, data, params, prediction.request_id, prediction.output)

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
        fleet = self._fleet
        groups: dict[int, tuple[Plan, list[int]]] = {}
        for i, item in enumerate(requests):
            plan = self.router.plan(fleet, item[1], self._entity_key(item[0]))
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
        pool = self._groups_pool
        if pool is None:
            from concurrent.futures import ThreadPoolExecutor

            with self._counts_lock:
                if self._groups_pool is None:
                    self._groups_pool = ThreadPoolExecutor(2, thread_name_prefix="serve-plan")
                pool = self._groups_pool
        return pool

    def _score_group(
        self, plan: Plan, requests: list[tuple[Any, str, float, tuple[str, ...]]]
    ) -> list[Any]:
        import pandas as pd

        def alone(item: tuple[Any, str, float, tuple[str, ...]]) -> Any:
            try:
                return self._score(item[0], None, item[1], item[2], item[3])
            except MlflowPluginError as exc:
                return exc

        if len(requests) == 1 or not plan.routes or plan.skipped:
            return [alone(r) for r in requests]
        route = plan.routes[0]
        sizes = [len(r[0]) for r in requests]
        try:
            combined = pd.concat([r[0] for r in requests], ignore_index=True)
            output = route.deployment.model.predict(combined)
            parts = _split(output, sizes)
        except Exception:  # noqa: BLE001 - a request in the batch may be what breaks it
            parts = None
        # The rules hold row by row: a batch that passes as a whole passes in every part.
        clean = parts is not None and not self.guardrails.check(output)
        if parts is None:
            self._count("batch_splits")
            return [alone(r) for r in requests]
        with self._counts_lock:
            self._counts[("batches",)] += 1
            self._counts[("batched_requests",)] += len(requests)
        out: list[Any] = []
        for item, part in zip(requests, parts, strict=True):
            violations: tuple[Violation, ...] = () if clean else self.guardrails.check(part)
            if violations:
                self._count_violations(violations, route.deployment.version)
                if self.guardrails.enforce:
                    out.append(alone(item))
                    continue
            prediction = self._answer(
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
            self._mirror(plan, item[0], None, prediction)
            out.append(prediction)
        return out

    # -- following the registry ----------------------------------------------------------
    def trigger(self) -> None:
        """Check the registry now instead of at the next poll (webhooks call this)."""
        self._wake.set()

    def refresh(self, *, raise_errors: bool = False) -> bool:
        """Read the registry once and load/swap what changed; True if anything was swapped."""
        with self._refresh_lock:
            try:
                info = self.registry.get_model(self.name)
            except MlflowPluginError as exc:
                self.poll_error = str(exc)
                self._count("poll_errors")
                if raise_errors:
                    raise
                _log.warning("%s: registry poll failed, serving on: %s", self.name, exc)
                return False
            self.last_poll = time.time()
            self.poll_error = None
            wanted = self.router.wanted(info)
            enabled = info.tags.get(FALLBACK_ENABLED_TAG, "false") == "true"
            rollout = RolloutState.from_tags(info.tags)  # the same call: no extra round trip
            old = self._fleet
            loaded: dict[str, Deployment] = {}
            failed: dict[str, LoadFailure] = {}
            pending: list[tuple[str, str]] = []
            now = time.time()
            for role, version in wanted.items():
                reuse = old.by_version(version) or _find(loaded, version)
                if reuse is not None:
                    loaded[role] = reuse
                    continue
                failure = next((f for f in old.failed.values() if f.version == version), None)
                if failure is not None and now - failure.at < self.retry_interval:
                    failed[role] = failure
                    continue
                pending.append((role, version))
                if role in old.loaded:
                    # Keep answering with the current version until the new one is loaded.
                    loaded[role] = old.loaded[role]
            changed = self._publish(Fleet(wanted, dict(loaded), dict(failed), enabled, rollout))
            for role, version in pending:
                result = self._load(version)
                if isinstance(result, Deployment):
                    loaded[role] = result
                    failed.pop(role, None)
                else:
                    loaded.pop(role, None)
                    failed[role] = result
                    self._report_error(_Cause(role, version, "load", result.error))
                changed = (
                    self._publish(Fleet(wanted, dict(loaded), dict(failed), enabled, rollout))
                    or changed
                )
            return changed

    def _publish(self, fleet: Fleet) -> bool:
        old = self._fleet
        before = {r: d.version for r, d in old.loaded.items()}
        after = {r: d.version for r, d in fleet.loaded.items()}
        self._fleet = fleet  # the swap: one reference assignment, atomic for readers
        if before.get(CHAMPION) != after.get(CHAMPION) and CHAMPION in after:
            loaded = fleet.loaded[CHAMPION]
            self.last_swap = {
                "from": before.get(CHAMPION),
                "to": after[CHAMPION],
                "at": _iso(time.time()),
                "load_seconds": round(loaded.load_seconds, 3),
            }
            self._count("swaps")
            _log.info(
                "%s: swap: champion %s -> %s (loaded in %.2fs)",
                self.name,
                before.get(CHAMPION),
                after[CHAMPION],
                loaded.load_seconds,
            )
        kept = {d.version for d in fleet.loaded.values()}
        for deployment in old.loaded.values():
            if deployment.version not in kept:
                self._discard(deployment.version)
        return (
            before != after
            or old.failed.keys() != fleet.failed.keys()
            or old.rollout != fleet.rollout
        )

    def _load(self, version: str) -> Deployment | LoadFailure:
        t0 = time.perf_counter()
        try:
            model = self._loader(self.name, version)
        except Exception as exc:  # noqa: BLE001 - any load failure leaves the version unloaded
            self._count("load_failures")
            _log.warning("%s version %s could not be loaded: %s", self.name, version, exc)
            return LoadFailure(version, _one_line(exc), time.time())
        try:
            inputs = ModelInputs.of(getattr(model, "metadata", None))
        except Exception:  # noqa: BLE001 - no usable schema: only the generic checks apply
            inputs = _NO_INPUTS
        return Deployment(version, model, time.time(), time.perf_counter() - t0, inputs)

    def _load_pyfunc(self, name: str, version: str) -> Any:
        import mlflow.pyfunc

        from mlflow_plugin.integrity import (
            DIGEST_TAG,
            REQUIRE_SIGNED_TAG,
            download_version,
            verify_files,
        )

        target = f"{self._workdir}/v{version}-{uuid.uuid4().hex[:6]}"
        local = download_version(self.registry, name, version, target)
        if self.verify:
            # Before anything is unpickled: load_model below is the first to open a pickle.
            info = self.registry.get_version(name, version)
            required = self.registry.get_model(name).tags.get(REQUIRE_SIGNED_TAG, "") == "true"
            report = verify_files(local, dict(info.tags), require_signed=required)
            if not report.ok:
                raise IntegrityError(f"integrity check failed: {report.summary()}", report.problems)
            if report.trusted_on_first_use:
                _log.warning(
                    "%s version %s has no %s: loaded unverified (trust on first use)",
                    name,
                    version,
                    DIGEST_TAG,
                )
        return mlflow.pyfunc.load_model(local)

    def _discard(self, version: str) -> None:
        # Loaded models live in memory; their downloaded files are not needed any more.
        for path in _glob(self._workdir, f"v{version}-*"):
            shutil.rmtree(path, ignore_errors=True)

    def _watch(self) -> None:
        while not self._closed:
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            if self._closed:
                return
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - the watcher must outlive any single failure
                _log.exception("%s: refresh failed", self.name)

    # -- failures ------------------------------------------------------------------------
    def _on_fallback(self, causes: list[_Cause], role: str, version: str) -> None:
        first = causes[0]
        self._count("fallbacks", first.kind)
        if all(c.role == CANARY for c in causes):
            # The champion backing a failing canary up is the rollout working, not a degraded
            # server: the failure is counted, logged as its own row and reported (rate-limited).
            for cause in causes:
                self._report_error(cause)
            return
        if not self._degraded:
            self._degraded = True
            _log.warning(
                "%s: fallback: %s version %s answers because %s",
                self.name,
                role,
                version,
                first.describe(),
            )
        for cause in causes:
            self._report_error(cause)
        self.events.report(
            "recovery",
            f"{first.kind}:{first.version}->{version}",
            version=version,
            from_version=first.version,
            message=f"{role} version {version} answered: {first.describe()}",
            extra={"cause": first.kind, "role": role},
        )

    def _report_error(self, cause: _Cause) -> None:
        self.events.report(
            "error",
            f"{cause.kind}:{cause.version}",
            version=cause.version,
            from_version=cause.version if cause.role == CHAMPION else "",
            message=cause.describe(),
            extra={"cause": cause.kind, "role": cause.role},
        )

    def _unavailable_message(self, causes: list[_Cause]) -> str:
        if not causes:
            return f"{self.name}: {self._why_unavailable(self._fleet)}"
        fleet = self._fleet
        tail = "" if FALLBACK in fleet.wanted else "; no fallback enabled"
        return (
            f"{self.name}: no version could answer: "
            + "; ".join(c.describe() for c in causes)
            + tail
        )

    def _why_unavailable(self, fleet: Fleet) -> str:
        if CHAMPION not in fleet.wanted and not fleet.wanted:
            return "no champion alias and no enabled fallback"
        parts = [
            f"{role} version {f.version} could not be loaded: {f.error}"
            for role, f in fleet.failed.items()
        ]
        if FALLBACK not in fleet.wanted:
            parts.append("no fallback enabled")
        return "; ".join(parts) or "no version is loaded"

    # -- observing -----------------------------------------------------------------------
    def _count(self, *key: str) -> None:
        with self._counts_lock:
            self._counts[key] += 1

    def _count_violations(self, violations: tuple[Violation, ...], version: str) -> None:
        now = time.monotonic()
        with self._counts_lock:
            for v in violations:
                self._counts["guardrail", v.rule, version] += 1
            key = (violations[0].rule, version)
            # Log the first violation of a kind, then at most one line per 10 s (all are counted).
            if now - self._warned.get(key, -1e9) < 10.0:
                return
            self._warned[key] = now
        _log.warning("%s version %s: %s", self.name, version, "; ".join(map(str, violations)))

    def counts(self) -> dict[tuple[str, ...], int]:
        """A copy of the counters, keyed like ``("predictions", version, role)``,
        ``("fallbacks", cause)``, ``("guardrail", rule, version)``, ``("swaps",)`` ..."""
        with self._counts_lock:
            return dict(self._counts)

    def status(self) -> dict[str, Any]:
        """What serves and why, as a JSON-ready dict (the server's ``/health``)."""
        fleet = self._fleet
        plan = self.router.plan(fleet, "")
        roles: dict[str, Any] = {}
        for role in [*fleet.wanted, *(r for r in fleet.loaded if r not in fleet.wanted)]:
            deployment = fleet.loaded.get(role)
            failure = fleet.failed.get(role)
            roles[role] = {
                "wanted": fleet.wanted.get(role),
                "loaded": deployment.version if deployment else None,
                "loaded_at": _iso(deployment.loaded_at) if deployment else None,
                "load_seconds": round(deployment.load_seconds, 3) if deployment else None,
                "error": failure.error if failure else None,
            }
        serving = plan.routes[0] if plan.routes else None
        degraded = bool(plan.skipped) or (serving is not None and serving.role != CHAMPION)
        return {
            "model": self.name,
            "status": "unavailable" if serving is None else ("degraded" if degraded else "ok"),
            "serving": {"version": serving.deployment.version, "role": serving.role}
            if serving
            else None,
            "champion": roles.get(CHAMPION),
            "fallback": {"enabled": fleet.fallback_enabled, **(roles.get(FALLBACK) or {})},
            "roles": roles,
            "last_swap": self.last_swap,
            "last_poll": _iso(self.last_poll) if self.last_poll else None,
            "poll_error": self.poll_error,
            "poll_interval": self.poll_interval,
            "rollout": rollout_status(fleet, self.mirror.stats()),
            "prediction_log": self.prediction_log.stats() if self.prediction_log else None,
            "events": self.events.stats(),
        }

    # -- lifecycle -----------------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> None:
        """Stop watching, write what the prediction log and the ledger queue hold."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        thread = getattr(self, "_thread", None)
        if thread is not None:
            thread.join(timeout)
        self.mirror.close(timeout)  # before the log: its last preview rows go to the log too
        if self.prediction_log is not None:
            self.prediction_log.close(timeout)
        self.events.close(timeout)
        if self._groups_pool is not None:
            self._groups_pool.shutdown(wait=False)
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> ChampionModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ChampionModel({self.name!r}, version={self.version!r})"


_NO_INPUTS = ModelInputs((), {})


def _split(output: Any, sizes: list[int]) -> list[Any] | None:
    """Split a batch's output back into per-request parts by row counts (None: not row-aligned)."""
    import numpy as np
    import pandas as pd

    total = sum(sizes)
    bounds = np.cumsum([0, *sizes])
    if isinstance(output, pd.DataFrame | pd.Series):
        if len(output) != total:
            return None
        return [output.iloc[a:b].reset_index(drop=True) for a, b in itertools.pairwise(bounds)]
    if isinstance(output, np.ndarray):
        if output.ndim == 0 or output.shape[0] != total:
            return None
        return [output[a:b] for a, b in itertools.pairwise(bounds)]
    if isinstance(output, list) and len(output) == total:
        return [output[a:b] for a, b in itertools.pairwise(bounds)]
    return None


def _find(loaded: dict[str, Deployment], version: str) -> Deployment | None:
    return next((d for d in loaded.values() if d.version == version), None)


def _glob(root: str, pattern: str) -> list[str]:
    import glob
    import os

    return glob.glob(os.path.join(root, pattern))


def _iso(ts: float) -> str:
    return (
        datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= 300 else text[:297] + "..."


def _schema_reason(exc: BaseException) -> str:
    """MLflow's schema message embeds the whole input; keep the reason after ``Error:``."""
    text = getattr(exc, "message", None) or str(exc)
    reason = text.rsplit("Error: ", 1)[-1]
    reason = " ".join(reason.split())
    reason = reason.split(" Note that ")[0]
    with contextlib.suppress(Exception):
        reason = reason if len(reason) <= 300 else reason[:297] + "..."
    return f"input does not match the model signature: {reason}"
