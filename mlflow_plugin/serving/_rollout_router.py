"""``RolloutRouter``: serve's routing policy during canary and blue-green rollouts.

The registry holds the rollout (docs/ARCHITECTURE.md, "Rollouts in serve"): the aliases
``canary`` / ``preview`` name the new version, the registered-model tags
``mlflow_plugin.rollout.*`` its weight, phase and the replaced champion kept for rollback. The
loader reads both with the poll that reads the champion (one registry call) and hands this router
the parsed :class:`~mlflow_plugin.controller.RolloutState` on the :class:`Fleet`.

- **Canary**: a request goes to the canary when ``routes_to_canary(key, state)`` says so - a
  SHA-256 bucket of its entity key salted with the rollout id, so every replica sends an entity
  to the same side without talking to the others. The champion (then the fallback) backs the
  canary up: a canary that raises or breaks a guardrail never fails a client request.
- **Blue-green**: the champion answers every request; ``preview`` is a shadow, scored off the
  request path on a mirror of the request (``serving/_mirror.py``).
- **Keep previous**: the replaced champion (tag ``previous``) stays loaded until
  ``keep_previous_until``, so switching back needs no load; it is the last backup route.

Without a rollout it routes exactly like :class:`ChampionRouter`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mlflow_plugin.controller import FALLBACK_ENABLED_TAG
from mlflow_plugin.rollouts._state import CANARY, PREVIEW, RolloutState
from mlflow_plugin.rollouts._state import routes_to_canary as _routes_to_canary
from mlflow_plugin.serving._routing import Fleet, Plan, Route, routes_for
from mlflow_plugin.types import CHAMPION, FALLBACK

__all__ = ["PREVIOUS", "RolloutRouter"]

PREVIOUS = "previous"
_ROLES = (CHAMPION, FALLBACK, CANARY, PREVIEW, PREVIOUS)


class RolloutRouter:
    """Champion, fallback, and the roles of a rollout: ``canary``, ``preview``, ``previous``.

    Args:
        clock: ``() -> epoch seconds`` (tests pass a fixed one).
    """

    roles = _ROLES

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        # fleet -> (primary plan, canary plan or None, rollout state): built once per fleet.
        self._cached: tuple[Fleet, Plan, Plan | None, RolloutState | None] | None = None

    def wanted(self, info: object) -> dict[str, str]:
        aliases: dict[str, str] = getattr(info, "aliases", {})
        tags: dict[str, str] = getattr(info, "tags", {})
        out: dict[str, str] = {}
        if CHAMPION in aliases:
            out[CHAMPION] = aliases[CHAMPION]
        if tags.get(FALLBACK_ENABLED_TAG, "false") == "true" and FALLBACK in aliases:
            out[FALLBACK] = aliases[FALLBACK]
        for role in (CANARY, PREVIEW):
            if role in aliases:
                out[role] = aliases[role]
        state = RolloutState.from_tags(tags)
        if state is not None and state.previous and state.keep_previous_until > self._now():
            out[PREVIOUS] = state.previous
        return out

    def plan(self, fleet: Fleet, request_id: str, key: str | None = None) -> Plan:
        cached = self._cached  # one read: another thread may replace it meanwhile
        if cached is None or cached[0] is not fleet:
            cached = self._build(fleet)
            self._cached = cached
        _, primary, canary, state = cached
        if canary is None or state is None:
            return primary
        bucket_key = key or request_id
        if bucket_key and _routes_to_canary(bucket_key, state):
            return canary
        return primary

    # -- building the plans of one fleet -------------------------------------------------
    def _build(self, fleet: Fleet) -> tuple[Fleet, Plan, Plan | None, RolloutState | None]:
        state = fleet.rollout if isinstance(fleet.rollout, RolloutState) else None
        # The kept previous champion is a spare: its failing to load fails no request.
        routes, skipped = routes_for(fleet, (CHAMPION, FALLBACK, PREVIOUS), quiet=(PREVIOUS,))
        shadows: tuple[Route, ...] = ()
        preview = fleet.loaded.get(PREVIEW)
        if PREVIEW in fleet.wanted and preview is not None:
            if not any(r.deployment.version == preview.version for r in routes[:1]):
                shadows = (Route(PREVIEW, preview),)
        primary = Plan(tuple(routes), tuple(skipped), shadows)
        canary_plan: Plan | None = None
        if CANARY in fleet.wanted and state is not None and state.weight > 0:
            deployment = fleet.loaded.get(CANARY)
            if deployment is not None:
                backups = [r for r in routes if r.deployment.version != deployment.version]
                canary_plan = Plan((Route(CANARY, deployment), *backups), tuple(skipped))
            elif CANARY in fleet.failed:
                # Requests on the canary's side count its load failure (the champion answers).
                canary_plan = Plan(tuple(routes), ((CANARY, fleet.failed[CANARY]), *skipped))
        return fleet, primary, canary_plan, state

    def _now(self) -> float:
        return float(self._clock())


def rollout_status(fleet: Fleet, mirror: dict[str, int]) -> dict[str, object] | None:
    """The rollout as ``/health`` shows it (None when there is none and no rollout role is
    loaded): id, strategy, phase, weight, steps, and per role the version wanted and loaded."""
    state = fleet.rollout if isinstance(fleet.rollout, RolloutState) else None
    roles = {
        role: {"wanted": fleet.wanted.get(role), "loaded": _loaded(fleet, role)}
        for role in (CANARY, PREVIEW, PREVIOUS)
        if role in fleet.wanted or role in fleet.loaded
    }
    if state is None and not roles:
        return None
    out: dict[str, object] = {"roles": roles}
    if state is not None:
        out.update(
            id=state.rollout_id,
            strategy=state.strategy,
            phase=state.phase,
            version=state.version,
            weight=state.weight if CANARY in fleet.wanted else 0.0,
            step=state.step,
            steps=list(state.steps),
            previous=state.previous or None,
            keep_previous_until=state.keep_previous_until or None,
            reason=state.reason or None,
        )
    if PREVIEW in roles or any(mirror.values()):
        out["mirror"] = mirror
    return out


def _loaded(fleet: Fleet, role: str) -> str | None:
    deployment = fleet.loaded.get(role)
    return deployment.version if deployment is not None else None
