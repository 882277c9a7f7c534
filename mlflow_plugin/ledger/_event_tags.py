"""An audit event as run tags and back: the one mapping the ledger and its in-memory twin share
(docs/ARCHITECTURE.md, "The ledger").

:func:`event_tags` turns an event's fields into the tags of its run (everything but the chain
tags, which are added when the event is appended to the model's chain); :func:`event_from` reads
an :class:`~mlflow_plugin.types.Event` back from a run's tags.
"""

from __future__ import annotations

from typing import Any

from mlflow_plugin.ledger._chain import MODEL_DIGEST_TAG, model_digest
from mlflow_plugin.settings import TAG_PREFIX, actor
from mlflow_plugin.types import Event, check_event_type

__all__ = ["TAGS", "event_from", "event_tags", "run_name"]

TAGS = {
    "event": TAG_PREFIX + "event",
    "model": TAG_PREFIX + "model",
    "version": TAG_PREFIX + "version",
    "from_version": TAG_PREFIX + "from_version",
    "actor": TAG_PREFIX + "actor",
    "reason": TAG_PREFIX + "reason",
    "strategy": TAG_PREFIX + "strategy",
    "rollback": TAG_PREFIX + "rollback",
}
# Everything but the rollback flag has its own Event field; the flag stays in ``extra``.
_KNOWN = set(TAGS.values()) - {TAGS["rollback"]}


def run_name(event_type: str, version: str | int = "", from_version: str | None = "") -> str:
    """What happened, readable in the run list: ``deployment v3 ← v2``, ``rejected v4``."""
    name = event_type + (f" v{version}" if version else "")
    if (
        from_version
        and event_type in ("deployment", "rollback")
        and str(from_version) != str(version)
    ):
        name += f" ← v{from_version}"
    return name


def event_tags(
    event_type: str,
    model: str,
    *,
    version: str = "",
    from_version: str | None = "",
    message: str = "",
    strategy: str = "",
    who: str | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The tags of an event's run, chain tags aside (``who`` defaults to :func:`actor`;
    ``extra`` keys get the ``mlflow_plugin.`` prefix unless they have it)."""
    check_event_type(event_type)
    who = who or actor()
    tags: dict[str, str] = {
        TAGS["event"]: event_type,
        TAGS["model"]: model,
        MODEL_DIGEST_TAG: model_digest(model),
        TAGS["version"]: str(version or ""),
        TAGS["from_version"]: str(from_version or ""),
        TAGS["actor"]: who,
        TAGS["reason"]: message,
        "mlflow.user": who,
        "mlflow.note.content": message,
        "mlflow.runName": run_name(event_type, version, from_version),
    }
    if strategy:
        tags[TAGS["strategy"]] = strategy
    if event_type == "rollback":
        tags[TAGS["rollback"]] = "true"
    for key, value in (extra or {}).items():
        tags[key if key.startswith(TAG_PREFIX) else TAG_PREFIX + key] = str(value)
    return tags


def event_from(run_id: str, start_ms: Any, tags: dict[str, str]) -> Event:
    """The event a run's tags record (its ``mlflow_plugin.*`` tags without a field of their
    own, chain tags included, are its ``extra``)."""
    return Event(
        event_type=tags.get(TAGS["event"], ""),
        model=tags.get(TAGS["model"], ""),
        version=tags.get(TAGS["version"], ""),
        from_version=tags.get(TAGS["from_version"], ""),
        actor=tags.get(TAGS["actor"], ""),
        message=tags.get(TAGS["reason"], ""),
        strategy=tags.get(TAGS["strategy"], ""),
        timestamp_ms=int(start_ms or 0),
        run_id=run_id,
        extra={k: v for k, v in tags.items() if k.startswith(TAG_PREFIX) and k not in _KNOWN},
    )
