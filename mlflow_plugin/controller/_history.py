"""Rules read from the ledger's history and the versions' gate tags (pure functions).

- the last known good champion (what ``rollback`` goes back to);
- the champion the ledger last recorded (what ``reconcile`` compares the alias with);
- the gates a version did not pass.
"""

from __future__ import annotations

from mlflow_plugin.settings import TAG_PREFIX
from mlflow_plugin.types import Event, VersionInfo

__all__ = [
    "CHAMPION_EVENTS",
    "GATE_REPORT_TAG",
    "GATE_TAGS",
    "gate_failures",
    "last_known_good",
    "recorded_champion",
]

GATE_TAGS = (TAG_PREFIX + "validation", TAG_PREFIX + "backtest")
GATE_REPORT_TAG = TAG_PREFIX + "gate_report"
CHAMPION_EVENTS = ("deployment", "rollback")
_CHAMPION_REMOVED = TAG_PREFIX + "champion_removed"


def last_known_good(events: list[Event], current: str | None) -> str | None:
    """The champion before ``current``, skipping versions that were rolled back from.

    ``events`` are the model's deployment and rollback events, oldest first.
    """
    rolled_back_from = {e.from_version for e in events if e.event_type == "rollback"}
    for event in reversed(events):
        if event.event_type not in CHAMPION_EVENTS:
            continue
        candidate = event.from_version
        if candidate and candidate != current and candidate not in rolled_back_from:
            return candidate
    return None


def recorded_champion(events: list[Event]) -> str | None:
    """The champion as the ledger last recorded it (None: never set, or removed).

    ``events``: the model's deployment, rollback and config_change events, oldest first.
    """
    for event in reversed(events):
        if event.event_type in CHAMPION_EVENTS:
            return event.version or None
        if event.extra.get(_CHAMPION_REMOVED) == "true":
            return None
    return None


def gate_failures(version: VersionInfo) -> list[str]:
    """``["validation=failed", "backtest=missing"]``: each gate tag that is not ``passed``."""
    failed = []
    for tag in GATE_TAGS:
        state = version.tags.get(tag)
        short = tag.removeprefix(TAG_PREFIX)
        if state != "passed":
            failed.append(f"{short}={state or 'missing'}")
    return failed
