"""What the controller does about work it did not finish or did not do.

- :func:`complete_interrupted`: a holder died (or stalled past its lease) while holding the
  model's lock. The next holder — any operation, or ``reconcile`` — records the interrupted
  operation as what it was (its type, reason and actor, "completed by … after an interrupted
  rollback"), or an ``error`` event when it had changed nothing, ends its prepared audit run as
  KILLED and repairs the stage mirror, all before its own work.
- :func:`reconcile`: changes made in the registry UI. A champion moved there is recorded as a
  ``registry-ui`` deployment; if the new champion had not passed its gates the event carries
  ``mlflow_plugin.gates_bypassed`` and, where the team enforces the gates, the alias goes back
  to the last recorded champion with a ``rollback`` event.
- rollouts left half-done are recorded or repaired by :mod:`._rollout_repair`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlflow_plugin.controller._history import gate_failures, last_known_good
from mlflow_plugin.rollouts import _repair as _rollout_repair
from mlflow_plugin.settings import actor
from mlflow_plugin.types import (
    CHALLENGER,
    CHAMPION,
    ENFORCE_GATES_TAG,
    FALLBACK,
    FALLBACK_PINNED_TAG,
    GATES_BYPASSED_TAG,
    Event,
)

if TYPE_CHECKING:
    from mlflow_plugin.controller._controller import Controller
    from mlflow_plugin.controller._protocols import LockLike

__all__ = ["REGISTRY_UI", "complete_interrupted", "reconcile"]

REGISTRY_UI = "registry-ui"
_EVENT_OF = {
    "promote": "deployment",
    "rollback": "rollback",
    "rollout_start": "deployment",  # all-at-once with a watch switches first
}


def complete_interrupted(ctl: Controller, model: str, lock: LockLike) -> list[Event]:
    """Record the operations of the dead holders ``lock`` replaced (see the module doc)."""
    stale = list(getattr(lock, "stale", []))
    if not stale:
        return []
    lock.stale.clear()
    registry, ledger = ctl.registry, ctl.ledger
    ledger.end_prepared(model)
    info = registry.get_model(model)
    champion = info.aliases.get(CHAMPION)
    recorded = ctl._recorded_champion(model)
    me = actor()
    written: list[Event] = []
    for dead in stale:
        intent: dict[str, Any] = dict(dead.intent)
        op = str(intent.get("op", "operation"))
        who = str(intent.get("actor") or "unknown")
        version = str(intent.get("version") or "")
        event_type = _EVENT_OF.get(op)
        moved = champion is not None and champion != recorded
        if event_type and moved and (not version or version == champion):
            # The alias write went through: the operation happened; record it as itself.
            reason = str(intent.get("reason") or f"{op} of version {champion}")
            written.append(
                ledger.record(
                    event_type,
                    model,
                    version=champion,
                    from_version=recorded or "",
                    message=f"{reason} (completed by {me} after an interrupted {op})",
                    who=who,
                    strategy=str(intent.get("strategy", "")) if event_type == "deployment" else "",
                    extra={"interrupted_op": op, "completed_by": me, "reconciled": "true"},
                )
            )
            _finish_aliases(ctl, model, info, op, str(champion), recorded)
            recorded = champion
        elif op.startswith("rollout_"):
            written.append(_rollout_repair.recover_op(ctl, model, intent, who, me, champion))
        else:
            what = f"{op} of version {version}" if version else op
            written.append(
                ledger.record(
                    "error",
                    model,
                    version=version,
                    from_version=champion or "",
                    message=(
                        f"interrupted {what} by {who} ({dead.owner}): nothing had changed; "
                        f"lock broken by {me}"
                    ),
                    extra={"interrupted_op": op, "completed_by": me},
                )
            )
    written.extend(_rollout_repair.repair(ctl, model, lock))
    ctl._mirror(model, champion, registry.get_model(model).aliases.get(CHALLENGER))
    return written


def _finish_aliases(
    ctl: Controller, model: str, info: Any, op: str, champion: str, previous: str | None
) -> None:
    """The alias writes that go with the champion's: challenger and fallback."""
    registry = ctl.registry
    if op == "promote" and info.aliases.get(CHALLENGER) == champion:
        registry.delete_alias(model, CHALLENGER)
    if info.tags.get(FALLBACK_PINNED_TAG) == "true":
        return
    if op == "promote" and previous:
        registry.set_alias(model, FALLBACK, previous)
    elif op == "rollback":
        history = ctl.champion_events(model)
        nxt = last_known_good(history, champion)
        if nxt:
            registry.set_alias(model, FALLBACK, nxt)
        elif FALLBACK in info.aliases:
            registry.delete_alias(model, FALLBACK)


