"""How a served model reports: the counters, the degraded flag, the failure causes and their
ledger events (:class:`Observer`, one per :class:`~mlflow_plugin.serving.ChampionModel`, shared
by its :class:`~mlflow_plugin.serving._following.Follower` and
:class:`~mlflow_plugin.serving._scoring.Scorer`)."""

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
from mlflow_plugin.serving._guardrails import Violation
from mlflow_plugin.serving._routing import Fleet
from mlflow_plugin.types import CHAMPION, FALLBACK

__all__ = ["Cause", "Loader", "Observer", "iso", "log", "why_unavailable"]

# ChampionModel's logger, whichever part logs.
log = logging.getLogger("mlflow_plugin.serving._loader")
Loader = Callable[[str, str], Any]


@dataclass(frozen=True)
class Cause:
    """Why a route did not answer: its role and version, and the kind of failure."""

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


class Observer:
    """The counters of one served model and its failure reports.

    Args:
        name: the registered model's name (in log lines).
        events: where ``error`` and ``recovery`` events go (rate-limited).
    """

    def __init__(self, name: str, events: EventReporter) -> None:
        self.name = name
        self.events = events
        self.degraded = False  # a backup route answered last: logged once per change
        self._counts: Counter[tuple[str, ...]] = Counter()
        self._lock = threading.Lock()
        self._warned: dict[tuple[str, str], float] = {}

    # -- counting ------------------------------------------------------------------------
    def count(self, *key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def count_violations(self, violations: tuple[Violation, ...], version: str) -> None:
        now = time.monotonic()
        with self._lock:
            for v in violations:
                self._counts["guardrail", v.rule, version] += 1
            key = (violations[0].rule, version)
            # Log the first violation of a kind, then at most one line per 10 s (all are counted).
            if now - self._warned.get(key, -1e9) < 10.0:
                return
            self._warned[key] = now
        log.warning("%s version %s: %s", self.name, version, "; ".join(map(str, violations)))

    def counts(self) -> dict[tuple[str, ...], int]:
        """A copy of the counters, keyed like ``("predictions", version, role)``,
        ``("fallbacks", cause)``, ``("guardrail", rule, version)``, ``("swaps",)`` ..."""
        with self._lock:
            return dict(self._counts)

    # -- failures ------------------------------------------------------------------------
    def answered(self, causes: list[Cause], role: str, version: str) -> None:
        """``role`` answered after ``causes`` (empty: the first route answered)."""
        if causes:
            self._on_fallback(causes, role, version)
        elif self.degraded and role == CHAMPION:
            self.degraded = False
            log.warning("%s: recovered: champion version %s answers again", self.name, version)

    def _on_fallback(self, causes: list[Cause], role: str, version: str) -> None:
        first = causes[0]
        self.count("fallbacks", first.kind)
        if all(c.role == CANARY for c in causes):
            # The champion backing a failing canary up is the rollout working, not a degraded
            # server: the failure is counted, logged as its own row and reported (rate-limited).
            for cause in causes:
                self.report_error(cause)
            return
        if not self.degraded:
            self.degraded = True
            log.warning(
                "%s: fallback: %s version %s answers because %s",
                self.name,
                role,
                version,
                first.describe(),
            )
        for cause in causes:
            self.report_error(cause)
        self.events.report(
            "recovery",
            f"{first.kind}:{first.version}->{version}",
            version=version,
            from_version=first.version,
            message=f"{role} version {version} answered: {first.describe()}",
            extra={"cause": first.kind, "role": role},
        )

    def report_error(self, cause: Cause) -> None:
        self.events.report(
            "error",
            f"{cause.kind}:{cause.version}",
            version=cause.version,
            from_version=cause.version if cause.role == CHAMPION else "",
            message=cause.describe(),
            extra={"cause": cause.kind, "role": cause.role},
        )

    def unavailable_message(self, causes: list[Cause], fleet: Fleet) -> str:
        if not causes:
            return f"{self.name}: {why_unavailable(fleet)}"
        tail = "" if FALLBACK in fleet.wanted else "; no fallback enabled"
        return (
            f"{self.name}: no version could answer: "
            + "; ".join(c.describe() for c in causes)
            + tail
        )


def why_unavailable(fleet: Fleet) -> str:
    """Why no route of ``fleet`` can answer (for :class:`~mlflow_plugin.ModelUnavailable`)."""
    if CHAMPION not in fleet.wanted and not fleet.wanted:
        return "no champion alias and no enabled fallback"
    parts = [
        f"{role} version {f.version} could not be loaded: {f.error}"
        for role, f in fleet.failed.items()
    ]
    if FALLBACK not in fleet.wanted:
        parts.append("no fallback enabled")
    return "; ".join(parts) or "no version is loaded"


def iso(ts: float) -> str:
    return (
        datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
