"""Rollouts (canary, blue-green, the all-at-once watch) against the in-memory registry."""

from __future__ import annotations

import time

import pytest

from mlflow_plugin import BadInput
from mlflow_plugin.controller import Controller
from mlflow_plugin.rollouts._state import ROLLOUT_TAGS, RolloutState
from mlflow_plugin.testing import InMemoryLedger, InMemoryRegistry

PASSED = {"mlflow_plugin.validation": "passed", "mlflow_plugin.backtest": "passed"}
LIMITS = (0, 1)


@pytest.fixture()
def ctl() -> Controller:
    """Versions 1-3 of "m" (gates passed), version 1 champion."""
    registry, ledger = InMemoryRegistry(), InMemoryLedger()
    for _ in range(3):
        registry.register_version("m", "src", None, dict(PASSED))
    controller = Controller(registry, ledger)
    controller.promote("m", "1")
    return controller


def _state(ctl: Controller) -> RolloutState | None:
    return ctl.rollouts.state("m")


def _kinds(ctl: Controller) -> list[str]:
    return [e.event_type for e in ctl.ledger.events("m")]


def _aliases(ctl: Controller) -> dict[str, str]:
    return ctl.registry.get_model("m").aliases


def _no_rollout_left(ctl: Controller) -> None:
    info = ctl.registry.get_model("m")
    assert not [k for k in info.tags if k.startswith("mlflow_plugin.rollout.")]
    assert "canary" not in info.aliases and "preview" not in info.aliases


class TestCanary:
    def test_walks_its_steps_to_champion(self, ctl):
        """Each passed analysis moves one step; after the last one below 100 the canary is
        champion, and the ledger shows every step in one intact chain."""
        ctl.promote("m", "2", strategy="canary", steps=(10, 50, 100), interval_s=60)
        state = _state(ctl)
        assert state and (state.weight, state.phase, state.from_version) == (10, "running", "1")
        assert _aliases(ctl)["canary"] == "2"
        step = ctl.rollouts.decide("m", state.rollout_id, "success", "ok", limits=LIMITS)
        assert step.event and step.event.extra["mlflow_plugin.to_weight"] == "50"
        assert _state(ctl).weight == 50
        done = ctl.rollouts.decide("m", state.rollout_id, "success", "ok", limits=LIMITS)
        assert done.event and done.event.event_type == "deployment"
        assert done.event.strategy == "canary" and done.event.from_version == "1"
        assert _aliases(ctl)["champion"] == "2" and _aliases(ctl)["fallback"] == "1"
        _no_rollout_left(ctl)
        assert _kinds(ctl) == ["deployment", "rollout_started", "rollout_step", "deployment"]
        assert ctl.verify_ledger("m").ok

    def test_failure_aborts_and_champion_is_untouched(self, ctl):
        """A failed analysis beyond failure_limit aborts: canary alias and tags gone, champion
        unchanged, rollout_aborted marked as a rollback with the reason."""
        ctl.promote("m", "2", strategy="canary")
        rid = _state(ctl).rollout_id
        out = ctl.rollouts.decide("m", rid, "failure", "error rate 0.30 vs 0.00", limits=(1, 1))
        assert out.event is None and _state(ctl).failures == 1  # tolerated once
        out = ctl.rollouts.decide("m", rid, "failure", "error rate 0.30 vs 0.00", limits=(1, 1))
        assert out.event.event_type == "rollout_aborted"
        assert out.event.extra["mlflow_plugin.rollback"] == "true"
        assert "error rate 0.30" in out.event.message
        assert _aliases(ctl)["champion"] == "1"
        _no_rollout_left(ctl)

    def test_inconclusive_pauses_after_the_limit_and_resume_continues(self, ctl):
        """No data is never success: inconclusive beyond the limit pauses with the reason;
        resume continues from the same weight, a paused rollout ignores verdicts."""
        ctl.promote("m", "2", strategy="canary")
        rid = _state(ctl).rollout_id
        ctl.rollouts.decide("m", rid, "inconclusive", "not enough traffic", limits=(0, 1))
        assert _state(ctl).phase == "running"
        out = ctl.rollouts.decide("m", rid, "inconclusive", "not enough traffic", limits=(0, 1))
        assert (
            out.event.event_type == "rollout_paused" and "not enough traffic" in out.event.message
        )
        assert _state(ctl).phase == "paused" and _state(ctl).weight == 10
        assert ctl.rollouts.decide("m", rid, "success", "ok", limits=LIMITS).event is None
        resumed = ctl.rollouts.resume("m")
        assert resumed.event.event_type == "rollout_step" and _state(ctl).phase == "running"
        assert _state(ctl).inconclusive == 0
        ctl.rollouts.decide("m", rid, "success", "ok", limits=LIMITS)
        assert _state(ctl).weight == 25

    def test_manual_verbs(self, ctl):
        """pause/abort need a reason; promote cuts over now; verbs without a rollout are bad input."""
        ctl.promote("m", "2", strategy="canary")
        with pytest.raises(BadInput):
            ctl.rollouts.pause("m", " ")
        with pytest.raises(BadInput):
            ctl.rollouts.resume("m")  # not paused
        ctl.rollouts.pause("m", "investigating")
        out = ctl.rollouts.promote("m", "looks fine")
        assert out.event.event_type == "deployment" and _aliases(ctl)["champion"] == "2"
        for verb in (ctl.rollouts.resume, lambda m: ctl.rollouts.abort(m, "x")):
            with pytest.raises(BadInput, match="no rollout"):
                verb("m")


