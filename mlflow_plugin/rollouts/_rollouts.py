"""Rollouts (canary, blue-green, the all-at-once watch) as controller operations.

Every operation holds the model's promotion lock, re-reads the state under it, writes the
registry (aliases ``canary``/``preview``, tags ``mlflow_plugin.rollout.*``) and one ledger event.
The tag ``mlflow_plugin.rollout.id`` is the commit point: written last when a rollout starts,
deleted first when it ends, so a reader never sees half a rollout, and a process killed in
between leaves a state that :mod:`._repair` recognises. See docs/ARCHITECTURE.md,
"Rollouts".
"""

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from mlflow_plugin._internal.concurrency import parallel as _parallel
from mlflow_plugin._internal.failpoint import failpoint
from mlflow_plugin.errors import BadInput
from mlflow_plugin.rollouts._context import RolloutContext
from mlflow_plugin.rollouts._options import (
    DEFAULT_INTERVAL_S,
    DEFAULT_KEEP_PREVIOUS_S,
    DEFAULT_STEPS,
)
from mlflow_plugin.rollouts._state import (
    CANARY,
    PREVIEW,
    ROLLOUT_PREFIX,
    ROLLOUT_TAGS,
    RolloutState,
)
from mlflow_plugin.rollouts._state_machine import Decision, apply
from mlflow_plugin.settings import actor
from mlflow_plugin.types import CHAMPION, Event, ModelInfo, Outcome, VersionInfo, check_model_name

if TYPE_CHECKING:
    from mlflow_plugin.controller._controller import Controller
    from mlflow_plugin.controller._protocols import LockLike

__all__ = [
    "DEFAULT_INTERVAL_S",
    "DEFAULT_KEEP_PREVIOUS_S",
    "DEFAULT_STEPS",
    "Rollouts",
    "alias_of",
    "check_no_rollout",
]

_ID_TAG = ROLLOUT_TAGS["rollout_id"]


def alias_of(state: RolloutState) -> str | None:
    """The alias the rollout's new version holds in its phase (None: only ``champion``)."""
    if state.phase == "watching":
        return None
    return {"canary": CANARY, "blue_green": PREVIEW}.get(state.strategy)


def check_no_rollout(model: str, info: ModelInfo, allowed_id: str = "") -> None:
    """Refuse a manual champion change while a rollout runs (its own cutover passes its id)."""
    state = RolloutState.from_tags(info.tags)
    if state is not None and state.rollout_id != allowed_id:
        raise BadInput(
            f"{model!r} has a {state.strategy} rollout of version {state.version} in progress "
            f"(phase {state.phase}); use 'mlflow-plugin rollout promote|abort {model}'"
        )


def _fmt_weight(w: float) -> str:
    return f"{w:g}%"


