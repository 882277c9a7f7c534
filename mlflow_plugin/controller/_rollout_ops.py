"""The rollout state machine: what pause, resume, abort, promote and an analysis verdict do.

Called by :class:`~mlflow_plugin.controller._rollout.Rollouts` under the model's lock with the
state just read. Transitions (each writes one ledger event unless marked "tags only")::

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
from dataclasses import replace
from typing import TYPE_CHECKING

from mlflow_plugin._errors import BadInput
from mlflow_plugin._types import CHAMPION, ModelInfo
from mlflow_plugin.controller._rollout_state import PREVIEW, RolloutState

if TYPE_CHECKING:
    from mlflow_plugin.controller._controller import Outcome
    from mlflow_plugin.controller._protocols import LockLike
    from mlflow_plugin.controller._rollout import Rollouts

__all__ = ["apply", "cutover", "switch"]


def _failpoint(name: str) -> None:
    from mlflow_plugin.controller._controller import _failpoint as point

    point(name)


def _outcome(event: object, message: str) -> Outcome:
    from mlflow_plugin.controller._controller import Outcome

    return Outcome(event, message)  # type: ignore[arg-type]


def apply(
    ro: Rollouts,
    model: str,
    lock: LockLike,
    info: ModelInfo,
    state: RolloutState,
    verb: str,
    reason: str,
    *,
    verdict: str = "",
    limits: tuple[int, int] = (0, 0),
    now: float | None = None,
) -> Outcome:
    champion = info.aliases.get(CHAMPION, "")
    if verb == "abort":
        kept = f"champion v{champion or '-'} untouched"
        event = ro.finish(
            model, lock, info, state, "rollout_aborted", f"rollout aborted: {reason}; {kept}"
        )
        return _outcome(event, f"{model}: {state.strategy} rollout of v{state.version} aborted")
    if verb == "pause":
        if state.phase == "paused":
            return _outcome(None, f"{model}: the rollout is already paused")
        return _pause(ro, model, lock, state, champion, reason)
    if verb == "resume":
        return _resume(ro, model, lock, state, champion)
    if verb == "promote":
        return _promote(ro, model, lock, info, state, champion, reason)
    return _decide(ro, model, lock, info, state, champion, verdict, reason, limits, now)


def _pause(
    ro: Rollouts, model: str, lock: LockLike, state: RolloutState, champion: str, reason: str
) -> Outcome:
    ro.intend(lock, state, "rollout_paused", "phase=paused", f"rollout paused: {reason}")
    lock.check()
    ro._write(model, replace(state, phase="paused", reason=reason), only=("phase", "reason"))
    event = ro.ledger.record(
        "rollout_paused",
        model,
        version=state.version,
        from_version=champion,
        message=f"rollout paused: {reason}"[:1000],
        strategy=state.strategy,
        extra={"rollout_id": state.rollout_id, "paused_phase": state.phase},
    )
    return _outcome(event, f"{model}: rollout of v{state.version} paused ({reason})")


def _resume(
    ro: Rollouts, model: str, lock: LockLike, state: RolloutState, champion: str
) -> Outcome:
    if state.phase != "paused":
        raise BadInput(f"{model!r}'s rollout is not paused (phase {state.phase})")
    phase = "watching" if champion == state.version else "running"
    new = replace(
        state, phase=phase, failures=0, inconclusive=0, window_start=time.time(), reason="resumed"
    )
    ro.intend(lock, state, "rollout_step", f"phase={phase}", "rollout resumed")
    lock.check()
    ro._write(model, new, only=("phase", "failures", "inconclusive", "window_start", "reason"))
    event = ro.ledger.record(
        "rollout_step",
        model,
        version=state.version,
        from_version=champion,
        message=f"rollout resumed ({phase}) at weight {state.weight:g}%",
        strategy=state.strategy,
        extra={
            "rollout_id": state.rollout_id,
            "resumed": "true",
            "from_weight": f"{state.weight:g}",
            "to_weight": f"{state.weight:g}",
        },
    )
    return _outcome(event, f"{model}: rollout of v{state.version} resumed ({phase})")


def _promote(
    ro: Rollouts,
    model: str,
    lock: LockLike,
    info: ModelInfo,
    state: RolloutState,
    champion: str,
    reason: str,
) -> Outcome:
    if champion == state.version:  # after the switch: end the watch now
        event = ro.finish(
            model,
            lock,
            info,
            state,
            "rollout_step",
            f"post-promotion watch of v{state.version} ended early: {reason}",
            extra={"from_weight": "100", "to_weight": "100", "watch": "ended"},
        )
        return _outcome(event, f"{model}: watch of v{state.version} ended")
    if state.strategy == "canary":
        return cutover(ro, model, lock, state, reason)
    return switch(ro, model, lock, state, reason)


def cutover(ro: Rollouts, model: str, lock: LockLike, state: RolloutState, reason: str) -> Outcome:
    """Canary -> champion: the deployment event (strategy canary), then the rollout ends."""
    lock.annotate(op="promote", version=state.version, strategy="canary", reason=reason[:500])
    outcome = ro.ctl.promote(
        model,
        state.version,
        strategy="canary",
        force=True,
        reason=f"canary rollout {state.weight:g}% -> 100%: {reason}"[:1000],
        rollout_id=state.rollout_id,
    )
    _failpoint("rollout.after_cutover")
    ro.clear(model, ro.registry.get_model(model))
    return _outcome(outcome.event, f"{model}: canary v{state.version} is champion")


def switch(
    ro: Rollouts,
    model: str,
    lock: LockLike,
    state: RolloutState,
    reason: str,
    now: float | None = None,
) -> Outcome:
    """Blue-green: champion -> the preview in one step; the previous one is kept for the watch.

    ``now`` is the clock of the analysis that decided the switch (the operator's pass), so the
    watch window and its "before the switch" baseline are on the prediction log's timeline."""
    lock.annotate(op="promote", version=state.version, strategy="blue_green", reason=reason[:500])
    outcome = ro.ctl.promote(
        model,
        state.version,
        strategy="blue_green",
        force=True,
        reason=f"blue-green switch: {reason}"[:1000],
        rollout_id=state.rollout_id,
    )
    watching(ro, model, lock, state, now)
    return _outcome(outcome.event, f"{model}: v{state.version} is champion (blue-green)")


def watching(
    ro: Rollouts, model: str, lock: LockLike, state: RolloutState, now: float | None = None
) -> None:
    """After a blue-green switch: phase ``watching`` until ``keep_previous_until``."""
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
    lock.check()
    ro._write(model, new)
    ro.registry.delete_alias(model, PREVIEW)


def _decide(
    ro: Rollouts,
    model: str,
    lock: LockLike,
    info: ModelInfo,
    state: RolloutState,
    champion: str,
    verdict: str,
    summary: str,
    limits: tuple[int, int],
    now: float | None,
) -> Outcome:
    if state.phase == "paused":
        return _outcome(None, f"{model}: the rollout is paused; nothing done")
    failure_limit, inconclusive_limit = limits
    now = time.time() if now is None else now
    if verdict == "success":
        if state.phase == "watching":
            if now < state.watch_until:
                lock.check()
                ro._write(
                    model,
                    replace(state, window_start=now, inconclusive=0, reason=summary),
                    only=("window_start", "inconclusive", "reason"),
                )
                return _outcome(None, f"{model}: watch of v{state.version}: analysis passed")
            event = ro.finish(
                model,
                lock,
                info,
                state,
                "rollout_step",
                f"post-promotion watch of v{state.version} passed: {summary}",
                extra={"from_weight": "100", "to_weight": "100", "watch": "passed"},
            )
            return _outcome(event, f"{model}: watch of v{state.version} passed")
        if state.strategy == "blue_green":
            return switch(ro, model, lock, state, f"pre-promotion analysis passed: {summary}", now)
        below = [s for s in state.steps if s < 100]
        nxt = state.step + 1
        if nxt >= len(below):
            return cutover(ro, model, lock, state, f"analysis passed: {summary}")
        weight = below[nxt]
        new = replace(
            state,
            step=nxt,
            weight=weight,
            step_started_at=now,
            window_start=now,
            failures=0,
            inconclusive=0,
            reason=summary,
        )
        ro.intend(lock, state, "rollout_step", f"step={nxt}", f"canary -> {weight:g}%")
        lock.check()
        ro._write(
            model,
            new,
            only=(
                "step",
                "weight",
                "step_started_at",
                "window_start",
                "failures",
                "inconclusive",
                "reason",
            ),
        )
        event = ro.ledger.record(
            "rollout_step",
            model,
            version=state.version,
            from_version=champion,
            message=f"canary {state.weight:g}% -> {weight:g}%: {summary}"[:1000],
            strategy=state.strategy,
            extra={
                "rollout_id": state.rollout_id,
                "from_weight": f"{state.weight:g}",
                "to_weight": f"{weight:g}",
                "step": str(nxt),
            },
        )
        return _outcome(event, f"{model}: canary v{state.version} {state.weight:g}% -> {weight:g}%")
    if verdict == "failure":
        failures = state.failures + 1
        if failures <= failure_limit:
            lock.check()
            ro._write(
                model,
                replace(state, failures=failures, window_start=now, reason=summary),
                only=("failures", "window_start", "reason"),
            )
            return _outcome(
                None, f"{model}: analysis failed ({failures}/{failure_limit} tolerated)"
            )
        if state.phase == "watching":
            return _roll_back(ro, model, lock, info, state, champion, summary)
        event = ro.finish(
            model,
            lock,
            info,
            state,
            "rollout_aborted",
            f"analysis failed: {summary}; champion v{champion} untouched",
        )
        return _outcome(event, f"{model}: rollout of v{state.version} aborted: {summary}")
    inconclusive = state.inconclusive + 1
    if inconclusive > inconclusive_limit:
        return _pause(
            ro,
            model,
            lock,
            state,
            champion,
            f"inconclusive {inconclusive} times in a row (inconclusive_limit "
            f"{inconclusive_limit}): {summary}",
        )
    lock.check()
    ro._write(
        model,
        replace(state, inconclusive=inconclusive, reason=summary),
        only=("inconclusive", "reason"),
    )
    return _outcome(None, f"{model}: analysis inconclusive ({inconclusive}/{inconclusive_limit})")


def _roll_back(
    ro: Rollouts,
    model: str,
    lock: LockLike,
    info: ModelInfo,
    state: RolloutState,
    champion: str,
    summary: str,
) -> Outcome:
    """A failed post-promotion analysis: back to the champion before the switch."""
    why = f"post-promotion analysis of v{state.version} failed: {summary}"
    if not state.from_version or champion != state.version:
        event = ro.finish(
            model,
            lock,
            info,
            state,
            "rollout_aborted",
            f"{why}; no earlier champion to roll back to",
        )
        return _outcome(event, f"{model}: watch aborted: {summary}")
    lock.annotate(op="rollback", version=state.from_version, reason=why[:500])
    outcome = ro.ctl.rollback(model, reason=why[:1000], to_version=state.from_version, force=True)
    return _outcome(outcome.event, outcome.message)
