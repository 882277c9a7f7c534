"""Routing: which loaded versions exist, and which one answers a request.

The loader keeps a :class:`Fleet` (an immutable snapshot of every loaded version, by *role*:
``champion``, ``fallback``, ``canary``, ``preview``, ``previous``) and swaps it whole, so a
request reads one consistent snapshot. A :class:`Router` is the policy on top, in two halves:

- :meth:`Router.wanted` reads the registry state (aliases and tags) and names the versions to keep
  loaded, by role. The loader loads what is missing in the background and drops what is no longer
  wanted.
- :meth:`Router.plan` picks, per request, the route that answers first and the backups tried in
  order when it fails (raises, or breaks a guardrail), and the shadows scored off the request
  path.

:class:`ChampionRouter` is the policy without rollouts: the champion answers, the fallback (when
enabled) backs it up. ``serve``'s default is :class:`~mlflow_plugin.serving._rollout_router.RolloutRouter`,
which behaves the same until the registry holds a rollout (docs/ARCHITECTURE.md, "Rollouts in
serve").
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from mlflow_plugin.controller import FALLBACK_ENABLED_TAG
from mlflow_plugin.types import CHAMPION, FALLBACK, ModelInfo

__all__ = [
    "ChampionRouter",
    "Deployment",
    "Fleet",
    "LoadFailure",
    "Plan",
    "Route",
    "Router",
    "routes_for",
]


@dataclass(frozen=True, eq=False)
class Deployment:
    """One loaded model version.

    Attributes:
        version: the registered model version.
        model: the loaded ``mlflow.pyfunc.PyFuncModel`` (anything with ``predict`` and
            ``metadata``).
        loaded_at: epoch seconds when the load finished.
        load_seconds: how long loading took.
        inputs: what the version declares about its inputs (numeric columns, training
            ranges), a :class:`~mlflow_plugin.serving._inputs.ModelInputs`.
    """

    version: str
    model: Any
    loaded_at: float
    load_seconds: float
    inputs: Any = None

    @property
    def metadata(self) -> Any:
        return getattr(self.model, "metadata", None)


@dataclass(frozen=True)
class LoadFailure:
    """A wanted version that could not be loaded (retried on later polls)."""

    version: str
    error: str
    at: float


@dataclass(frozen=True)
class Fleet:
    """Everything loaded at one moment, by role; replaced whole on every change.

    Attributes:
        wanted: role -> version, as the router asked for it from the last registry state.
        loaded: role -> deployment for every wanted version that is loaded.
        failed: role -> why a wanted version is not loaded.
        fallback_enabled: the registry's fallback switch at the last poll.
        rollout: the model's rollout (a ``RolloutState``) at the last poll, None when there is
            none: read from the same registry call as the aliases.
    """

    wanted: Mapping[str, str] = field(default_factory=dict)
    loaded: Mapping[str, Deployment] = field(default_factory=dict)
    failed: Mapping[str, LoadFailure] = field(default_factory=dict)
    fallback_enabled: bool = False
    rollout: Any = None

    def by_version(self, version: str) -> Deployment | None:
        for deployment in self.loaded.values():
            if deployment.version == version:
                return deployment
        return None


@dataclass(frozen=True)
class Route:
    """A role and the deployment that plays it for one request."""

    role: str
    deployment: Deployment


@dataclass(frozen=True)
class Plan:
    """How to answer one request.

    Attributes:
        routes: tried in order; the first that answers within the guardrails wins.
        skipped: roles the policy wanted first but that are not loaded, with the reason (they
            count as failures of that request: the answer comes from a backup).
        shadows: scored off the request path on a copy of the request, answers compared with
            the client's and discarded (blue-green's ``preview``; see ``serving/_mirror.py``).
    """

    routes: tuple[Route, ...]
    skipped: tuple[tuple[str, LoadFailure], ...] = ()
    shadows: tuple[Route, ...] = ()


class Router(Protocol):
    """A routing policy (see the module docstring)."""

    def wanted(self, info: ModelInfo) -> dict[str, str]:
        """Role -> version to keep loaded, from the registry state; the first role is primary."""
        ...

    def plan(self, fleet: Fleet, request_id: str, key: str | None = None) -> Plan:
        """The routes for one request; ``key`` is its entity key (None: none was sent).

        An empty ``request_id`` and no ``key`` ask for the primary plan: what answers a request
        that no rollout claims (``/health``, ``/version``, the model's signature, batching).
        """
        ...


class ChampionRouter:
    """The champion answers; the fallback (alias ``fallback``, when enabled) backs it up."""

    roles = (CHAMPION, FALLBACK)

    def __init__(self) -> None:
        self._cached: tuple[Fleet, Plan] | None = None

    def wanted(self, info: ModelInfo) -> dict[str, str]:
        out: dict[str, str] = {}
        if CHAMPION in info.aliases:
            out[CHAMPION] = info.aliases[CHAMPION]
        if info.tags.get(FALLBACK_ENABLED_TAG, "false") == "true" and FALLBACK in info.aliases:
            out[FALLBACK] = info.aliases[FALLBACK]
        return out

    def plan(self, fleet: Fleet, request_id: str, key: str | None = None) -> Plan:
        # The plan does not depend on the request: build it once per fleet.
        cached = self._cached  # one read: another thread may replace it meanwhile
        if cached is not None and cached[0] is fleet:
            return cached[1]
        routes, skipped = routes_for(fleet, self.roles)
        plan = Plan(tuple(routes), tuple(skipped))
        self._cached = (fleet, plan)
        return plan


def routes_for(
    fleet: Fleet, roles: Iterable[str], *, quiet: Container[str] = ()
) -> tuple[list[Route], list[tuple[str, LoadFailure]]]:
    """The routes of ``roles`` in order (a version once: the same version twice cannot help),
    and the roles that cannot answer: a wanted version that failed to load (but for the roles
    in ``quiet``), or no champion alias while other roles are wanted (a backup answers, and
    that is a failure to report)."""
    routes: list[Route] = []
    skipped: list[tuple[str, LoadFailure]] = []
    for role in roles:
        if role not in fleet.wanted:
            if role == CHAMPION and fleet.wanted:
                skipped.append((role, LoadFailure("", "", 0.0)))
            continue
        deployment = fleet.loaded.get(role)
        if deployment is None:
            failure = fleet.failed.get(role)
            if failure is not None and role not in quiet:
                skipped.append((role, failure))
            continue
        if any(r.deployment.version == deployment.version for r in routes):
            continue
        routes.append(Route(role, deployment))
    return routes, skipped
