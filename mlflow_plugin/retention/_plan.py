"""Deciding which versions retention deletes: pure, no mlflow (docs/ARCHITECTURE.md,
"Retention and doctor").

Protected first (aliases in ``always_keep``, champions within ``protect_window``), then the
policy's rules in order, the first rule that selects a version deciding it, then ``default``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mlflow_plugin.policy import GATE_DIRECTIONS, KeepLast, MaxAge, MinMetric, RetentionPolicy
from mlflow_plugin.types import Event

__all__ = ["CHAMPION_EVENTS", "Decision", "VersionFacts", "plan_retention", "recent_champions"]

CHAMPION_EVENTS = ("deployment", "rollback")


@dataclass(frozen=True)
class VersionFacts:
    """What the rules look at for one version."""

    version: str
    created_ms: int
    aliases: tuple[str, ...] = ()
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """``keep`` or ``delete`` for one version, and why."""

    version: str
    action: str
    reason: str
    protected: bool = False


def recent_champions(events: Iterable[Event], window_s: float, now_ms: int) -> dict[str, int]:
    """Versions that were champion at some time in the last ``window_s`` seconds, with the last
    time (epoch ms) they were. ``events``: the model's deployment and rollback events."""
    cutoff = now_ms - int(window_s * 1000)
    champion: str | None = None
    out: dict[str, int] = {}
    for event in sorted(
        (e for e in events if e.event_type in CHAMPION_EVENTS), key=lambda e: e.timestamp_ms
    ):
        if event.timestamp_ms >= cutoff:
            if champion:  # the champion this event replaced served until now
                out[champion] = max(out.get(champion, 0), event.timestamp_ms)
            if event.from_version:
                out[event.from_version] = max(out.get(event.from_version, 0), event.timestamp_ms)
        champion = event.version or None
    if champion:
        out[champion] = now_ms
    return out


def plan_retention(
    policy: RetentionPolicy,
    versions: Iterable[VersionFacts],
    recent: Mapping[str, int],
    now_ms: int,
) -> list[Decision]:
    """One decision per version, newest first.

    Args:
        policy: the ``retention`` section.
        versions: every version of the model with its aliases and metrics.
        recent: versions that were champion within the protect window (see
            :func:`recent_champions`).
        now_ms: the time the ages are measured at.
    """
    ordered = sorted(versions, key=lambda v: int(v.version), reverse=True)
    decided: dict[str, Decision] = {}
    always = set(policy.always_keep)
    for facts in ordered:
        held = sorted(always.intersection(facts.aliases))
        if held:
            decided[facts.version] = Decision(
                facts.version, "keep", f"alias {', '.join(held)}", True
            )
        elif facts.version in recent:
            decided[facts.version] = Decision(
                facts.version, "keep", "champion within protect_window", True
            )
    for index, rule in enumerate(policy.rules, start=1):
        undecided = [f for f in ordered if f.version not in decided]
        label = f"rule {index}: {rule.describe()}"
        if isinstance(rule, KeepLast):
            for facts in undecided[: rule.count]:
                decided[facts.version] = Decision(facts.version, "keep", label)
        elif isinstance(rule, MaxAge):
            for facts in undecided:
                age_s = (now_ms - facts.created_ms) / 1000
                if age_s > rule.seconds:
                    days = age_s / 86400
                    decided[facts.version] = Decision(
                        facts.version, "delete", f"{label} (age {days:.0f}d)"
                    )
        else:
            assert isinstance(rule, MinMetric)
            for facts in undecided:
                worse = _worse_metrics(rule, facts.metrics)
                if worse:
                    decided[facts.version] = Decision(
                        facts.version, "delete", f"{label} ({', '.join(worse)})"
                    )
    for facts in ordered:
        if facts.version not in decided:
            decided[facts.version] = Decision(
                facts.version, policy.default, f"default {policy.default}"
            )
    return [decided[f.version] for f in ordered]


def _worse_metrics(rule: MinMetric, metrics: Mapping[str, float]) -> list[str]:
    worse = []
    for name, bound in rule.bounds:
        value = metrics.get(name)
        if value is None or value != value:  # missing or NaN: no evidence, not selected
            continue
        if (value < bound) if GATE_DIRECTIONS[name] else (value > bound):
            worse.append(f"{name} {value:.4g}")
    return worse
