"""What :class:`~mlflow_plugin.serving.ChampionModel` shares between its parts, and how it
reports: the state every part reads, the counters, the failure causes and their ledger events,
and ``status()``.

The parts (:mod:`._scoring`, :mod:`._batch_scoring`, :mod:`._following`) are mixins over
:class:`_Observing`; ``ChampionModel.__init__`` (:mod:`._loader`) sets the state declared here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlflow_plugin.rollouts._state import CANARY
from mlflow_plugin.serving._events import EventReporter
from mlflow_plugin.serving._guardrails import Guardrails, Violation
from mlflow_plugin.serving._inputs import InputGuard
from mlflow_plugin.serving._mirror import Mirror
from mlflow_plugin.serving._prediction_log import PredictionLog
from mlflow_plugin.serving._rollout_router import rollout_status
from mlflow_plugin.serving._routing import Fleet, Router
from mlflow_plugin.types import CHAMPION, FALLBACK

# ChampionModel's logger, whichever part logs.
_log = logging.getLogger("mlflow_plugin.serving._loader")
Loader = Callable[[str, str], Any]


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


class _Observing:
    """The state of a served model (set by ``ChampionModel.__init__``), its counters and its
    failure reports."""

    name: str
    registry: Any
    tracking_uri: str
    poll_interval: float
    retry_interval: float
    guardrails: Guardrails
    prediction_log: PredictionLog | None
    input_guard: InputGuard
    verify: bool
    router: Router
    key_column: str | None
    mirror: Mirror
    events: EventReporter
    last_swap: dict[str, Any] | None
    last_poll: float | None
    poll_error: str | None
    _degraded: bool
    _loader: Loader
    _workdir: str
    _fleet: Fleet
    _counts: Counter[tuple[str, ...]]
    _counts_lock: threading.Lock
    _groups_pool: Any
    _refresh_lock: threading.Lock
    _wake: threading.Event
    _closed: bool
    _warned: dict[tuple[str, str], float]

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


def _iso(ts: float) -> str:
    return (
        datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
