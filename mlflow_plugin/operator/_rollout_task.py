"""The operator's ``rollout`` task: one analysis per due step, and the decision it leads to.

For a model with a rollout that is not paused, when its analysis is due (``interval_s`` after
the window started, one more interval per inconclusive analysis in a row, or the end of a
watch), both sides are read from the prediction log over the same window:

=================== ========================================= ===============================
phase / strategy    candidate                                 baseline
=================== ========================================= ===============================
running, canary     route ``canary``, the canary's version    route ``champion``, the champion
running, blue_green route ``preview``, the preview's version  route ``champion``, the champion
watching            route ``champion``, the new champion,     route ``champion``, the previous
                    since the window started                  champion, the same length of
                                                              time just before the switch
=================== ========================================= ===============================

:func:`mlflow_plugin.rollouts._analysis.judge` gives the verdict; the controller applies it
(:meth:`~mlflow_plugin.controller.Controller.rollouts`), writing the ledger event.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mlflow_plugin.policy import RolloutPolicy
from mlflow_plugin.rollouts._analysis import Analysis, Sample, judge

if TYPE_CHECKING:
    from mlflow_plugin.operator._tick import Operator, TickContext, TickTask
    from mlflow_plugin.rollouts._state import RolloutState

__all__ = ["analyse", "due", "looks", "rollout_task"]


def due(state: RolloutState, now: float) -> bool:
    """Whether the rollout's next analysis is due at ``now`` (epoch seconds)."""
    if state.phase == "paused":
        return False
    start = state.window_start or state.step_started_at
    if state.phase == "watching" and now >= state.watch_until:
        return True
    return now >= start + state.interval_s * (1 + state.inconclusive)


def looks(state: RolloutState, policy: RolloutPolicy) -> int:
    """An upper bound of the judged analyses of the rollout (Bonferroni's divisor)."""
    per_step = 1 + policy.failure_limit
    if state.phase == "watching":
        span = max(state.watch_until - state.step_started_at, state.interval_s)
        return math.ceil(span / state.interval_s) + policy.failure_limit
    if state.strategy == "canary":
        return per_step * max(1, len([s for s in state.steps if s < 100]))
    return per_step


def analyse(op: Operator, model: str, state: RolloutState, now: datetime) -> Analysis:
    """The verdict on the rollout's current window (see the module docstring)."""
    policy = op.policy.rollout
    if op.store is None:
        return Analysis("inconclusive", ("no prediction log to analyse",))
    from mlflow_plugin.rollouts._samples import route_sample

    registry = op.controller.registry
    start_ts = state.window_start or state.step_started_at
    start = datetime.fromtimestamp(start_ts, tz=UTC)
    new = registry.get_version(model, state.version)
    if state.phase == "watching":
        switched = state.step_started_at
        span = max(now.timestamp() - start_ts, 0.0)
        candidate = route_sample(op.store, model, new, "champion", start, now)
        baseline = (
            route_sample(
                op.store,
                model,
                registry.get_version(model, state.from_version),
                "champion",
                datetime.fromtimestamp(switched - span, tz=UTC),
                datetime.fromtimestamp(switched, tz=UTC),
            )
            if state.from_version
            else Sample()
        )
        names = (f"v{state.version} after the switch", f"v{state.from_version} before it")
    else:
        route = "canary" if state.strategy == "canary" else "preview"
        candidate = route_sample(op.store, model, new, route, start, now)
        old = registry.get_version(model, state.from_version)
        baseline = route_sample(op.store, model, old, "champion", start, now)
        names = (f"{route} v{state.version}", f"champion v{state.from_version}")
    return judge(candidate, baseline, policy, looks=looks(state, policy), names=names)


def rollout_task(op: Operator) -> TickTask:
    """The task for :attr:`Operator.tasks` (after ``degradation``)."""

    def rollout(ctx: TickContext) -> None:
        from mlflow_plugin.rollouts._state import RolloutState

        tags = ctx.extra.get("model_tags")
        if tags is None:
            tags = op.controller.registry.get_model(ctx.model).tags
        state = RolloutState.from_tags(tags)
        if state is None:
            return
        now = ctx.now.timestamp()
        if not due(state, now):
            return
        analysis = analyse(op, ctx.model, state, ctx.now)
        policy = op.policy.rollout
        outcome = op.controller.rollouts.decide(
            ctx.model,
            state.rollout_id,
            analysis.verdict,
            analysis.summary,
            limits=(policy.failure_limit, policy.inconclusive_limit),
            now=now,
            seen=state,
        )
        ctx.did(
            f"rollout v{state.version} ({state.strategy}): {outcome.message}: {analysis.summary}"
        )

    return rollout
