"""Rollout state as it lives in the registry: the shared contract of the operator and ``serve``.

A rollout (canary, blue-green, all-at-once watch) is read by every ``serve`` replica and by the
operator from the registered model alone, so replicas agree without talking to each other:

- the alias ``canary`` (canary strategy) or ``preview`` (blue-green) points at the new version;
- registered-model tags ``mlflow_plugin.rollout.*`` hold the rest (see :data:`ROLLOUT_TAGS`).

Which requests go to the canary is a pure function of the entity key and the rollout id
(:func:`routes_to_canary`): a hash, so every replica sends the same entity to the same side and
the share grows monotonically with the weight (an entity on the canary at 10 % stays there at
25 %). See docs/ARCHITECTURE.md, "Rollouts".
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from mlflow_plugin.errors import BadInput

__all__ = [
    "CANARY",
    "PREVIEW",
    "ROLLOUT_PHASES",
    "ROLLOUT_PREFIX",
    "ROLLOUT_TAGS",
    "RolloutState",
    "canary_bucket",
    "parse_steps",
    "routes_to_canary",
]

CANARY = "canary"
PREVIEW = "preview"
ROLLOUT_PREFIX = "mlflow_plugin.rollout."

#: ``running`` (analysis steps go on), ``paused`` (inconclusive or by hand: traffic shares stay,
#: no step advances), ``watching`` (all-at-once / blue-green after the switch: the post-promotion
#: analysis may switch back until ``watch_until``).  A finished or aborted rollout has no tags.
ROLLOUT_PHASES = ("running", "paused", "watching")

#: field -> registered-model tag
ROLLOUT_TAGS = {
    "rollout_id": ROLLOUT_PREFIX + "id",
    "strategy": ROLLOUT_PREFIX + "strategy",
    "version": ROLLOUT_PREFIX + "version",
    "from_version": ROLLOUT_PREFIX + "from_version",
    "phase": ROLLOUT_PREFIX + "phase",
    "steps": ROLLOUT_PREFIX + "steps",
    "step": ROLLOUT_PREFIX + "step",
    "weight": ROLLOUT_PREFIX + "weight",
    "interval_s": ROLLOUT_PREFIX + "interval_s",
    "started_at": ROLLOUT_PREFIX + "started_at",
    "step_started_at": ROLLOUT_PREFIX + "step_started_at",
    "watch_until": ROLLOUT_PREFIX + "watch_until",
    "previous": ROLLOUT_PREFIX + "previous",
    "keep_previous_until": ROLLOUT_PREFIX + "keep_previous_until",
    "reason": ROLLOUT_PREFIX + "reason",
    "failures": ROLLOUT_PREFIX + "failures",
    "inconclusive": ROLLOUT_PREFIX + "inconclusive",
    "window_start": ROLLOUT_PREFIX + "window_start",
    "keep_previous_s": ROLLOUT_PREFIX + "keep_previous_s",
}


@dataclass(frozen=True)
class RolloutState:
    """One model's rollout, parsed from its registered-model tags.

    Attributes:
        rollout_id: a random id fixed at start; salts the canary hash.
        strategy: ``canary``, ``blue_green`` or ``all_at_once``.
        version: the new version being rolled out.
        from_version: the champion when the rollout started ("" if none).
        phase: one of :data:`ROLLOUT_PHASES`.
        steps: canary traffic shares in percent, e.g. ``(10, 25, 50, 100)``.
        step: index into ``steps`` of the current step.
        weight: the canary's current share of traffic in percent (0 for blue-green/preview).
        interval_s: seconds each analysis step lasts.
        started_at / step_started_at: epoch seconds.
        watch_until: epoch seconds; post-promotion analysis runs until then (phase ``watching``).
        previous: the replaced champion kept loaded by ``serve`` until ``keep_previous_until``.
        reason: why the rollout is paused (or the last analysis verdict).
        failures / inconclusive: failed analyses in this step / inconclusive analyses in a row.
        window_start: epoch seconds; the operator's analysis window starts here (it restarts
            after each judged analysis, so every test sees fresh data; 0: ``step_started_at``).
        keep_previous_s: blue-green's ``--keep-previous`` (seconds), applied at the switch.
    """

    rollout_id: str
    strategy: str
    version: str
    from_version: str = ""
    phase: str = "running"
    steps: tuple[float, ...] = field(default_factory=tuple)
    step: int = 0
    weight: float = 0.0
    interval_s: float = 300.0
    started_at: float = 0.0
    step_started_at: float = 0.0
    watch_until: float = 0.0
    previous: str = ""
    keep_previous_until: float = 0.0
    reason: str = ""
    failures: int = 0
    inconclusive: int = 0
    window_start: float = 0.0
    keep_previous_s: float = 0.0

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> RolloutState | None:
        """The rollout recorded in ``tags``, or None when there is none (or it is unreadable)."""
        if not tags.get(ROLLOUT_TAGS["rollout_id"]) or not tags.get(ROLLOUT_TAGS["version"]):
            return None
        get = lambda key, default="": tags.get(ROLLOUT_TAGS[key], default)  # noqa: E731
        try:
            steps = tuple(float(s) for s in get("steps").split(",") if s.strip())
            return cls(
                rollout_id=get("rollout_id"),
                strategy=get("strategy", "canary"),
                version=get("version"),
                from_version=get("from_version"),
                phase=get("phase", "running"),
                steps=steps,
                step=int(get("step", "0") or 0),
                weight=float(get("weight", "0") or 0),
                interval_s=float(get("interval_s", "300") or 300),
                started_at=float(get("started_at", "0") or 0),
                step_started_at=float(get("step_started_at", "0") or 0),
                watch_until=float(get("watch_until", "0") or 0),
                previous=get("previous"),
                keep_previous_until=float(get("keep_previous_until", "0") or 0),
                reason=get("reason"),
                failures=int(get("failures", "0") or 0),
                inconclusive=int(get("inconclusive", "0") or 0),
                window_start=float(get("window_start", "0") or 0),
                keep_previous_s=float(get("keep_previous_s", "0") or 0),
            )
        except ValueError:
            return None

    def to_tags(self) -> dict[str, str]:
        """Every tag of :data:`ROLLOUT_TAGS`, as strings (write them all; delete them all to end)."""
        values = {
            "rollout_id": self.rollout_id,
            "strategy": self.strategy,
            "version": self.version,
            "from_version": self.from_version,
            "phase": self.phase,
            "steps": ",".join(f"{s:g}" for s in self.steps),
            "step": str(self.step),
            "weight": f"{self.weight:g}",
            "interval_s": f"{self.interval_s:g}",
            "started_at": f"{self.started_at:.3f}",
            "step_started_at": f"{self.step_started_at:.3f}",
            "watch_until": f"{self.watch_until:.3f}",
            "previous": self.previous,
            "keep_previous_until": f"{self.keep_previous_until:.3f}",
            "reason": self.reason[:4000],
            "failures": str(self.failures),
            "inconclusive": str(self.inconclusive),
            "window_start": f"{self.window_start:.3f}",
            "keep_previous_s": f"{self.keep_previous_s:g}",
        }
        return {ROLLOUT_TAGS[k]: v for k, v in values.items()}


def parse_steps(text: str) -> tuple[float, ...]:
    """``"10,25,50,100"`` -> ``(10.0, 25.0, 50.0, 100.0)``; increasing, in (0, 100], ends at 100."""
    try:
        steps = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise BadInput(f"--steps must be comma-separated percentages, got {text!r}") from None
    if not steps or any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
        raise BadInput(f"--steps must be increasing percentages in (0, 100], got {text!r}")
    if steps[-1] != 100:
        steps = (*steps, 100.0)
    return steps


def canary_bucket(key: str, rollout_id: str) -> float:
    """Where ``key`` falls in [0, 100) for this rollout: SHA-256, the same on every replica."""
    digest = hashlib.sha256(f"{rollout_id}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100.0


def routes_to_canary(key: str, state: RolloutState) -> bool:
    """True when the request with entity key ``key`` goes to the canary under ``state``.

    Paused rollouts keep their share (a pause stops the steps, not the traffic); the canary gets
    nothing outside the ``running``/``paused`` phases or for other strategies.
    """
    if state.strategy != "canary" or state.phase not in ("running", "paused"):
        return False
    return canary_bucket(key, state.rollout_id) < state.weight