class TestExclusion:
    def test_promote_during_rollout_is_refused(self, ctl):
        """A manual promote (any version) or a second rollout is refused while one runs."""
        ctl.promote("m", "2", strategy="canary")
        for version, strategy in (("3", "all_at_once"), ("2", "all_at_once"), ("3", "canary")):
            with pytest.raises(BadInput, match="rollout promote"):
                ctl.promote("m", version, strategy=strategy)
        assert _aliases(ctl)["champion"] == "1"

    def test_rollback_during_rollout_aborts_it_first(self, ctl):
        """A manual rollback aborts the rollout (event) and then rolls back."""
        ctl.promote("m", "3")
        ctl.promote("m", "2", strategy="canary")
        ctl.rollback("m", reason="bad v3")
        assert _kinds(ctl)[-2:] == ["rollout_aborted", "rollback"]
        assert "bad v3" in ctl.ledger.events("m")[-2].message
        assert _aliases(ctl)["champion"] == "1"
        _no_rollout_left(ctl)

    def test_concurrent_decisions_on_one_state_advance_once(self, ctl):
        """Two passes that analysed the same state race: one step, one event, not two."""
        from concurrent.futures import ThreadPoolExecutor

        ctl.promote("m", "2", strategy="canary")
        seen = _state(ctl)

        def decide(_: int) -> object:
            return ctl.rollouts.decide(
                "m", seen.rollout_id, "success", "ok", limits=LIMITS, seen=seen
            )

        with ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(decide, range(4)))
        assert sum(o.event is not None for o in outcomes) == 1
        assert _state(ctl).weight == 25 and _kinds(ctl).count("rollout_step") == 1

    def test_canary_needs_a_champion_and_steps_below_100(self):
        """No champion to compare with, or only a 100 % step, is bad input."""
        registry, ledger = InMemoryRegistry(), InMemoryLedger()
        registry.register_version("m", "src", None, dict(PASSED))
        controller = Controller(registry, ledger)
        with pytest.raises(BadInput, match="no champion"):
            controller.promote("m", "1", strategy="canary")
        controller.promote("m", "1")
        registry.register_version("m", "src", None, dict(PASSED))
        with pytest.raises(BadInput, match="below 100"):
            controller.promote("m", "2", strategy="canary", steps=(100.0,))


