"""Calls into features other parts of the package provide (the ledger's hash chain, artifact
digests, the lock's status, the operator's heartbeat), each behind one small function so the
doctor's checks read as checks, not as plumbing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from mlflow_plugin.operator import HEARTBEAT_TAG
from mlflow_plugin.operator._lease import LEASE_TAG

__all__ = [
    "HEARTBEAT_TAG",
    "LEASE_TAG",
    "lock_status",
    "stage_drift",
    "operator_heartbeat",
    "operator_lease",
    "verify_chain",
    "verify_version",
]


def operator_lease(tags: dict[str, str]) -> tuple[str, float] | None:
    """``(owner, expires)`` of the operator's lease on the model, if one is recorded."""
    raw = tags.get(LEASE_TAG, "")
    try:
        lease = json.loads(raw) if raw else None
        return (str(lease["owner"]), float(lease["expires"])) if lease else None
    except (ValueError, KeyError, TypeError):
        return None


def verify_chain(ledger: Any, model: str) -> Any:
    """``Ledger.verify_chain(model)``: ok, events, problems."""
    return ledger.verify_chain(model)


def verify_version(registry: Any, model: str, version: str) -> Any:
    """:func:`mlflow_plugin.integrity._manifest.verify_version` (ok, digest, problems,
    trusted_on_first_use)."""
    from mlflow_plugin.integrity._manifest import verify_version as verify

    return verify(registry, model, version)


def lock_status(registry: Any, model: str) -> dict[str, Any] | None:
    """``Registry.lock_status(model)``: None when no lock is held, else holder, token, expires
    (epoch seconds) and stale."""
    return registry.lock_status(model)  # type: ignore[no-any-return]


def operator_heartbeat(tags: dict[str, str]) -> datetime | None:
    """The operator's last pass over the model (tag :data:`HEARTBEAT_TAG`), if recorded."""
    text = tags.get(HEARTBEAT_TAG, "").strip()
    return _as_utc(text) if text else None


def _as_utc(value: Any) -> datetime:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), tz=UTC)
    when = (
        value
        if isinstance(value, datetime)
        else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    )
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def stage_drift(controller: Any, model: str) -> list[str]:
    """Stage changes the mirror still owes (``"v3 Production->Archived"``); [] when in sync.
    Read-only: ``reconcile`` repairs. Uses the controller's own mirror plan."""
    from mlflow_plugin.types import CHALLENGER, CHAMPION

    info = controller.registry.get_model(model)
    versions = {v.version: v for v in controller.registry.list_versions(model)}
    champion, challenger = info.aliases.get(CHAMPION), info.aliases.get(CHALLENGER)
    from mlflow_plugin.controller._mirror import mirror_plan

    plan = mirror_plan(versions, champion, challenger)
    return [f"v{v} {old}->{want}" for v, old, want in plan]
