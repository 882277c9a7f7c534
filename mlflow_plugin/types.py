"""Plain value objects shared by the registry, the ledger and the controller (no mlflow)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mlflow_plugin.errors import BadInput
from mlflow_plugin.settings import TAG_PREFIX

__all__ = [
    "CHALLENGER",
    "ENFORCE_GATES_TAG",
    "FALLBACK_ENABLED_TAG",
    "FALLBACK_PINNED_TAG",
    "GATES_BYPASSED_TAG",
    "Outcome",
    "CHAMPION",
    "EVENT_TYPES",
    "FALLBACK",
    "STAGES",
    "STRATEGIES",
    "Event",
    "ModelInfo",
    "StaleLock",
    "VersionInfo",
    "check_alias",
    "check_event_type",
    "check_model_name",
    "check_strategy",
    "check_version",
]

CHAMPION = "champion"
CHALLENGER = "challenger"
FALLBACK = "fallback"
# Registered-model tags the controller keeps.
FALLBACK_ENABLED_TAG = TAG_PREFIX + "fallback_enabled"
FALLBACK_PINNED_TAG = TAG_PREFIX + "fallback_pinned"
ENFORCE_GATES_TAG = TAG_PREFIX + "enforce_gates"
GATES_BYPASSED_TAG = TAG_PREFIX + "gates_bypassed"
STAGES = ("None", "Staging", "Production", "Archived")
EVENT_TYPES = (
    "deployment",
    "rollback",
    "rejected",
    "error",
    "recovery",
    "config_change",
    "retention",
    "retrain_triggered",
    "degraded",
    "alert",
    "rollout_started",
    "rollout_step",
    "rollout_paused",
    "rollout_aborted",
)
STRATEGIES = ("all_at_once", "blue_green", "canary")

_ALIAS_RE = re.compile(r"^[\w\-]+$")
_VERSION_ALIAS_RE = re.compile(r"^[vV]\d+$")


@dataclass(frozen=True)
class VersionInfo:
    """One registered model version, as far as the controller cares."""

    name: str
    version: str
    stage: str = "None"
    tags: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None
    source: str | None = None
    created_ms: int = 0

    @property
    def number(self) -> int:
        return int(self.version)


@dataclass(frozen=True)
class ModelInfo:
    """A registered model with its aliases (alias -> version) and tags."""

    name: str
    aliases: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class StaleLock:
    """A promotion lock whose holder died or stalled: who held it (``owner``, ``token``) and
    what it was doing (``intent``: op, version, actor, reason …)."""

    owner: str
    intent: dict[str, str]
    token: str = ""


@dataclass(frozen=True)
class Event:
    """One ledger entry; ``run_id`` is the audit run that holds it."""

    event_type: str
    model: str
    version: str = ""
    from_version: str = ""
    actor: str = ""
    message: str = ""
    strategy: str = ""
    timestamp_ms: int = 0
    run_id: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        from datetime import UTC, datetime

        ts = datetime.fromtimestamp(self.timestamp_ms / 1000, tz=UTC)
        return {
            "timestamp": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "event_type": self.event_type,
            "model_name": self.model,
            "version": self.version,
            "from_version": self.from_version,
            "actor": self.actor,
            "message": self.message,
            "strategy": self.strategy,
            "run_id": self.run_id,
            **({"extra": dict(self.extra)} if self.extra else {}),
        }


def check_model_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise BadInput("model name must be a non-empty string")
    if "/" in name or ":" in name:
        raise BadInput(f"invalid model name {name!r}: names cannot contain '/' or ':'")
    return name


MAX_VERSION = 2**31 - 1  # MLflow stores versions as 32-bit integers


def check_version(version: object, *, what: str = "version") -> str:
    """Versions are positive integers (given as int or str) written with ASCII digits only:
    ``٣``, ``３`` and ``³`` are not version 3."""
    if isinstance(version, bool):
        raise BadInput(f"{what} must be a positive integer, got {version!r}")
    text = str(version) if version is not None else ""
    if not text.strip():
        raise BadInput(f"{what} is missing")
    # No surrounding blanks either: ``" 1"`` and ``"1\n"`` are typos, not version 1.
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise BadInput(f"{what} must be a positive integer, got {version!r}")
    if len(text.lstrip("0")) > 10 or int(text) > MAX_VERSION:
        raise BadInput(f"{what} {text[:20]}{'…' if len(text) > 20 else ''} is too large")
    return str(int(text))


def check_alias(alias: object) -> str:
    if not isinstance(alias, str) or not _ALIAS_RE.match(alias):
        raise BadInput(f"invalid alias {alias!r}: use letters, digits, '_' and '-'")
    if alias.lower() == "latest" or _VERSION_ALIAS_RE.match(alias):
        raise BadInput(f"alias {alias!r} is reserved by MLflow")
    return alias


def check_event_type(event_type: object) -> str:
    if event_type not in EVENT_TYPES:
        raise BadInput(
            f"unknown event type {event_type!r}; expected one of {', '.join(EVENT_TYPES)}"
        )
    return str(event_type)


def check_strategy(strategy: object) -> str:
    """``strategy`` if it is one of :data:`STRATEGIES`; else BadInput (exit 2). The one check
    for the CLI, the REST API, the controller and the ``main`` entry point alike."""
    if strategy not in STRATEGIES:
        raise BadInput(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    return str(strategy)


@dataclass(frozen=True)
class Outcome:
    """What a controller call did: the event it wrote (None when nothing had to change)."""

    event: Event | None
    message: str
