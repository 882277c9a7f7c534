"""Workspace names, per-request context and the pipeline settings, without a server."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlflow_plugin._internal.concurrency import parallel
from mlflow_plugin.errors import BadInput, ConfigError
from mlflow_plugin.mlflow_io._workspace import check_workspace, scoped_key
from mlflow_plugin.policy._cicd import parse_pipeline
from mlflow_plugin.settings import acting_as, actor


def _mlflow_accepts(name: str) -> bool:
    from mlflow.exceptions import MlflowException
    from mlflow.store.workspace.abstract_store import WorkspaceNameValidator

    if name == "default":
        return True
    try:
        WorkspaceNameValidator.validate(name)
    except MlflowException:
        return False
    return True


def _ours_accepts(name: str) -> bool:
    try:
        check_workspace(name)
    except BadInput:
        return False
    return True


class TestWorkspaceNames:
    """Our check gives MLflow's answer, so a bad name is refused before any lookup."""

    @pytest.mark.parametrize(
        "name",
        [
            "org-a",
            "default",
            "a1",
            "../org-b",
            "%2e%2e%2f",
            "ｏｒｇ-ｂ",
            "org‐b",
            "ORG",
            "-a",
            "a-",
            "a",
            "api",
            "workspaces",
            "x" * 63,
            "x" * 64,
            "org-b'; DROP TABLE runs; --",
            "org b",
        ],
    )
    def test_hostile_and_edge_names(self, name: str) -> None:
        """Traversal, look-alikes, quotes, reserved and boundary lengths: same answer as MLflow."""
        assert _ours_accepts(name) == _mlflow_accepts(name)

    @given(st.text(max_size=70))
    def test_any_text(self, name: str) -> None:
        """Any text: same answer as MLflow's validator."""
        assert _ours_accepts(name) == _mlflow_accepts(name)

    def test_cache_keys_differ_per_workspace(self) -> None:
        """Two organisations on one server never share a cache key."""
        assert scoped_key("http://h", "org-a") != scoped_key("http://h", "org-b")


def test_actor_bound_to_a_request_holds_in_parallel_calls() -> None:
    """acting_as reaches the pool threads of parallel(), and stops at the block's end."""
    before = actor()
    with acting_as("alice"):
        assert parallel(actor, actor, actor) == ["alice"] * 3
    assert actor() == before


class TestPipelineSettings:
    """cicd documents are validated by the policy loader's rules and round-trip."""

    def test_round_trip(self) -> None:
        """The stored JSON parses back to the same settings."""
        doc = {
            "schedule": "0 2 * * 1",
            "triggers": {"brier_increase": 0.1, "min_history": "30d"},
            "strategy": "canary",
        }
        settings = parse_pipeline(doc)
        assert settings.triggers.schedule == "0 2 * * 1" and settings.strategy == "canary"
        assert parse_pipeline(settings.to_json()) == settings

    @pytest.mark.parametrize(
        ("doc", "needle"),
        [
            ({"schedule": "every day"}, "triggers.schedule"),
            ({"triggers": {"brier_increase": "lots"}}, "triggers.brier_increase"),
            ({"strategy": "yolo"}, "strategy"),
            ({"bogus": 1}, "bogus"),
            ([1, 2], "expected an object"),
            ("{not json", "not JSON"),
            ({"schedule": "0 2 * * *", "triggers": {"schedule": "0 3 * * *"}}, "differ"),
        ],
    )
    def test_invalid_documents_name_the_problem(self, doc: object, needle: str) -> None:
        """Each invalid document is one ConfigError naming the key."""
        with pytest.raises(ConfigError, match=needle):
            parse_pipeline(doc)


def test_operator_uses_the_stored_pipeline_settings() -> None:
    """A model's cicd schedule fires a retraining trigger though the policy file has none."""
    from datetime import UTC, datetime

    from mlflow_plugin.controller import Controller
    from mlflow_plugin.operator import Operator
    from mlflow_plugin.policy import Policy
    from mlflow_plugin.policy._cicd import PIPELINE_TAG
    from mlflow_plugin.testing import InMemoryLedger, InMemoryRegistry

    registry = InMemoryRegistry()
    controller = Controller(registry, InMemoryLedger())
    version = registry.register_version("churn", "s3://x", None, {}).version
    controller.promote("churn", version, force=True, reason="first")
    policy = Policy.default()
    assert policy.triggers is None
    later = datetime(2100, 1, 1, 3, tzinfo=UTC)  # long after the promotion: a schedule is due
    quiet = Operator(controller, policy, models=["churn"], clock=lambda: later).tick()
    assert not any("retrain" in a for a in quiet["churn"]), quiet
    stored = parse_pipeline({"schedule": "0 2 * * *", "strategy": "canary"}).to_json()
    registry.set_model_tag("churn", PIPELINE_TAG, stored)
    actions = Operator(controller, policy, models=["churn"], clock=lambda: later).tick()
    assert any("schedule" in a for a in actions["churn"]), actions
    fired = controller.ledger.events("churn", "retrain_triggered")
    assert len(fired) == 1 and "0 2 * * *" in fired[0].message


class TestApiEdge:
    """What the API answers before it asks MLflow anything (no server behind it)."""

    @pytest.fixture(scope="class")
    def api(self):
        from mlflow_plugin.api import create_app
        from mlflow_plugin.testing import AppServer

        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # nothing listens on port 9
            with AppServer(create_app("http://127.0.0.1:9", max_body_mb=0.001)) as server:
                yield server

    def test_errors_share_one_shape(self, api) -> None:
        """Too large (413), unknown route (404), bad organisation (400), no server (503)."""
        import json

        base = "/api/model-deployment/organizations"
        cases = [
            ("POST", f"{base}/org-a/deploy", "x" * 5000, 413, "request_too_large"),
            ("GET", f"{base}/org-a/nothing-here", None, 404, "not_found"),
            ("GET", f"{base}/..%2forg-b/models", None, 404, "not_found"),
            ("GET", f"{base}/Org%27--/models", None, 400, "bad_input"),
            ("GET", f"{base}/org-a/models", None, 503, "tracking_server_unavailable"),
        ]
        for method, path, body, status, code in cases:
            got, _, raw = api.raw_request(method, path, body, {"content-type": "application/json"})
            assert got == status, (path, got, raw)
            assert json.loads(raw)["error"]["code"] == code, raw
