"""The rollout state machine: what pause, resume, abort, promote and an analysis verdict do.

Called by :class:`~mlflow_plugin.rollouts._rollouts.Rollouts` under the model's lock with the
state just read, as one :class:`~mlflow_plugin.rollouts._context.RolloutContext`. Transitions (each writes one ledger event unless marked "tags only")::

    canary running --success--> next weight (rollout_step) ... last weight --> champion
                                (deployment, strategy canary; aliases and tags removed)
    blue_green running --success--> champion switches (deployment, strategy blue_green),
                                phase watching, previous champion kept until keep_previous_until
    watching --success, watch over--> rollout_step "watch passed"; tags removed
    any running/watching --failure > failure_limit--> rollout_aborted (canary, preview);
                                watching: rollback to from_version (rollout_aborted + rollback)
    any --failure <= failure_limit--> count it, restart the window (tags only)
    any --inconclusive > inconclusive_limit--> rollout_paused with the reason
    any --inconclusive <= limit--> count it (tags only)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from mlflow_plugin._internal.failpoint import failpoint
from mlflow_plugin.errors import BadInput
from mlflow_plugin.rollouts._state import PREVIEW
from mlflow_plugin.types import Event, Outcome

if TYPE_CHECKING:
    from mlflow_plugin.rollouts._context import RolloutContext

__all__ = ["Decision", "apply", "cutover", "switch", "watching"]


@dataclass(frozen=True)
class Decision:
    """An analysis verdict to apply (``decide``): ``success``, ``failure`` or ``inconclusive``;
    ``limits`` = (failure_limit, inconclusive_limit); ``now`` (epoch seconds, None: the wall
    clock) decides whether a watch is over."""

    verdict: str
    limits: tuple[int, int] = (0, 0)
    now: float | None = None


@dataclass(frozen=True)
class _Step:
    """A transition that keeps the rollout going: its event, the tag value that proves it went
    through (``expect``), the reason announced on the lock, the tags it changes, the event's
    message and extra tags."""

    event_type: str
    expect: str
    announce: str
    changes: dict[str, Any]
    message: str
    extra: dict[str, str]


def _transition(ctx: RolloutContext, step: _Step) -> Event:
    """Announce ``step`` on the lock, write its tags, then record its event."""
    state = ctx.state
    ctx.intend(step.event_type, step.expect, step.announce)
    ctx.set(**step.changes)
    return ctx.ledger.record(
        step.event_type,
        ctx.model,
        version=state.version,
        from_version=ctx.champion,
        message=step.message[:1000],
        strategy=state.strategy,
        extra={"rollout_id": state.rollout_id, **step.extra},
    )


def _end_watch(ctx: RolloutContext, watch: str, message: str) -> Event:
    """The post-promotion watch is over (``watch``: how): the rollout ends."""
    extra = {"from_weight": "100", "to_weight": "100", "watch": watch}
    return ctx.finish("rollout_step", message, extra=extra)


def apply(ctx: RolloutContext, verb: str, reason: str, decision: Decision | None = None) -> Outcome:
    """Apply ``verb`` (``decide``: ``decision``) to the rollout ``ctx.state``, under its lock."""
    model, state = ctx.model, ctx.state
    if verb == "abort":
        kept = f"champion v{ctx.champion or '-'} untouched"
        event = ctx.finish("rollout_aborted", f"rollout aborted: {reason}; {kept}")
        return Outcome(event, f"{model}: {state.strategy} rollout of v{state.version} aborted")
    if verb == "pause":
        if state.phase == "paused":
            return Outcome(None, f"{model}: the rollout is already paused")
        return _pause(ctx, reason)
    if verb == "resume":
        return _resume(ctx)
    if verb == "promote":
        return _promote(ctx, reason)
    assert decision is not None, "decide needs a decision"
    return _decide(ctx, decision, reason)


def _pause(ctx: RolloutContext, reason: str) -> Outcome:
    step = _Step(
        event_type="rollout_paused",
        expect="phase=paused",
        announce=f"rollout paused: {reason}",
        changes={"phase": "paused", "reason": reason},
        message=f"rollout paused: {reason}",
        extra={"paused_phase": ctx.state.phase},
    )
    event = _transition(ctx, step)
    return Outcome(event, f"{ctx.model}: rollout of v{ctx.state.version} paused ({reason})")


def _resume(ctx: RolloutContext) -> Outcome:
    model, state = ctx.model, ctx.state
    if state.phase != "paused":
        raise BadInput(f"{model!r}'s rollout is not paused (phase {state.phase})")
    phase = "watching" if ctx.champion == state.version else "running"
    weight = f"{state.weight:g}"
    step = _Step(
        event_type="rollout_step",
        expect=f"phase={phase}",
        announce="rollout resumed",
        changes={
            "phase": phase,
            "failures": 0,
            "inconclusive": 0,
            "window_start": time.time(),
            "reason": "resumed",
        },
        message=f"rollout resumed ({phase}) at weight {weight}%",
        extra={"resumed": "true", "from_weight": weight, "to_weight": weight},
    )
    event = _transition(ctx, step)
    return Outcome(event, f"{model}: rollout of v{state.version} resumed ({phase})")


def _promote(ctx: RolloutContext, reason: str) -> Outcome:
    state = ctx.state
    if ctx.champion == state.version:  # after the switch: end the watch now
        why = f"post-promotion watch of v{state.version} ended early: {reason}"
        event = _end_watch(ctx, "ended", why)
        return Outcome(event, f"{ctx.model}: watch of v{state.version} ended")
    if state.strategy == "canary":
        return cutover(ctx, reason)
    return switch(ctx, reason)


def _to_champion(ctx: RolloutContext, strategy: str, reason: str, message: str) -> Outcome:
    """The rollout's version becomes champion through the controller's ``promote`` (its
    deployment event, with ``strategy``), announced on the lock first."""
    state = ctx.state
    ctx.lock.annotate(op="promote", version=state.version, strategy=strategy, reason=reason[:500])
    return ctx.ro.ctl.promote(
        ctx.model,
        state.version,
        strategy=strategy,
        force=True,
        reason=message[:1000],
        rollout_id=state.rollout_id,
    )


def cutover(ctx: RolloutContext, reason: str) -> Outcome:
    """Canary -> champion: the deployment event (strategy canary), then the rollout ends."""
    model, state = ctx.model, ctx.state
    why = f"canary rollout {state.weight:g}% -> 100%: {reason}"
    outcome = _to_champion(ctx, "canary", reason, why)
    failpoint("rollout.after_cutover")
    # The promotion moved the aliases: clear what the registry holds now, not ctx.info.
    ctx.ro.clear(model, ctx.ro.registry.get_model(model))
    return Outcome(outcome.event, f"{model}: canary v{state.version} is champion")


def switch(ctx: RolloutContext, reason: str, now: float | None = None) -> Outcome:
    """Blue-green: champion -> the preview in one step; the previous one is kept for the watch.

    ``now`` is the clock of the analysis that decided the switch (the operator's pass), so the
    watch window and its "before the switch" baseline are on the prediction log's timeline."""
    why = f"blue-green switch: {reason}"
    outcome = _to_champion(ctx, "blue_green", reason, why)
    watching(ctx, now)
    return Outcome(outcome.event, f"{ctx.model}: v{ctx.state.version} is champion (blue-green)")


def watching(ctx: RolloutContext, now: float | None = None) -> None:
    """After a blue-green switch: phase ``watching`` until ``keep_previous_until``."""
    state = ctx.state
    now = time.time() if now is None else now
    keep = now + (state.keep_previous_s or 3600.0)
    new = replace(
        state,
        phase="watching",
        weight=100.0,
        previous=state.from_version,
        keep_previous_until=keep,
        watch_until=keep,
        step_started_at=now,
        window_start=now,
        failures=0,
        inconclusive=0,
    )
    ctx.lock.check()
    ctx.ro.write(ctx.model, new)
    ctx.ro.registry.delete_alias(ctx.model, PREVIEW)


def _decide(ctx: RolloutContext, decision: Decision, summary: str) -> Outcome:
    model, state = ctx.model, ctx.state
    if state.phase == "paused":
        return Outcome(None, f"{model}: the rollout is paused; nothing done")
    failure_limit, inconclusive_limit = decision.limits
    now = time.time() if decision.now is None else decision.now
    if decision.verdict == "success":
        if state.phase == "watching":
            if now < state.watch_until:
                ctx.set(window_start=now, inconclusive=0, reason=summary)
                return Outcome(None, f"{model}: watch of v{state.version}: analysis passed")
            why = f"post-promotion watch of v{state.version} passed: {summary}"
            event = _end_watch(ctx, "passed", why)
            return Outcome(event, f"{model}: watch of v{state.version} passed")
        if state.strategy == "blue_green":
            return switch(ctx, f"pre-promotion analysis passed: {summary}", now)
        below = [s for s in state.steps if s < 100]
        nxt = state.step + 1
        if nxt >= len(below):
            return cutover(ctx, f"analysis passed: {summary}")
        weight = below[nxt]
        step = _Step(
            event_type="rollout_step",
            expect=f"step={nxt}",
            announce=f"canary -> {weight:g}%",
            changes={
                "step": nxt,
                "weight": weight,
                "step_started_at": now,
                "window_start": now,
                "failures": 0,
                "inconclusive": 0,
                "reason": summary,
            },
            message=f"canary {state.weight:g}% -> {weight:g}%: {summary}",
            extra={
                "from_weight": f"{state.weight:g}",
                "to_weight": f"{weight:g}",
                "step": str(nxt),
            },
        )
        event = _transition(ctx, step)
        return Outcome(event, f"{model}: canary v{state.version} {state.weight:g}% -> {weight:g}%")
    if decision.verdict == "failure":
        failures = state.failures + 1
        if failures <= failure_limit:
            ctx.set(failures=failures, window_start=now, reason=summary)
            return Outcome(None, f"{model}: analysis failed ({failures}/{failure_limit} tolerated)")
        if state.phase == "watching":
            return _roll_back(ctx, summary)
        event = ctx.finish(
            "rollout_aborted", f"analysis failed: {summary}; champion v{ctx.champion} untouched"
        )
        return Outcome(event, f"{model}: rollout of v{state.version} aborted: {summary}")
    inconclusive = state.inconclusive + 1
    if inconclusive > inconclusive_limit:
        return _pause(
            ctx,
            f"inconclusive {inconclusive} times in a row (inconclusive_limit "
            f"{inconclusive_limit}): {summary}",
        )
    ctx.set(inconclusive=inconclusive, reason=summary)
    return Outcome(None, f"{model}: analysis inconclusive ({inconclusive}/{inconclusive_limit})")


def _roll_back(ctx: RolloutContext, summary: str) -> Outcome:
    """A failed post-promotion analysis: back to the champion before the switch."""
    state = ctx.state
    why = f"post-promotion analysis of v{state.version} failed: {summary}"
    if not state.from_version or ctx.champion != state.version:
        event = ctx.finish("rollout_aborted", f"{why}; no earlier champion to roll back to")
        return Outcome(event, f"{ctx.model}: watch aborted: {summary}")
    ctx.lock.annotate(op="rollback", version=state.from_version, reason=why[:500])
    outcome = ctx.ro.ctl.rollback(
        ctx.model, reason=why[:1000], to_version=state.from_version, force=True
    )
    return Outcome(outcome.event, outcome.message)
