"""Controller logic against the in-memory registry and ledger (no server)."""

from __future__ import annotations

import pytest

from mlflow_plugin import BadInput, GateFailed
from mlflow_plugin.controller import Controller, last_known_good
from mlflow_plugin.testing import InMemoryLedger, InMemoryRegistry

PASSED = {"mlflow_plugin.validation": "passed", "mlflow_plugin.backtest": "passed"}


@pytest.fixture()
def memory() -> tuple[InMemoryRegistry, InMemoryLedger, Controller]:
    registry, ledger = InMemoryRegistry(), InMemoryLedger()
    return registry, ledger, Controller(registry, ledger)


def _versions(registry: InMemoryRegistry, n: int, tags: dict[str, str] | None = None) -> list[str]:
    return [
        registry.register_version("m", "src", None, dict(tags or PASSED)).version for _ in range(n)
    ]


class TestPromote:
    def test_promote_moves_champion_and_mirrors_stages(self, memory):
        """Promotion sets champion, Production for it, Archived for the replaced one."""
        registry, ledger, ctl = memory
        _versions(registry, 2)
        ctl.promote("m", "1")
        ctl.promote("m", "2")
        assert registry.get_model("m").aliases["champion"] == "2"
        assert registry.get_model("m").aliases["fallback"] == "1"
        assert [v.stage for v in registry.list_versions("m")] == ["Archived", "Production"]
        chain = [(e.version, e.from_version) for e in ledger.events("m", "deployment")]
        assert chain == [("1", ""), ("2", "1")]

    def test_failed_gate_is_rejected_and_recorded(self, memory):
        """A version whose validation failed is refused and a rejected event names the gate."""
        registry, ledger, ctl = memory
        _versions(registry, 1, {"mlflow_plugin.validation": "failed"})
        with pytest.raises(GateFailed) as info:
            ctl.promote("m", "1")
        assert info.value.failed == ["validation=failed", "backtest=missing"]
        (event,) = ledger.events("m")
        assert event.event_type == "rejected"
        assert "validation=failed" in event.message
        assert "champion" not in registry.get_model("m").aliases

    def test_force_needs_reason_and_is_recorded(self, memory):
        """--force without a reason is bad input; with one, the event says it was forced."""
        registry, ledger, ctl = memory
        _versions(registry, 1, {"mlflow_plugin.validation": "failed"})
        with pytest.raises(BadInput):
            ctl.promote("m", "1", force=True)
        ctl.promote("m", "1", force=True, reason="hotfix")
        (event,) = ledger.events("m", "deployment")
        assert event.extra["mlflow_plugin.forced"] == "true"
        assert event.message == "hotfix"

    def test_default_version_is_challenger(self, memory):
        """Without a version the challenger is promoted and loses its challenger alias."""
        registry, _, ctl = memory
        _versions(registry, 1)
        registry.set_alias("m", "challenger", "1")
        ctl.promote("m")
        assert registry.get_model("m").aliases == {"champion": "1"}

    def test_stage_mirror_off(self, memory):
        """With the mirror off no stage is touched."""
        registry, ledger, _ = memory
        ctl = Controller(registry, ledger, stage_mirror=False)
        _versions(registry, 1)
        ctl.promote("m", "1")
        assert registry.get_version("m", "1").stage == "None"

    @pytest.mark.parametrize("version", ["abc", "0", "-1", "1.5", ""])
    def test_bad_version_is_bad_input(self, memory, version):
        """Non-numeric or non-positive versions are rejected before anything changes."""
        registry, ledger, ctl = memory
        _versions(registry, 1)
        with pytest.raises(BadInput):
            ctl.promote("m", version)
        assert ledger.events() == []


class TestRollback:
    def test_rollback_skips_versions_rolled_back_from(self, memory):
        """Two rollbacks walk back v3 -> v2 -> v1, never back to a rolled-back version."""
        registry, ledger, ctl = memory
        _versions(registry, 3)
        for v in "123":
            ctl.promote("m", v)
        ctl.rollback("m", reason="v3 broke")
        assert registry.get_model("m").aliases["champion"] == "2"
        ctl.rollback("m", reason="v2 broke too")
        assert registry.get_model("m").aliases["champion"] == "1"
        rollbacks = ledger.events("m", "rollback")
        assert [(e.from_version, e.version) for e in rollbacks] == [("3", "2"), ("2", "1")]
        assert all(e.extra["mlflow_plugin.rollback"] == "true" for e in rollbacks)
        with pytest.raises(BadInput, match="no earlier champion"):
            ctl.rollback("m", reason="again")

    def test_rollback_without_champion_changes_nothing(self, memory):
        """No champion means a clear error and no event."""
        registry, ledger, ctl = memory
        _versions(registry, 1)
        with pytest.raises(BadInput, match="no champion"):
            ctl.rollback("m", reason="x")
        assert ledger.events() == []

    def test_rollback_needs_reason(self, memory):
        """An empty or blank reason is bad input."""
        _, _, ctl = memory
        with pytest.raises(BadInput, match="reason"):
            ctl.rollback("m", reason="  ")

    def test_rollback_refuses_failed_target_unless_forced(self, memory):
        """A target whose gates failed needs --force."""
        registry, ledger, ctl = memory
        _versions(
            registry, 1, {"mlflow_plugin.validation": "failed", "mlflow_plugin.backtest": "passed"}
        )
        _versions(registry, 1)
        ctl.promote("m", "2")
        with pytest.raises(GateFailed):
            ctl.rollback("m", reason="r", to_version="1")
        ctl.rollback("m", reason="r", to_version="1", force=True)
        assert registry.get_model("m").aliases["champion"] == "1"
        assert ledger.events("m", "rollback")[0].extra["mlflow_plugin.forced"] == "true"


