"""Rollouts left half-done: by a killed process, or by hands in the registry UI.

- :func:`recover_op`: a dead holder's rollout operation is recorded as the event it announced
  on its lock (``event``, and ``expect``: the tag value that shows it went through), or as an
  ``error`` when its effect is not in the registry;
- :func:`repair`: the registry's rollout state made consistent again (run by ``reconcile``, so
  by every operator pass, and after every recovery), each repair one ledger event:

  ======================================================== ====================================
  found                                                    done
  ======================================================== ====================================
  ``canary``/``preview`` alias or rollout tags, no id       removed (``config_change``)
  champion = the rollout's version, phase not watching      canary: tags removed; blue-green:
                                                            phase ``watching`` (``config_change``)
  watching, champion is another version                     watch ended (``rollout_aborted``)
  the phase's alias missing or moved                        rollout aborted (``rollout_aborted``)
  champion moved away from ``from_version`` mid-rollout     rollout aborted (``rollout_aborted``)
  ======================================================== ====================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlflow_plugin.rollouts._context import RolloutContext
from mlflow_plugin.rollouts._state import (
    CANARY,
    PREVIEW,
    ROLLOUT_PREFIX,
    ROLLOUT_TAGS,
    RolloutState,
)
from mlflow_plugin.types import CHAMPION, Event

if TYPE_CHECKING:
    from mlflow_plugin.controller._controller import Controller
    from mlflow_plugin.controller._protocols import LockLike

__all__ = ["recover_op", "repair"]


def _satisfied(state: RolloutState | None, expect: str, rid: str) -> bool:
    if expect == "ended":
        return state is None or state.rollout_id != rid
    key, _, value = expect.partition("=")
    if state is None or state.rollout_id != rid or key not in ROLLOUT_TAGS:
        return False
    return state.to_tags()[ROLLOUT_TAGS[key]] == value


def recover_op(
    ctl: Controller, model: str, intent: dict[str, Any], who: str, me: str, champion: str | None
) -> Event:
    """Record a dead holder's rollout operation (see the module docstring)."""
    op = str(intent.get("op"))
    rid = str(intent.get("rollout_id") or "")
    state = RolloutState.from_tags(ctl.registry.get_model(model).tags)
    event_type = str(intent.get("event") or "")
    version = str(intent.get("version") or "")
    if event_type and rid and _satisfied(state, str(intent.get("expect") or ""), rid):
        extra = {"interrupted_op": op, "completed_by": me, "reconciled": "true", "rollout_id": rid}
        if event_type == "rollout_aborted":
            extra["rollback"] = "true"
        reason = str(intent.get("reason") or op)
        return ctl.ledger.record(
            event_type,
            model,
            version=version,
            from_version=champion or "",
            message=f"{reason} (completed by {me} after an interrupted {op})"[:1000],
            who=who,
            strategy=str(intent.get("strategy") or ""),
            extra=extra,
        )
    return ctl.ledger.record(
        "error",
        model,
        version=version,
        from_version=champion or "",
        message=f"interrupted {op} by {who}: not completed; lock broken by {me}",
        extra={"interrupted_op": op, "completed_by": me},
    )


def repair(ctl: Controller, model: str, lock: LockLike) -> list[Event]:
    """Make the registry's rollout state consistent (see the module docstring)."""
    from mlflow_plugin.rollouts import _state_machine as _rollout_ops
    from mlflow_plugin.rollouts._rollouts import alias_of

    ro = ctl.rollouts
    info = ctl.registry.get_model(model)
    state = RolloutState.from_tags(info.tags)
    champion = info.aliases.get(CHAMPION, "")
    strays = [a for a in (CANARY, PREVIEW) if a in info.aliases]

    def note(version: str, message: str) -> Event:
        return ctl.ledger.record(
            "config_change",
            model,
            version=version,
            from_version=champion,
            message=message,
            extra={"setting": "rollout", "repaired": "true"},
        )

    if state is None:
        leftovers = [k for k in info.tags if k.startswith(ROLLOUT_PREFIX)]
        if not leftovers and not strays:
            return []
        lock.check()
        ro.clear(model, info)
        what = ", ".join([f"alias {a} (v{info.aliases[a]})" for a in strays])
        what += (", " if what and leftovers else "") + (
            f"{len(leftovers)} rollout tags" if leftovers else ""
        )
        version = next((info.aliases[a] for a in strays), "")
        return [note(version, f"half-written rollout removed ({what}): no rollout id recorded")]
    need = alias_of(state)
    ctx = RolloutContext(ro, model, lock, info, state)
    if champion == state.version and state.phase != "watching":
        lock.check()
        if state.strategy == "canary":
            ro.clear(model, info)
            return [
                note(state.version, f"canary v{state.version} is champion: rollout state removed")
            ]
        _rollout_ops.watching(ctx)
        return [note(state.version, f"blue-green switch to v{state.version} completed: watching")]
    if state.phase == "watching" and champion != state.version:
        why = f"champion is v{champion or '-'}, not v{state.version}: the watch ended"
        return [ctx.finish("rollout_aborted", why)]
    if need and info.aliases.get(need) != state.version:
        where = info.aliases.get(need)
        how = f"moved to v{where}" if where else "removed"
        why = f"alias {need} {how} outside the controller: rollout aborted, champion untouched"
        return [ctx.finish("rollout_aborted", why)]
    if state.phase != "watching" and champion != state.from_version:
        why = (
            f"champion moved from v{state.from_version} to v{champion or '-'} during the "
            "rollout: rollout aborted"
        )
        return [ctx.finish("rollout_aborted", why)]
    extra = [a for a in strays if a != need]
    if extra:
        lock.check()
        for alias in extra:
            ctl.registry.delete_alias(model, alias)
        return [note(state.version, f"stray alias {', '.join(extra)} removed")]
    return []
