"""Rollback: the champion goes back to the last known good version (or a named one), and the
fallback moves past the version left behind. The operation of
:class:`~mlflow_plugin.controller.Controller` (``rollback``), under the model's lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlflow_plugin._internal.concurrency import parallel as _parallel
from mlflow_plugin._internal.failpoint import failpoint
from mlflow_plugin.controller._history import CHAMPION_EVENTS, gate_failures, last_known_good
from mlflow_plugin.errors import BadInput, GateFailed, NotFound
from mlflow_plugin.settings import actor
from mlflow_plugin.types import (
    CHAMPION,
    FALLBACK,
    FALLBACK_PINNED_TAG,
    Event,
    Outcome,
    check_model_name,
    check_version,
)

if TYPE_CHECKING:
    from mlflow_plugin.controller._controller import Controller

__all__ = ["rollback"]


def rollback(
    ctl: Controller,
    model: str,
    *,
    reason: str,
    to_version: str | int | None = None,
    force: bool = False,
) -> Outcome:
    """The body of :meth:`Controller.rollback` (its docstring says what it does)."""
    check_model_name(model)
    if not reason or not reason.strip():
        raise BadInput("rollback needs a non-empty --reason")
    wanted = check_version(to_version, what="--to-version") if to_version is not None else None
    intent = {"op": "rollback", "version": wanted or "", "actor": actor(), "reason": reason}
    with ctl.registry.lock(model, intent=intent) as lock:
        ctl._recover(model, lock)
        failpoint("rollback.locked")
        # One round trip for everything the decision needs (and the ownership check); the
        # ledger is read once: its champion events and the chain's head for the commit.
        info, (events, head), versions, _ = _parallel(
            lambda: ctl.registry.get_model(model),
            lambda: ctl.ledger.history(model),
            lambda: ctl._versions(model),
            lock.check,
        )
        history = [e for e in events if e.event_type in CHAMPION_EVENTS]
        current = info.aliases.get(CHAMPION)
        if current is None:
            raise BadInput(f"{model!r} has no champion to roll back from")
        target_version = wanted or last_known_good(history, current)
        if target_version is None:
            raise BadInput(f"{model!r} has no earlier champion to roll back to")
        if target_version == current:
            raise BadInput(f"version {current} is already champion of {model!r}")
        if target_version not in versions:
            raise NotFound(f"{model!r} has no version {target_version}")
        target = versions[target_version]
        failed = gate_failures(target)
        if failed and not force:
            raise GateFailed(
                f"rollback target {model} version {target.version} failed its gates "
                f"({', '.join(failed)}); use --force to roll back anyway",
                failed,
            )
        if ctl.rollouts.end_for_rollback(model, lock, reason, info) is not None:
            info, head = ctl.registry.get_model(model), None  # an event was appended
        alias_writes = [
            lambda: ctl.registry.set_alias(model, CHAMPION, target.version),
            lambda: lock.annotate(version=target.version, from_version=current),
            *_fallback_after_rollback(ctl, model, info, history, current, target.version),
        ]
        extra = {"forced": "true", "forced_gates": ",".join(failed)} if force and failed else {}
        event = ctl._switch(
            lock,
            model,
            versions,
            info,
            target.version,
            alias_writes,
            "rollback",
            op="rollback",
            force=force,
            from_version=current,
            message=reason,
            extra=extra,
            head=head,
        )
    return Outcome(event, f"{model} rolled back: champion {current} -> {target.version}")


def _fallback_after_rollback(
    ctl: Controller, model: str, info: Any, history: list[Event], current: str, target: str
) -> list[Callable[[], object]]:
    """The version we left is bad: the fallback becomes the next good one, if any."""
    if info.tags.get(FALLBACK_PINNED_TAG) == "true":
        return []
    rolled = Event("rollback", model, version=target, from_version=current)
    nxt = last_known_good([*history, rolled], target)
    if nxt:
        return [lambda: ctl.registry.set_alias(model, FALLBACK, nxt)]
    if FALLBACK in info.aliases:
        return [lambda: ctl.registry.delete_alias(model, FALLBACK)]
    return []