class TestLastKnownGood:
    def test_empty_history(self):
        """No events, no last known good."""
        assert last_known_good([], None) is None


class TestFallbackAndReconcile:
    def test_fallback_enable_disable_are_config_changes(self, memory):
        """Enabling pins the alias and tags; each change is a config_change event."""
        registry, ledger, ctl = memory
        _versions(registry, 2)
        ctl.promote("m", "1")
        ctl.promote("m", "2")
        ctl.fallback_enable("m")
        assert ctl.fallback_status("m") == {
            "model": "m",
            "enabled": True,
            "version": "1",
            "pinned": False,
            "champion": "2",
        }
        ctl.fallback_disable("m")
        assert ctl.fallback_status("m")["enabled"] is False
        assert [e.message for e in ledger.events("m", "config_change")] == [
            "fallback enabled: version 1",
            "fallback disabled",
        ]

    def test_reconcile_records_alias_moved_by_hand(self, memory):
        """An alias moved outside the controller becomes a registry-ui deployment event."""
        registry, ledger, ctl = memory
        _versions(registry, 2)
        ctl.promote("m", "1")
        registry.set_alias("m", "champion", "2")  # as the registry UI would
        written = ctl.reconcile("m")
        assert [(e.event_type, e.actor, e.version, e.from_version) for e in written][0] == (
            "deployment",
            "registry-ui",
            "2",
            "1",
        )
        assert registry.get_version("m", "2").stage == "Production"
        assert registry.get_version("m", "1").stage == "Archived"
        assert ctl.reconcile("m") == []

    def test_reconcile_champion_deleted_by_hand(self, memory):
        """Deleting champion in the UI is recorded and nothing stays in Production."""
        registry, _, ctl = memory
        _versions(registry, 1)
        ctl.promote("m", "1")
        registry.delete_alias("m", "champion")
        written = ctl.reconcile("m")
        assert [(e.event_type, e.actor) for e in written] == [
            ("config_change", "registry-ui"),
            ("config_change", "registry-ui"),
        ]
        assert registry.get_version("m", "1").stage == "Archived"
        assert ctl.reconcile("m") == []


class TestChallenger:
    def test_set_challenger_mirrors_staging(self, memory):
        """A new challenger is Staging; the previous one leaves Staging."""
        registry, _, ctl = memory
        _versions(registry, 3)
        ctl.promote("m", "1")
        ctl.set_challenger("m", "2")
        ctl.set_challenger("m", "3")
        assert registry.get_model("m").aliases["challenger"] == "3"
        assert [v.stage for v in registry.list_versions("m")] == ["Production", "None", "Staging"]

    def test_reject_clears_challenger(self, memory):
        """A rejected challenger loses the alias and Staging; the champion is untouched."""
        registry, ledger, ctl = memory
        _versions(registry, 2)
        ctl.promote("m", "1")
        ctl.set_challenger("m", "2")
        ctl.reject("m", "2", ["c_index"], "worse than champion")
        assert registry.get_model("m").aliases == {"champion": "1"}
        assert registry.get_version("m", "2").stage == "None"
        (event,) = ledger.events("m", "rejected")
        assert (event.version, event.from_version, event.message) == (
            "2",
            "1",
            "worse than champion",
        )


class TestComposition:
    @pytest.mark.parametrize("name", ["promote", "set_challenger", "reject", "rollback"])
    def test_operations_are_methods_of_the_class(self, name):
        """Each operation is defined in Controller (go to definition lands there), documented,
        and takes the same parameters as the module function it delegates to."""
        import inspect

        from mlflow_plugin.controller import _promotion, _rollback

        method = getattr(Controller, name)
        body = getattr(_promotion if name != "rollback" else _rollback, name)
        assert method.__qualname__ == f"Controller.{name}" and inspect.getdoc(method)
        assert (
            list(inspect.signature(method).parameters)[1:]
            == list(inspect.signature(body).parameters)[1:]
        )
