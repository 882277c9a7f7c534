"""Answering one request: :class:`Scorer` applies the input guardrails, tries the plan's routes
in order, the output guardrails, and writes the prediction log and the mirror."""

from __future__ import annotations

import contextlib
import itertools
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlflow_plugin.errors import BadInput, ModelUnavailable
from mlflow_plugin.rollouts._state import CANARY
from mlflow_plugin.serving._guardrails import Guardrails, Violation
from mlflow_plugin.serving._inputs import InputGuard, ModelInputs
from mlflow_plugin.serving._mirror import Mirror
from mlflow_plugin.serving._observing import Cause, Observer
from mlflow_plugin.serving._outputs import one_line
from mlflow_plugin.serving._prediction_log import ENTITY_KEYS_ATTR, PredictionLog, PredictionRecord
from mlflow_plugin.serving._routing import Plan, Router

if TYPE_CHECKING:
    from mlflow_plugin.serving._following import Follower

__all__ = ["NO_INPUTS", "Prediction", "Scorer"]


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


class Scorer:
    """Answering a request: the plan's first route that answers within the guardrails.

    Args:
        name: registered model name (for the prediction log).
        follower: whose fleet answers (read once per request).
        router: the plan of routes for a request.
        observer: counters and failure reports.
        guardrails: output rules.
        input_guard: input rules.
        prediction_log: where every answer is logged (None: not logged).
        mirror: scores shadow routes off the request path.
        key_column: input column holding a request's entity key for the canary split.
    """

    def __init__(
        self,
        name: str,
        follower: Follower,
        router: Router,
        observer: Observer,
        *,
        guardrails: Guardrails,
        input_guard: InputGuard,
        prediction_log: PredictionLog | None,
        mirror: Mirror,
        key_column: str | None,
    ) -> None:
        self.name = name
        self.follower = follower
        self.router = router
        self.observer = observer
        self.guardrails = guardrails
        self.input_guard = input_guard
        self.prediction_log = prediction_log
        self.mirror = mirror
        self.key_column = key_column
        # Request ids: unique across processes and restarts, cheaper than a uuid4 per request.
        self._id_prefix = uuid.uuid4().hex[:16]
        self._ids = itertools.count(1)

    def check_input(self, data: Any) -> tuple[str, ...]:
        """Apply the input guardrails for the version that would answer now.

        Returns:
            Flags of tolerated problems (``out_of_range`` when guardrails only observe).

        Raises:
            BadInput: a value the model cannot score, naming its column and row.
        """
        if self.input_guard.mode == "off":
            return ()
        routes = self.router.plan(self.follower.fleet, "").routes
        inputs = routes[0].deployment.inputs if routes else None
        if inputs is None:
            inputs = NO_INPUTS
        try:
            flags = self.input_guard.check(data, inputs)
        except BadInput:
            self.observer.count("bad_input")
            raise
        for flag in flags:
            self.observer.count("input_guardrail", flag)
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
        return self.score_checked(data, params, rid, t0, in_flags)

    def score_checked(
        self,
        data: Any,
        params: dict[str, Any] | None,
        rid: str,
        t0: float,
        in_flags: tuple[str, ...],
    ) -> Prediction:
        """:meth:`score` once the input guardrails passed (``in_flags``) and the clock started."""
        plan: Plan = self.router.plan(self.follower.fleet, rid, self.entity_key(data))
        causes = [
            Cause(role, f.version, "missing" if not f.version else "load", f.error)
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
                    self.observer.count("bad_input")
                    raise BadInput(_schema_reason(exc)) from None
                cause = Cause(route.role, deployment.version, "predict", one_line(exc))
                causes.append(cause)
                if route.role == CANARY:
                    self._log_attempt(rid, data, cause, time.perf_counter() - t_route, in_flags)
                continue
            violations: tuple[Violation, ...] = self.guardrails.check(output)
            if violations:
                self.observer.count_violations(violations, deployment.version)
                if self.guardrails.enforce:
                    detail = "; ".join(str(v) for v in violations)
                    cause = Cause(route.role, deployment.version, "guardrail", detail)
                    causes.append(cause)
                    if route.role == CANARY:
                        flags = in_flags + tuple(v.rule for v in violations)
                        self._log_attempt(rid, data, cause, time.perf_counter() - t_route, flags)
                    continue
            prediction = self.answer(
                data, output, rid, t0, route.role, deployment.version, violations, in_flags, causes
            )
            self.mirror_to(plan, data, params, prediction)
            return prediction
        message = self.observer.unavailable_message(causes, self.follower.fleet)
        self.observer.count("unavailable")
        for cause in causes:
            self.observer.report_error(cause)
        kinds = tuple(c.kind for c in causes)
        self._log_row(rid, None, None, time.perf_counter() - t0, data, error=message, flags=kinds)
        raise ModelUnavailable(message)

    def answer(
        self,
        data: Any,
        output: Any,
        rid: str,
        t0: float,
        role: str,
        version: str,
        violations: tuple[Violation, ...],
        in_flags: tuple[str, ...],
        causes: list[Cause],
    ) -> Prediction:
        """Count, log and wrap one request's answer."""
        latency = time.perf_counter() - t0
        slow = self.guardrails.check_latency(latency)
        if slow is not None:
            self.observer.count_violations((slow,), version)
        flags = in_flags + tuple(v.rule for v in violations) + ((slow.rule,) if slow else ())
        fell_back = bool(causes)
        self.observer.answered(causes, role, version)
        self.observer.count("predictions", version, role)
        self._log_row(rid, version, role, latency, data, output, fallback=fell_back, flags=flags)
        return Prediction(output, version, role, rid, latency, fell_back, flags)

    def entity_key(self, data: Any) -> str | None:
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
        self, rid: str, data: Any, cause: Cause, latency: float, flags: tuple[str, ...]
    ) -> None:
        """A failed canary attempt is a row of its own (the rollout's analysis counts them)."""
        self.observer.count("canary_failures", cause.kind)
        version = cause.version or None
        self._log_row(rid, version, cause.role, latency, data, error=cause.describe(), flags=flags)

    def _log_row(
        self,
        rid: str,
        version: str | None,
        role: str | None,
        latency: float,
        data: Any,
        output: Any = None,
        *,
        fallback: bool = False,
        error: str | None = None,
        flags: tuple[str, ...] = (),
    ) -> None:
        """One request's row in the prediction log (when there is one)."""
        if self.prediction_log is None:
            return
        self.prediction_log.log(
            PredictionRecord(
                rid,
                time.time(),
                self.name,
                version,
                role,
                fallback,
                latency,
                data,
                output,
                error,
                flags,
            )
        )

    def mirror_to(
        self, plan: Plan, data: Any, params: dict[str, Any] | None, prediction: Prediction
    ) -> None:
        for shadow in plan.shadows:
            self.mirror.submit(shadow, data, params, prediction.request_id, prediction.output)


NO_INPUTS = ModelInputs((), {})


def _schema_reason(exc: BaseException) -> str:
    """MLflow's schema message embeds the whole input; keep the reason after ``Error:``."""
    text = getattr(exc, "message", None) or str(exc)
    reason = text.rsplit("Error: ", 1)[-1]
    reason = " ".join(reason.split())
    reason = reason.split(" Note that ")[0]
    with contextlib.suppress(Exception):
        reason = reason if len(reason) <= 300 else reason[:297] + "..."
    return f"input does not match the model signature: {reason}"
