"""Promotion: a candidate becomes challenger, then champion if its gates passed, or is
rejected; ``canary``/``blue_green`` (and a watched ``all_at_once``) hand over to the rollouts.
The operations of :class:`~mlflow_plugin.controller.Controller` (``promote``, ``set_challenger``,
``reject``), under the model's lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlflow_plugin._internal.concurrency import parallel as _parallel
from mlflow_plugin._internal.failpoint import failpoint
from mlflow_plugin.controller._history import GATE_REPORT_TAG, gate_failures
from mlflow_plugin.errors import BadInput, GateFailed, NotFound
from mlflow_plugin.rollouts._rollouts import check_no_rollout
from mlflow_plugin.settings import actor
from mlflow_plugin.types import (
    CHALLENGER,
    CHAMPION,
    FALLBACK,
    FALLBACK_PINNED_TAG,
    Event,
    Outcome,
    VersionInfo,
    check_model_name,
    check_strategy,
    check_version,
)

if TYPE_CHECKING:
    from mlflow_plugin.controller._controller import Controller

__all__ = ["promote", "reject", "set_challenger"]


def promote(
    ctl: Controller,
    model: str,
    version: str | int | None = None,
    *,
    strategy: str = "all_at_once",
    force: bool = False,
    reason: str = "",
    steps: tuple[float, ...] | None = None,
    interval_s: float | None = None,
    keep_previous_s: float | None = None,
    watch_s: float | None = None,
    rollout_id: str = "",
) -> Outcome:
    """The body of :meth:`Controller.promote` (its docstring says what it does)."""
    check_model_name(model)
    check_strategy(strategy)
    if force and not reason.strip():
        raise BadInput("--force needs a --reason")
    wanted = check_version(version) if version is not None else None
    if not rollout_id and (strategy != "all_at_once" or watch_s):
        info = ctl.registry.get_model(model)
        target = ctl.registry.get_version(model, wanted or _challenger(model, info))
        failed = _gate_check(ctl, model, target, info, strategy, force)
        return ctl.rollouts.start(
            model,
            target,
            strategy=strategy,
            message=reason or f"rollout of version {target.version}",
            steps=steps,
            interval_s=interval_s,
            keep_previous_s=keep_previous_s,
            watch_s=watch_s,
            force=force,
            extra={"gate_report": target.tags.get(GATE_REPORT_TAG, "")}
            | ({"forced": "true", "forced_gates": ",".join(failed)} if force and failed else {}),
        )
    # The switch itself: the model and its versions (the target's gate tags among them)
    # are read once, under the lock, in the round trip of its ownership check
    # (docs/ARCHITECTURE.md, "HTTP round trips and the tracking server").
    intent = {
        "op": "promote",
        "version": wanted or "",
        "actor": actor(),
        "reason": reason or (f"promoted version {wanted}" if wanted else ""),
        "strategy": strategy,
    }
    with ctl.registry.lock(model, intent=intent) as lock:
        ctl._recover(model, lock)
        failpoint("promote.locked")
        info, versions, _ = _parallel(
            lambda: ctl.registry.get_model(model), lambda: ctl._versions(model), lock.check
        )
        chosen = wanted or _challenger(model, info)
        if chosen not in versions:
            raise NotFound(f"{model!r} has no version {chosen}")
        target = versions[chosen]
        failed = _gate_check(ctl, model, target, info, strategy, force)
        check_no_rollout(model, info, rollout_id)
        current = info.aliases.get(CHAMPION)
        if current == target.version:
            return Outcome(None, f"{model} version {target.version} is already champion")
        message = reason or f"promoted version {target.version}"
        extra = {"gate_report": target.tags.get(GATE_REPORT_TAG, "")}
        if force:
            extra.update(forced="true", forced_gates=",".join(failed))
        alias_writes = [lambda: ctl.registry.set_alias(model, CHAMPION, target.version)]
        if not wanted:  # the challenger's version: what an interrupted holder was promoting
            alias_writes.append(lambda: lock.annotate(version=target.version, reason=message))
        if current and info.tags.get(FALLBACK_PINNED_TAG) != "true":
            alias_writes.append(lambda: ctl.registry.set_alias(model, FALLBACK, current))
        if info.aliases.get(CHALLENGER) == target.version:
            alias_writes.append(lambda: ctl.registry.delete_alias(model, CHALLENGER))
        event = ctl._switch(
            lock,
            model,
            versions,
            info,
            target.version,
            alias_writes,
            "deployment",
            op="promote",
            force=force,
            from_version=current or "",
            message=message,
            strategy=strategy,
            extra={k: v for k, v in extra.items() if v},
        )
    return Outcome(event, f"{model} version {target.version} is champion (was {current or 'none'})")


def _challenger(model: str, info: Any) -> str:
    if CHALLENGER not in info.aliases:
        raise BadInput(f"{model!r} has no {CHALLENGER!r} version; pass --version")
    return str(info.aliases[CHALLENGER])


def _gate_check(
    ctl: Controller, model: str, target: VersionInfo, info: Any, strategy: str, force: bool
) -> list[str]:
    """The gates ``target`` failed; without ``force`` a failure is recorded as a
    ``rejected`` event and raised as :class:`GateFailed`."""
    failed = gate_failures(target)
    if failed and not force:
        ctl.ledger.record(
            "rejected",
            model,
            version=target.version,
            from_version=info.aliases.get(CHAMPION, ""),
            message=f"promotion refused: {', '.join(failed)}",
            strategy=strategy,
            extra={"failed_gates": ",".join(failed)},
        )
        raise GateFailed(
            f"{model} version {target.version} not promoted: gates {', '.join(failed)}",
            failed,
        )
    return failed


def set_challenger(ctl: Controller, model: str, version: str | int) -> None:
    """The body of :meth:`Controller.set_challenger`."""
    v = check_version(version)
    intent = {"op": "set_challenger", "version": v, "actor": actor()}
    with ctl.registry.lock(model, intent=intent) as lock:
        ctl._recover(model, lock)
        info, versions, _ = _parallel(
            lambda: ctl.registry.get_model(model), lambda: ctl._versions(model), lock.check
        )
        if v not in versions:
            raise NotFound(f"{model!r} has no version {v}")
        # The alias and its mirror side by side: the mirror follows the alias, and a
        # failed alias write raises after both (reconcile repairs a stage left ahead).
        _parallel(
            lambda: ctl.registry.set_alias(model, CHALLENGER, v),
            *ctl._mirror_writes(model, versions, info.aliases.get(CHAMPION), v),
        )


def reject(
    ctl: Controller, model: str, version: str, failed: list[str], message: str = ""
) -> Event:
    """The body of :meth:`Controller.reject`."""
    v = check_version(version)
    with ctl.registry.lock(model, intent={"op": "reject", "version": v, "actor": actor()}) as lock:
        ctl._recover(model, lock)
        info, versions, _ = _parallel(
            lambda: ctl.registry.get_model(model), lambda: ctl._versions(model), lock.check
        )
        champion = info.aliases.get(CHAMPION)
        if info.aliases.get(CHALLENGER) == v:
            ctl.registry.delete_alias(model, CHALLENGER)
            if v in versions and versions[v].stage == "Staging" and ctl.stage_mirror:
                ctl.registry.set_stage(model, v, "None")
        return ctl.ledger.record(
            "rejected",
            model,
            version=v,
            from_version=champion or "",
            message=message or f"rejected: {', '.join(failed)}",
            extra={"failed_gates": ",".join(failed)},
        )
