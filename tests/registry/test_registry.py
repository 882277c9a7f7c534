"""The registry adapter and its promotion lock against a real ``mlflow server``."""

from __future__ import annotations

import time

import pytest

from mlflow_plugin import BadInput, NotFound, PromotionConflict
from mlflow_plugin.mlflow_io._client import make_client
from mlflow_plugin.registry._adapter import Registry, lock_model_name

from helpers import make_versions

pytestmark = pytest.mark.integration


@pytest.fixture(params=["mlflow", "rest"])
def registry(tracking_uri: str, request: pytest.FixtureRequest) -> Registry:
    """The adapter on MLflow's client, and on the REST client of the controller commands."""
    if request.param == "rest":
        return Registry(tracking_uri, client=make_client(tracking_uri, rest=True))
    return Registry(tracking_uri)


class TestRegistry:
    @pytest.mark.parametrize("alias", ["latest", "LATEST", "v1", "V12", "bad alias", ""])
    def test_reserved_or_invalid_alias_is_bad_input(
        self, registry, tracking_uri, model_name, alias
    ):
        """Aliases MLflow reserves or cannot store are refused before any call."""
        make_versions(tracking_uri, model_name, 1)
        with pytest.raises(BadInput):
            registry.set_alias(model_name, alias, "1")

    def test_unknown_model_and_version_are_not_found(self, registry, tracking_uri, model_name):
        """Unknown names get NotFound (exit 2) with the name in the message."""
        with pytest.raises(NotFound, match=model_name):
            registry.get_model(model_name)
        make_versions(tracking_uri, model_name, 1)
        with pytest.raises(NotFound, match="no version 7"):
            registry.get_version(model_name, 7)

    def test_alias_version_reads_one_alias(self, registry, tracking_uri, model_name):
        """alias_version returns the version or None."""
        make_versions(tracking_uri, model_name, 2)
        assert registry.alias_version(model_name, "champion") is None
        registry.set_alias(model_name, "champion", "2")
        assert registry.alias_version(model_name, "champion") == "2"
        # The record in one call (validate's champion): the version with its tags.
        registry.set_version_tag(model_name, "2", "mlflow_plugin.validation", "passed")
        info = registry.version_by_alias(model_name, "champion")
        assert info is not None and info.version == "2"
        assert info.tags["mlflow_plugin.validation"] == "passed"
        assert registry.version_by_alias(model_name, "fallback") is None

    def test_stage_calls_do_not_warn(self, registry, tracking_uri, model_name):
        """The stage mirror's own calls show no FutureWarning to users."""
        import warnings

        make_versions(tracking_uri, model_name, 1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            registry.set_stage(model_name, "1", "Production")
        assert not [w for w in caught if issubclass(w.category, FutureWarning)]
        assert registry.get_version(model_name, "1").stage == "Production"


class TestModelLock:
    def test_second_holder_waits_then_gives_up(self, registry, tracking_uri, model_name):
        """A held lock makes a second acquirer fail with PromotionConflict after its timeout."""
        make_versions(tracking_uri, model_name, 1)
        with registry.lock(model_name, intent={"op": "test"}):
            with pytest.raises(PromotionConflict, match="locked by"):
                # another process's view (the same registry object re-enters its own lock)
                Registry(tracking_uri).lock(model_name, timeout=1.0).acquire()
        with registry.lock(model_name, timeout=5.0) as lock:  # released: free again
            assert lock.held

    def test_expired_lease_is_broken_and_reported(self, registry, tracking_uri, model_name):
        """A lock whose lease ran out (holder on another host) is broken; its intent is kept."""
        make_versions(tracking_uri, model_name, 1)
        registry.client.create_registered_model(
            lock_model_name(model_name),
            tags={
                "mlflow_plugin.lock_owner": "other-host:1234:abcd",
                "mlflow_plugin.lock_expires": f"{time.time() - 1:.3f}",
                "mlflow_plugin.lock_intent": '{"op": "promote", "version": "1"}',
            },
        )
        with registry.lock(model_name, timeout=10.0) as lock:
            assert [(s.owner, s.intent["op"]) for s in lock.stale] == [
                ("other-host:1234:abcd", "promote"),
            ]

    def test_live_lease_on_other_host_is_respected(self, registry, tracking_uri, model_name):
        """A lock from another host whose lease is still running is not broken."""
        make_versions(tracking_uri, model_name, 1)
        registry.client.create_registered_model(
            lock_model_name(model_name),
            tags={
                "mlflow_plugin.lock_owner": "other-host:1234:abcd",
                "mlflow_plugin.lock_expires": f"{time.time() + 60:.3f}",
            },
        )
        with pytest.raises(PromotionConflict, match="other-host"):
            registry.lock(model_name, timeout=1.0).acquire()
