"""Organisations (MLflow workspaces) and the REST API on a real auth-enabled server: MLflow's
permission check decides, one organisation never reaches another, every write is an event."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests
from api_fixtures import ADMIN, MODEL, ORGS, Orgs, as_user
from click.testing import CliRunner

from mlflow_plugin._workspace import Scope
from mlflow_plugin.cli import main
from mlflow_plugin.ledger import Ledger
from mlflow_plugin.registry import Registry

pytestmark = pytest.mark.integration

PREFIX = "/api/model-deployment/organizations"
ALICE, BOB = ORGS["org-a"], ORGS["org-b"]


def call(
    orgs: Orgs, method: str, path: str, user: tuple[str, str] | None, **kwargs: Any
) -> requests.Response:
    return requests.request(method, orgs.api + path, auth=user, timeout=60, **kwargs)


def snapshot(orgs: Orgs, workspace: str) -> tuple[list[str], dict[str, str]]:
    """What an organisation's ledger and model look like (read as the admin)."""
    scope = Scope(workspace, *ADMIN)
    events = [e.run_id for e in Ledger(orgs.uri, scope=scope).events()]
    return events, Registry(orgs.uri, scope=scope).get_model(MODEL).aliases


def _error(resp: requests.Response) -> dict[str, Any]:
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return dict(body["error"])