class Rollouts:
    """The rollout operations of one :class:`~mlflow_plugin.controller.Controller`."""

    def __init__(self, ctl: Controller) -> None:  # noqa: D107
        self.ctl = ctl
        self.registry = ctl.registry
        self.ledger = ctl.ledger

    # -- reading -------------------------------------------------------------------------
    def state(self, model: str) -> RolloutState | None:
        return RolloutState.from_tags(self.registry.get_model(check_model_name(model)).tags)

    def status(self, model: str, info: ModelInfo | None = None) -> dict[str, Any] | None:
        """The rollout as a JSON-ready dict (None: no rollout)."""
        info = info or self.registry.get_model(check_model_name(model))
        state = RolloutState.from_tags(info.tags)
        if state is None:
            return None
        out: dict[str, Any] = {
            k: getattr(state, k) for k in ROLLOUT_TAGS if k not in ("steps", "rollout_id")
        }
        out["rollout_id"] = state.rollout_id
        out["steps"] = list(state.steps)
        out["champion"] = info.aliases.get(CHAMPION)
        alias = alias_of(state)
        out["alias"] = {alias: info.aliases.get(alias)} if alias else {}
        return out

    # -- start ---------------------------------------------------------------------------
    def start(
        self,
        model: str,
        target: VersionInfo,
        *,
        strategy: str,
        message: str,
        steps: tuple[float, ...] | None = None,
        interval_s: float | None = None,
        keep_previous_s: float | None = None,
        watch_s: float | None = None,
        force: bool = False,
        extra: dict[str, str] | None = None,
    ) -> Outcome:
        """Start a canary / blue-green rollout, or an all-at-once promotion with a watch.

        The caller (:meth:`Controller.promote`) has checked the gates.
        """

        steps = steps or DEFAULT_STEPS
        if strategy == "canary" and not [s for s in steps if s < 100]:
            raise BadInput("--steps needs at least one share below 100 (100 is the cutover)")
        interval = interval_s or DEFAULT_INTERVAL_S
        rid = uuid.uuid4().hex[:12]
        intent = {
            "op": "rollout_start",
            "version": target.version,
            "strategy": strategy,
            "actor": actor(),
            "reason": message[:500],
            "rollout_id": rid,
            "event": "rollout_started",
            "expect": "phase=watching" if strategy == "all_at_once" else "phase=running",
        }
        with self.registry.lock(model, intent=intent) as lock:
            self.ctl._recover(model, lock)
            info, _ = _parallel(lambda: self.registry.get_model(model), lock.check)
            check_no_rollout(model, info)
            champion = info.aliases.get(CHAMPION)
            if champion == target.version:
                return Outcome(None, f"{model} version {target.version} is already champion")
            if not champion:
                what = "a --watch" if strategy == "all_at_once" else f"a {strategy} rollout"
                raise BadInput(
                    f"{model!r} has no champion to compare {what} with; "
                    "promote the first version with --strategy all_at_once"
                )
            now = time.time()
            if strategy == "all_at_once":
                return self._start_watch(
                    model, target, lock, rid, champion or "", message, interval, watch_s, force
                )
            extra = dict(extra or {})
            extra.update(
                self.ctl.integrity(model, target.version, force=force, model_tags=info.tags)
            )
            below = tuple(s for s in steps if s < 100) if strategy == "canary" else ()
            state = RolloutState(
                rollout_id=rid,
                strategy=strategy,
                version=target.version,
                from_version=champion or "",
                phase="running",
                steps=steps if strategy == "canary" else (),
                weight=below[0] if below else 0.0,
                interval_s=interval,
                started_at=now,
                step_started_at=now,
                window_start=now,
                keep_previous_until=0.0,
                watch_until=0.0,
                reason=message,
            )
            if strategy == "blue_green":
                state = replace(state, keep_previous_s=keep_previous_s or DEFAULT_KEEP_PREVIOUS_S)
            alias = alias_of(state)
            assert alias is not None
            lock.check()
            self.write(model, state, set_alias=(alias, target.version))
            if strategy == "canary":
                what = f"canary at {_fmt_weight(state.weight)}, steps {','.join(f'{s:g}' for s in steps)}"
            else:
                what = "blue-green: preview beside the champion"
            event = self.ledger.record(
                "rollout_started",
                model,
                version=target.version,
                from_version=champion or "",
                message=f"{message}: {what}, every {interval:g}s",
                strategy=strategy,
                extra={
                    **{k: v for k, v in extra.items() if v},
                    "rollout_id": rid,
                    "weight": f"{state.weight:g}",
                },
            )
        return Outcome(
            event, f"{model}: {strategy} rollout of version {target.version} started ({what})"
        )

    def _start_watch(
        self,
        model: str,
        target: VersionInfo,
        lock: LockLike,
        rid: str,
        champion: str,
        message: str,
        interval: float,
        watch_s: float | None,
        force: bool,
    ) -> Outcome:
        """All-at-once: the switch (today's promote), then the watch window's tags."""

        outcome = self.ctl.promote(
            model, target.version, force=force, reason=message, rollout_id=rid
        )
        now = time.time()
        assert watch_s is not None
        state = RolloutState(
            rollout_id=rid,
            strategy="all_at_once",
            version=target.version,
            from_version=champion,
            phase="watching",
            weight=100.0,
            interval_s=interval,
            started_at=now,
            step_started_at=now,
            window_start=now,
            watch_until=now + watch_s,
            previous=champion,
            keep_previous_until=now + watch_s,
            reason=message,
        )
        lock.check()
        self.write(model, state)
        self.ledger.record(
            "rollout_started",
            model,
            version=target.version,
            from_version=champion,
            message=f"post-promotion watch of version {target.version} for {watch_s:g}s",
            strategy="all_at_once",
            extra={"rollout_id": rid, "watch_until": f"{state.watch_until:.3f}"},
        )
        return Outcome(outcome.event, f"{outcome.message}; watching for {watch_s:g}s")

    # -- manual verbs --------------------------------------------------------------------
    def pause(self, model: str, reason: str, *, rollout_id: str = "") -> Outcome:
        if not reason.strip():
            raise BadInput("pause needs a non-empty --reason")
        return self._change(model, "pause", reason, rollout_id)

    def resume(self, model: str) -> Outcome:
        return self._change(model, "resume", "resumed by hand", "")

    def abort(self, model: str, reason: str, *, rollout_id: str = "") -> Outcome:
        if not reason.strip():
            raise BadInput("abort needs a non-empty --reason")
        return self._change(model, "abort", reason, rollout_id)

    def promote(self, model: str, reason: str = "", *, rollout_id: str = "") -> Outcome:
        """Skip the remaining steps: canary -> champion now, blue-green switches now, a watch
        ends now."""
        return self._change(model, "promote", reason or "promoted by hand", rollout_id)

    def decide(
        self,
        model: str,
        rollout_id: str,
        verdict: str,
        summary: str,
        *,
        limits: tuple[int, int],
        now: float | None = None,
        seen: RolloutState | None = None,
    ) -> Outcome:
        """Apply an analysis verdict (the operator's): ``limits`` = (failure_limit,
        inconclusive_limit); ``now`` (epoch seconds) decides whether a watch is over; ``seen``,
        the state the analysis was made on: if it changed meanwhile (another pass, a person),
        nothing is done."""
        decision = Decision(verdict, limits, now)
        return self._change(model, "decide", summary, rollout_id, decision=decision, seen=seen)

    # -- the one write path --------------------------------------------------------------
    def _change(
        self,
        model: str,
        verb: str,
        reason: str,
        rollout_id: str,
        *,
        decision: Decision | None = None,
        seen: RolloutState | None = None,
    ) -> Outcome:

        check_model_name(model)
        intent = {"op": f"rollout_{verb}", "actor": actor(), "reason": reason[:500]}
        with self.registry.lock(model, intent=intent) as lock:
            self.ctl._recover(model, lock)
            info, _ = _parallel(lambda: self.registry.get_model(model), lock.check)
            state = RolloutState.from_tags(info.tags)
            if seen is not None and state != seen:
                return Outcome(None, f"{model}: the rollout changed meanwhile; nothing done")
            if state is None or (rollout_id and state.rollout_id != rollout_id):
                if rollout_id:  # the operator's view is stale: someone else acted first
                    return Outcome(None, f"{model}: the rollout changed meanwhile; nothing done")
                raise BadInput(f"{model!r} has no rollout in progress")
            return apply(RolloutContext(self, model, lock, info, state), verb, reason, decision)

    def end_for_rollback(
        self, model: str, lock: LockLike, reason: str, info: ModelInfo
    ) -> Event | None:
        """A manual or automatic rollback: the rollout in progress is aborted first."""
        state = RolloutState.from_tags(info.tags)
        if state is None:
            return None
        ctx = RolloutContext(self, model, lock, info, state)
        return ctx.finish("rollout_aborted", f"rollout aborted by a rollback: {reason}")

    # -- writes --------------------------------------------------------------------------
    def write(
        self,
        model: str,
        state: RolloutState,
        *,
        set_alias: tuple[str, str] | None = None,
        only: tuple[str, ...] | None = None,
    ) -> None:
        """Write ``state``: the alias and every tag but the id together, the id last."""
        tags = state.to_tags()
        writes = [
            functools.partial(self.registry.set_model_tag, model, k, v)
            for k, v in tags.items()
            if k != _ID_TAG and (only is None or k in {ROLLOUT_TAGS[f] for f in only})
        ]
        if set_alias is not None:
            writes.append(functools.partial(self.registry.set_alias, model, *set_alias))
        _parallel(*writes)
        if only is None:
            failpoint("rollout.before_id")
            self.registry.set_model_tag(model, _ID_TAG, state.rollout_id)

    def clear(self, model: str, info: ModelInfo) -> None:
        """End a rollout in the registry: the id first, then the aliases and other tags."""
        if _ID_TAG in info.tags:
            self.registry.delete_model_tag(model, _ID_TAG)
        writes = [
            functools.partial(self.registry.delete_model_tag, model, k)
            for k in info.tags
            if k.startswith(ROLLOUT_PREFIX) and k != _ID_TAG
        ]
        writes += [
            functools.partial(self.registry.delete_alias, model, a)
            for a in (CANARY, PREVIEW)
            if a in info.aliases
        ]
        _parallel(*writes)
