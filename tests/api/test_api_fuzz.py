"""Property-based fuzzing of the REST API from its OpenAPI schema, on a real auth-enabled
server: a client's bad request is a 4xx with one clear line, never a 5xx."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from api_fixtures import MODEL, ORGS, RETENTION_MODEL, Orgs

pytestmark = pytest.mark.integration

PREFIX = "/api/model-deployment/organizations"
ALICE = ORGS["org-a"]


def basic(user: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()


class TestFuzzing:
    """Schemathesis over every route, in-process, as org-a's user and as nobody."""

    def test_no_server_error_on_any_request(self, orgs: Orgs) -> None:
        """Valid requests (org-a, alice's credentials, random or real model names) and invalid
        ones: never a 5xx, and every documented answer matches the schema."""
        from fuzzing import fuzz, load
        from schemathesis.python.asgi import shutdown_lifespans

        from mlflow_plugin.api import create_app

        member = {
            "path_parameters": {"organizationId": "org-a"},
            "headers": {"Authorization": basic(ALICE)},
        }
        # and with a model that exists, so that cases reach the registry and the controller
        overrides = [member, {**member, "query": {"model": MODEL}}]
        try:
            found = fuzz("api", load(create_app(orgs.uri)), overrides=overrides, examples=10)
        finally:
            shutdown_lifespans()
        print("\n" + found.report())
        assert found.failures == {}, found.failures
        assert found.statuses[200] and found.statuses[400]


class TestRetention:
    @pytest.mark.parametrize("window", [1e308, 10**400, "3651d"])
    def test_a_window_past_ten_years_is_400(self, orgs: Orgs, window: Any) -> None:
        """protect_window 1e308 (days) would overflow the date arithmetic: 400, nothing done."""
        import json

        import requests

        body = json.dumps(
            {"model": RETENTION_MODEL, "dry_run": True, "rules": {"protect_window": window}}
        )
        resp = requests.post(
            f"{orgs.api}{PREFIX}/org-a/retention",
            data=body,
            headers={"Content-Type": "application/json"},
            auth=ALICE,
            timeout=60,
        )
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert "protect_window" in error["message"] and "3650d" in error["message"]
        assert "\n" not in error["message"]