def reconcile(ctl: Controller, model: str, lock: LockLike, enforce: bool | None) -> list[Event]:
    """The body of :meth:`Controller.reconcile`, run under the model's lock."""
    registry, ledger = ctl.registry, ctl.ledger
    written = complete_interrupted(ctl, model, lock)
    ended = ledger.end_prepared(model)  # a prepared run whose holder released without commit
    info = registry.get_model(model)
    champion = info.aliases.get(CHAMPION)
    recorded = ctl._recorded_champion(model)
    if enforce is None:
        enforce = info.tags.get(ENFORCE_GATES_TAG, "false").strip().lower() == "true"
    if champion != recorded:
        lock.check()
        if champion is None:
            written.append(
                ledger.record(
                    "config_change",
                    model,
                    version="",
                    from_version=recorded or "",
                    message="champion alias removed outside the controller",
                    who=REGISTRY_UI,
                    extra={"champion_removed": "true"},
                )
            )
        else:
            versions = ctl._versions(model)
            failed = (
                gate_failures(versions[champion]) if champion in versions else ["version=missing"]
            )
            message = "champion alias moved outside the controller"
            extra = {"reconciled": "true"}
            if failed:
                message += f"; WARNING: gates bypassed ({', '.join(failed)})"
                extra[GATES_BYPASSED_TAG] = ",".join(failed)
            written.append(
                ledger.record(
                    "deployment",
                    model,
                    version=champion,
                    from_version=recorded or "",
                    message=message,
                    who=REGISTRY_UI,
                    strategy="all_at_once",
                    extra=extra,
                )
            )
            if failed and enforce:
                written.append(_revert(ctl, model, lock, champion, recorded, failed, versions))
                champion = registry.get_model(model).aliases.get(CHAMPION)
    written.extend(_rollout_repair.repair(ctl, model, lock))
    champion = registry.get_model(model).aliases.get(CHAMPION)
    changes = ctl._mirror(model, champion, registry.get_model(model).aliases.get(CHALLENGER))
    if changes:
        caused_by_us = bool(ended) or any(e.actor != REGISTRY_UI for e in written)
        written.append(
            ledger.record(
                "config_change",
                model,
                version=champion or "",
                from_version=champion or "",
                message="stage mirror repaired: " + ", ".join(changes),
                who=None if caused_by_us else REGISTRY_UI,
                extra={"setting": "stage_mirror"},
            )
        )
    return written


def _revert(
    ctl: Controller,
    model: str,
    lock: LockLike,
    bypassed: str,
    recorded: str | None,
    failed: list[str],
    versions: dict[str, Any],
) -> Event:
    """Gate enforcement: the champion goes back to the last recorded one (or is removed)."""
    registry, ledger = ctl.registry, ctl.ledger
    why = (
        f"gate enforcement: version {bypassed} was made champion outside the controller "
        f"without passing its gates ({', '.join(failed)})"
    )
    extra = {"enforced": "true", GATES_BYPASSED_TAG: ",".join(failed)}
    lock.check()
    if recorded and recorded in versions:
        registry.set_alias(model, CHAMPION, recorded)
        return ledger.record(
            "rollback",
            model,
            version=recorded,
            from_version=bypassed,
            message=f"{why}; reverted to version {recorded}",
            extra=extra,
        )
    registry.delete_alias(model, CHAMPION)
    return ledger.record(
        "config_change",
        model,
        version="",
        from_version=bypassed,
        message=f"{why}; no earlier champion, champion alias removed",
        extra={**extra, "champion_removed": "true"},
    )