class TestIsolation:
    """A user of organisation A reaches nothing of organisation B."""

    def test_api_refuses_every_route_of_another_organisation(self, orgs: Orgs) -> None:
        """List, read, deploy, roll back, delete, metrics, cicd, events: 403/404, nothing written."""
        before = snapshot(orgs, "org-b")
        b = f"{PREFIX}/org-b"
        attempts = [
            ("GET", f"{b}/models", {}),
            ("GET", f"{b}/models/1", {"params": {"model": MODEL}}),
            ("POST", f"{b}/deploy", {"json": {"model": MODEL, "version": "1"}}),
            ("POST", f"{b}/rollback", {"json": {"model": MODEL, "reason": "x"}}),
            ("DELETE", f"{b}/models/4", {"params": {"model": MODEL}}),
            ("GET", f"{b}/metrics", {"params": {"model": MODEL}}),
            ("POST", f"{b}/cicd", {"json": {"model": MODEL, "schedule": "0 2 * * *"}}),
            ("GET", f"{b}/events", {}),
            ("GET", f"{b}/status", {"params": {"model": MODEL}}),
        ]
        for method, path, kwargs in attempts:
            resp = call(orgs, method, path, ALICE, **kwargs)
            assert resp.status_code in (403, 404), (method, path, resp.status_code, resp.text)
            _error(resp)
        assert call(orgs, "GET", f"{b}/models", None).status_code == 401
        assert call(orgs, "GET", f"{b}/models", (BOB[0], "wrong")).status_code == 401
        assert snapshot(orgs, "org-b") == before

    def test_cli_with_another_organisations_workspace_is_refused(
        self, orgs: Orgs, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``--workspace org-b`` with alice's credentials (CLI, serve, tick): exit 2, one line,
        nothing written."""
        before = snapshot(orgs, "org-b")
        as_user(monkeypatch, ALICE, "org-a")
        runner = CliRunner()
        base = ["--tracking-uri", orgs.uri, "--workspace", "org-b"]
        for args in (
            ["status", MODEL],
            ["promote", MODEL, "--version", "1"],
            ["rollback", MODEL, "--reason", "x"],
            ["events"],
            ["serve", MODEL, "--port", "0"],
            ["tick"],
        ):
            result = runner.invoke(main, [*base, *args])
            assert result.exit_code == 2, (args, result.output)
            assert len(result.output.strip().splitlines()) == 1, result.output
        assert snapshot(orgs, "org-b") == before

    def test_cli_names_a_missing_or_malformed_workspace(
        self, orgs: Orgs, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A workspace that does not exist, or is no workspace name: one line, exit 2."""
        as_user(monkeypatch, ADMIN, "org-a")
        runner = CliRunner()
        for workspace in ("no-such-org", "../org-b", "Org-B", "org-b'; DROP TABLE x"):
            result = runner.invoke(
                main, ["--tracking-uri", orgs.uri, "--workspace", workspace, "status", MODEL]
            )
            assert result.exit_code == 2, (workspace, result.output)
            assert len(result.output.strip().splitlines()) == 1, result.output


TRAVERSAL = [
    "../org-b",
    "..%2forg-b",
    "%2e%2e%2forg-b",
    "%252e%252e%252f",
    "org-b%00",
    "ｏｒｇ-ｂ",  # fullwidth look-alikes
    "org‐b",  # unicode hyphen
    "org-b'; DROP TABLE runs; --",
    "ORG-B",
]


class TestPathParameters:
    """Hostile path parameters are 400/404 and never reach another organisation."""

    @pytest.mark.parametrize("payload", TRAVERSAL)
    def test_organization_id(self, orgs: Orgs, payload: str) -> None:
        """organizationId payloads: 400/404, JSON error, nothing looked up elsewhere."""
        for method, suffix in (("GET", "models"), ("POST", "deploy"), ("GET", "metrics")):
            resp = call(
                orgs,
                method,
                f"{PREFIX}/{payload}/{suffix}",
                ALICE,
                params={"model": MODEL},
                json={"model": MODEL, "version": "1"},
            )
            assert resp.status_code in (400, 404), (payload, suffix, resp.status_code)
            _error(resp)

    @pytest.mark.parametrize("payload", [*TRAVERSAL, "1%2f..%2f2", "٣", "0", "-1", "1e3"])
    def test_version_and_model(self, orgs: Orgs, payload: str) -> None:
        """version and model payloads: 400/404 and organisation B unchanged."""
        before = snapshot(orgs, "org-b")
        a = f"{PREFIX}/org-a"
        for method in ("GET", "DELETE"):
            resp = call(orgs, method, f"{a}/models/{payload}", ALICE, params={"model": MODEL})
            assert resp.status_code in (400, 404), (method, payload, resp.status_code)
            _error(resp)
        # a model name is looked up in the caller's own organisation only; MLflow's auth
        # answers 403 for a model that does not exist there
        resp = call(orgs, "GET", f"{a}/models/1", ALICE, params={"model": payload})
        assert resp.status_code in (400, 403, 404), (payload, resp.status_code)
        _error(resp)
        assert snapshot(orgs, "org-b") == before


class TestApi:
    """Deploy, rollback, delete, cicd and the ledger, as the organisation's own user."""

    def test_deploy_rollback_delete_and_events(self, orgs: Orgs) -> None:
        """Every mutating call is one event with the caller as actor; protected versions stay."""
        a = f"{PREFIX}/org-a"
        v = orgs.versions["org-a"]
        before = len(
            call(orgs, "GET", f"{a}/events", ALICE, params={"model": MODEL}).json()["events"]
        )
        r1 = call(orgs, "POST", f"{a}/deploy", ALICE, json={"model": MODEL, "version": v[0]})
        assert r1.status_code == 200, r1.text
        r2 = call(orgs, "POST", f"{a}/promote", ALICE, json={"model": MODEL, "version": v[1]})
        assert r2.status_code == 200, r2.text
        r3 = call(orgs, "POST", f"{a}/rollback", ALICE, json={"model": MODEL, "reason": "bad"})
        assert r3.status_code == 200, r3.text
        assert r3.json()["event"]["version"] == v[0]
        # the champion (v[0]) and the fallback cannot be deleted: 409 and nothing written
        status = call(orgs, "GET", f"{a}/status", ALICE, params={"model": MODEL}).json()
        for protected in {status["champion"], status["fallback"]} - {None}:
            resp = call(orgs, "DELETE", f"{a}/models/{protected}", ALICE, params={"model": MODEL})
            assert resp.status_code == 409, resp.text
            assert _error(resp)["code"] == "conflict"
        doomed = v[3]
        resp = call(orgs, "DELETE", f"{a}/models/{doomed}", ALICE, params={"model": MODEL})
        assert resp.status_code == 200, resp.text
        assert (
            call(orgs, "GET", f"{a}/models/{doomed}", ALICE, params={"model": MODEL}).status_code
            == 404
        )
        cicd = {
            "model": MODEL,
            "schedule": "0 2 * * 1",
            "triggers": {"brier_increase": 0.1},
            "strategy": "canary",
        }
        resp = call(orgs, "POST", f"{a}/cicd", ALICE, json=cicd)
        assert resp.status_code == 200, resp.text
        stored = call(orgs, "GET", f"{a}/cicd", ALICE, params={"model": MODEL}).json()["pipeline"]
        assert stored["strategy"] == "canary" and stored["triggers"]["schedule"] == "0 2 * * 1"
        events = call(orgs, "GET", f"{a}/events", ALICE, params={"model": MODEL}).json()["events"]
        new = events[before:]
        assert [e["event_type"] for e in new] == [
            "deployment",
            "deployment",
            "rollback",
            "retention",
            "config_change",
        ]
        assert {e["actor"] for e in new} == {ALICE[0]}
        metrics = call(orgs, "GET", f"{a}/metrics", ALICE, params={"model": MODEL}).json()
        assert metrics["champion"] == v[0] and metrics["rollbacks"] >= 1

    def test_bad_bodies_are_400_with_the_reason(self, orgs: Orgs) -> None:
        """Broken JSON, unknown keys, an invalid pipeline: 400 naming the problem, no event."""
        a = f"{PREFIX}/org-a"
        before = snapshot(orgs, "org-a")
        cases = [
            (
                "POST",
                "deploy",
                {"data": b"{not json", "headers": {"content-type": "application/json"}},
            ),
            ("POST", "deploy", {"json": {"model": MODEL, "bogus": 1}}),
            ("POST", "deploy", {"json": [1, 2]}),
            ("POST", "rollback", {"json": {"model": MODEL}}),
            ("POST", "cicd", {"json": {"model": MODEL, "schedule": "every tuesday"}}),
            ("POST", "cicd", {"json": {"model": MODEL, "strategy": "yolo"}}),
            ("POST", "cicd", {"json": {"model": MODEL, "triggers": {"brier_increase": "lots"}}}),
        ]
        for method, route, kwargs in cases:
            resp = call(orgs, method, f"{a}/{route}", ALICE, **kwargs)
            assert resp.status_code == 400, (route, kwargs, resp.status_code, resp.text)
            assert _error(resp)["message"]
        assert (
            "schedule"
            in _error(
                call(orgs, "POST", f"{a}/cicd", ALICE, json={"model": MODEL, "schedule": "x"})
            )["message"]
        )
        assert snapshot(orgs, "org-a") == before

    def test_openapi_documents_every_route(self, orgs: Orgs) -> None:
        """/openapi.json lists the routes under the organisation prefix; /docs is served."""
        spec = requests.get(orgs.api + "/openapi.json", timeout=30).json()
        paths = {p.removeprefix(PREFIX + "/{organizationId}") for p in spec["paths"]}
        assert {
            "/models",
            "/models/{version}",
            "/deploy",
            "/rollback",
            "/retention",
            "/metrics",
            "/cicd",
            "/promote",
            "/events",
            "/status",
        } <= paths
        assert requests.get(orgs.api + "/docs", timeout=30).status_code == 200


def test_same_model_name_in_two_organisations_under_concurrent_promotions(orgs: Orgs) -> None:
    """alice and bob promote "churn" at once, a few threads each: each organisation's ledger
    holds only its own user's events, its chain is intact, its champion is its own version."""
    errors: list[str] = []

    def promote(workspace: str, user: tuple[str, str], version: str) -> None:
        resp = call(
            orgs,
            "POST",
            f"{PREFIX}/{workspace}/deploy",
            user,
            json={"model": MODEL, "version": version},
        )
        if resp.status_code not in (200, 409):
            errors.append(f"{workspace} v{version}: {resp.status_code} {resp.text}")

    threads = [
        threading.Thread(target=promote, args=(ws, ORGS[ws], orgs.versions[ws][i % 3]))
        for i in range(3)
        for ws in ORGS
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for workspace, (user, _) in ORGS.items():
        scope = Scope(workspace, *ADMIN)
        ledger = Ledger(orgs.uri, scope=scope)
        assert ledger.verify_chain(MODEL).ok
        actors = {e.actor for e in ledger.events(MODEL)}
        assert actors == {user}, (workspace, actors)
        champion = Registry(orgs.uri, scope=scope).get_model(MODEL).aliases["champion"]
        assert champion in orgs.versions[workspace][:3]


def test_cli_rollback_as_a_member_without_mlflow(
    orgs: Orgs, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """The controller commands' REST client on an auth-enabled server with workspaces: alice
    promotes and rolls back in her organisation (basic auth, workspace header, the membership
    check) without one module of mlflow imported; a wrong password is one line, exit 2."""
    from helpers import run_cli_without_mlflow

    v1, v2 = orgs.versions["org-a"][:2]
    base = ["--tracking-uri", orgs.uri, "--workspace", "org-a"]
    env = {
        "MLFLOW_TRACKING_USERNAME": ALICE[0],
        "MLFLOW_TRACKING_PASSWORD": ALICE[1],
        "MLFLOW_WORKSPACE": "org-a",
        "MLFLOW_PLUGIN_ACTOR": "alice",
    }
    runs = [
        [*base, "promote", MODEL, "--version", v1],
        [*base, "promote", MODEL, "--version", v2],
        [*base, "rollback", MODEL, "--reason", "member rollback", "--to-version", v1],
    ]
    result, proc = run_cli_without_mlflow(tmp_path, runs, env)
    assert result["codes"] == [0, 0, 0], proc.stderr[-3000:]
    assert result["mlflow_modules"] == []
    events = Ledger(orgs.uri, scope=Scope("org-a", *ADMIN)).events(MODEL)
    last = events[-1]
    assert (last.event_type, last.version, last.message) == ("rollback", v1, "member rollback")
    assert snapshot(orgs, "org-a")[1]["champion"] == v1
    before = snapshot(orgs, "org-a")
    wrong = {**env, "MLFLOW_TRACKING_PASSWORD": "wrong"}
    result, proc = run_cli_without_mlflow(
        tmp_path, [[*base, "rollback", MODEL, "--reason", "x"]], wrong
    )
    assert result["codes"] == [2] and proc.stderr.count("\n") == 1, proc.stderr
    assert "401" in proc.stderr and result["mlflow_modules"] == []
    assert snapshot(orgs, "org-a") == before