class TestBlueGreenAndWatch:
    def test_switch_then_failed_watch_switches_back(self, ctl):
        """Preview -> passed analysis -> champion in one step (deployment blue_green, phase
        watching, previous kept) -> failed watch -> rollback to the previous champion."""
        ctl.promote("m", "2", strategy="blue_green", keep_previous_s=600)
        assert _aliases(ctl)["preview"] == "2" and _aliases(ctl)["champion"] == "1"
        rid = _state(ctl).rollout_id
        out = ctl.rollouts.decide("m", rid, "success", "preview ok", limits=LIMITS)
        assert out.event.event_type == "deployment" and out.event.strategy == "blue_green"
        state = _state(ctl)
        assert (state.phase, state.previous) == ("watching", "1")
        assert state.keep_previous_until - state.step_started_at == pytest.approx(600)
        assert "preview" not in _aliases(ctl) and _aliases(ctl)["champion"] == "2"
        out = ctl.rollouts.decide("m", rid, "failure", "p99 latency 3x", limits=LIMITS)
        assert out.event.event_type == "rollback" and out.event.version == "1"
        assert "post-promotion analysis" in out.event.message and "p99" in out.event.message
        assert _kinds(ctl)[-3:] == ["deployment", "rollout_aborted", "rollback"]
        assert _aliases(ctl)["champion"] == "1"
        _no_rollout_left(ctl)

    def test_manual_promote_switches_then_ends_the_watch(self, ctl):
        """``rollout promote`` on a blue-green preview: the switch now (deployment blue_green,
        the preview alias gone, phase watching, the old champion kept as previous); promote
        again ends the watch early (rollout_step, watch ended); nothing is left."""
        ctl.promote("m", "2", strategy="blue_green", keep_previous_s=600)
        out = ctl.rollouts.promote("m", "mirror agrees")
        assert (out.event.event_type, out.event.strategy, out.event.version) == (
            "deployment",
            "blue_green",
            "2",
        )
        assert out.event.from_version == "1" and "mirror agrees" in out.event.message
        state = _state(ctl)
        assert (state.phase, state.previous, state.version) == ("watching", "1", "2")
        assert state.keep_previous_until > time.time()
        assert _aliases(ctl)["champion"] == "2" and "preview" not in _aliases(ctl)
        end = ctl.rollouts.promote("m")
        assert end.event.event_type == "rollout_step" and "ended early" in end.event.message
        assert _kinds(ctl) == [
            "deployment",
            "rollout_started",
            "deployment",
            "rollout_step",
        ]
        assert _aliases(ctl)["champion"] == "2"
        _no_rollout_left(ctl)

    def test_all_at_once_watch_passes_at_its_end(self, ctl):
        """all_at_once with a watch: the switch, then the watch; a success before the end only
        restarts the window, one at the end finishes it (rollout_step "watch passed")."""
        ctl.promote("m", "2", watch_s=600, interval_s=60)
        assert _kinds(ctl)[-2:] == ["deployment", "rollout_started"]
        state = _state(ctl)
        assert state.phase == "watching" and _aliases(ctl)["champion"] == "2"
        assert (
            ctl.rollouts.decide("m", state.rollout_id, "success", "ok", limits=LIMITS).event is None
        )
        end = ctl.rollouts.decide(
            "m", state.rollout_id, "success", "ok", limits=LIMITS, now=state.watch_until + 1
        )
        assert end.event.event_type == "rollout_step" and "passed" in end.event.message
        _no_rollout_left(ctl)

    def test_plain_all_at_once_is_unchanged(self, ctl):
        """Without --watch all_at_once is today's promote: one deployment, no rollout tags."""
        ctl.promote("m", "2")
        assert _kinds(ctl) == ["deployment", "deployment"]
        _no_rollout_left(ctl)


class TestRepair:
    def test_alias_without_tags_is_removed_and_recorded(self, ctl):
        """A killed start leaves the canary alias and tags but no id: reconcile removes them."""
        ctl.registry.set_alias("m", "canary", "2")
        ctl.registry.set_model_tag("m", ROLLOUT_TAGS["version"], "2")
        (event,) = ctl.reconcile("m")
        assert event.event_type == "config_change" and "half-written rollout" in event.message
        _no_rollout_left(ctl)

    def test_tags_without_alias_abort_the_rollout(self, ctl):
        """The canary alias deleted in the UI: the rollout is aborted, the champion untouched."""
        ctl.promote("m", "2", strategy="canary")
        ctl.registry.delete_alias("m", "canary")
        (event,) = ctl.reconcile("m")
        assert event.event_type == "rollout_aborted" and "alias canary removed" in event.message
        assert _aliases(ctl)["champion"] == "1"
        _no_rollout_left(ctl)

    def test_interrupted_step_is_completed_by_the_next_holder(self, ctl):
        """A holder killed after its step's tags were written: the next holder records the
        rollout_step it announced on its lock."""
        from mlflow_plugin.testing._memory import _Held

        ctl.promote("m", "2", strategy="canary")
        state = _state(ctl)
        ctl.registry.set_model_tag("m", ROLLOUT_TAGS["step"], "1")
        ctl.registry.set_model_tag("m", ROLLOUT_TAGS["weight"], "25")
        intent = {
            "op": "rollout_decide",
            "actor": "alice",
            "event": "rollout_step",
            "expect": "step=1",
            "rollout_id": state.rollout_id,
            "version": "2",
            "strategy": "canary",
            "reason": "canary -> 25%",
        }
        ctl.registry._locks["m"] = _Held("t", "dead:1", time.time() - 1, intent)
        written = ctl.reconcile("m")
        assert written[0].event_type == "rollout_step" and written[0].actor == "alice"
        assert "interrupted rollout_decide" in written[0].message
        assert ctl.verify_ledger("m").ok
