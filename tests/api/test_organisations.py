"""Organisations (MLflow workspaces) and the REST API on a real auth-enabled server: MLflow's
permission check decides, one organisation never reaches another, every write is an event."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
from api_fixtures import (
    ADMIN,
    MODEL,
    ORGS,
    READER,
    RETENTION_MODEL,
    ROLLOUT_MODEL,
    SHARED_RETENTION_MODEL,
    Orgs,
    as_user,
)
from click.testing import CliRunner

from mlflow_plugin.cli import main
from mlflow_plugin.ledger._ledger import Ledger
from mlflow_plugin.mlflow_io._workspace import Scope
from mlflow_plugin.registry._adapter import Registry

pytestmark = pytest.mark.integration

PREFIX = "/api/model-deployment/organizations"
ALICE, BOB = ORGS["org-a"], ORGS["org-b"]


def call(
    orgs: Orgs, method: str, path: str, user: tuple[str, str] | None, **kwargs: Any
) -> requests.Response:
    return requests.request(method, orgs.api + path, auth=user, timeout=60, **kwargs)


def snapshot(
    orgs: Orgs, workspace: str, model: str = MODEL
) -> tuple[list[str], dict[str, str], dict[str, str], list[str]]:
    """What an organisation's ledger and model look like (read as the admin): events, aliases,
    tags and versions."""
    scope = Scope(workspace, *ADMIN)
    events = [e.run_id for e in Ledger(orgs.uri, scope=scope).events()]
    registry = Registry(orgs.uri, scope=scope)
    info = registry.get_model(model)
    versions = sorted(v.version for v in registry.list_versions(model))
    return events, info.aliases, info.tags, versions


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
            ("POST", f"{b}/retention", {"json": {"model": MODEL, "dry_run": False}}),
            ("GET", f"{b}/models/{MODEL}/rollout", {}),
            ("POST", f"{b}/models/{MODEL}/rollout/pause", {"json": {"reason": "x"}}),
            ("POST", f"{b}/models/{MODEL}/rollout/resume", {}),
            ("POST", f"{b}/models/{MODEL}/rollout/abort", {"json": {"reason": "x"}}),
            ("POST", f"{b}/models/{MODEL}/rollout/promote", {}),
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
            "/models/{name}/rollout",
            "/models/{name}/rollout/pause",
            "/models/{name}/rollout/resume",
            "/models/{name}/rollout/abort",
            "/models/{name}/rollout/promote",
        } <= paths
        assert requests.get(orgs.api + "/docs", timeout=30).status_code == 200


class TestRollouts:
    """The rollout verbs (Argo's, as ``mlflow-plugin rollout ...``) and deploy's rollout options,
    as org-a's user; org-b's user reaches none of it."""

    def test_canary_and_blue_green_through_the_api(self, orgs: Orgs) -> None:
        """deploy with strategy/steps/interval/keep_previous starts a rollout; status, pause,
        resume, promote and abort each write their event with the caller as actor."""
        a = f"{PREFIX}/org-a"
        m = f"{a}/models/{ROLLOUT_MODEL}/rollout"
        v = orgs.own[ROLLOUT_MODEL]
        deploy = f"{a}/deploy"
        before = len(
            call(orgs, "GET", f"{a}/events", ALICE, params={"model": ROLLOUT_MODEL}).json()[
                "events"
            ]
        )
        # no rollout: status is null, a verb is 409, an unknown model 404
        assert call(orgs, "GET", m, ALICE).json()["rollout"] is None
        resp = call(orgs, "POST", f"{m}/promote", ALICE)
        assert resp.status_code == 409 and _error(resp)["code"] == "conflict", resp.text
        resp = call(orgs, "GET", f"{a}/models/no-such-model/rollout", ALICE)
        assert resp.status_code in (403, 404), resp.text
        r = call(orgs, "POST", deploy, ALICE, json={"model": ROLLOUT_MODEL, "version": v[0]})
        assert r.status_code == 200, r.text
        # the CLI's option checks, naming the body's keys: 400 and nothing written
        unchanged = snapshot(orgs, "org-a", ROLLOUT_MODEL)
        for body, words in (
            ({"strategy": "all_at_once", "steps": "10,100"}, "steps"),
            ({"strategy": "canary", "keep_previous": "1h"}, "keep_previous"),
            ({"strategy": "canary", "steps": "50,10"}, "steps"),
            ({"strategy": "canary", "interval": "soon"}, "interval"),
            ({"strategy": "yolo"}, "strategy"),
        ):
            resp = call(
                orgs, "POST", deploy, ALICE, json={"model": ROLLOUT_MODEL, "version": v[1], **body}
            )
            assert resp.status_code == 400, (body, resp.text)
            message = _error(resp)["message"]
            assert words in message and "--" not in message, message
        assert snapshot(orgs, "org-a", ROLLOUT_MODEL) == unchanged

        # canary: start, status, pause (reason required), resume, promote (cutover)
        body = {
            "model": ROLLOUT_MODEL,
            "version": v[1],
            "strategy": "canary",
            "steps": [10, 50],
            "interval": "5m",
        }
        r = call(orgs, "POST", deploy, ALICE, json=body)
        assert r.status_code == 200, r.text
        assert r.json()["event"]["event_type"] == "rollout_started"
        state = call(orgs, "GET", m, ALICE).json()["rollout"]
        assert state["strategy"] == "canary" and state["version"] == v[1]
        assert state["steps"] == [10, 50, 100] and state["weight"] == 10
        assert state["interval_s"] == 300 and state["alias"] == {"canary": v[1]}
        # a manual promote of the same model is refused while the rollout runs
        r = call(orgs, "POST", deploy, ALICE, json={"model": ROLLOUT_MODEL, "version": v[2]})
        assert r.status_code == 400 and "rollout" in _error(r)["message"], r.text
        r = call(orgs, "POST", f"{m}/pause", ALICE, json={"reason": " "})
        assert r.status_code == 400 and "reason" in _error(r)["message"], r.text
        r = call(orgs, "POST", f"{m}/pause", ALICE, json={})
        assert r.status_code == 400, r.text
        r = call(orgs, "POST", f"{m}/pause", ALICE, json={"reason": "ticket 42"})
        assert r.status_code == 200 and r.json()["event"]["event_type"] == "rollout_paused"
        assert call(orgs, "GET", m, ALICE).json()["rollout"]["phase"] == "paused"

        # org-b's user: every verb on org-a's rollout refused, nothing written
        during = snapshot(orgs, "org-a", ROLLOUT_MODEL)
        for method, verb, kwargs in (
            ("GET", "", {}),
            ("POST", "/resume", {}),
            ("POST", "/abort", {"json": {"reason": "x"}}),
            ("POST", "/promote", {"json": {"reason": "x"}}),
            ("POST", "/pause", {"json": {"reason": "x"}}),
        ):
            resp = call(orgs, method, m + verb, BOB, **kwargs)
            assert resp.status_code in (403, 404), (verb, resp.status_code, resp.text)
            _error(resp)
        resp = call(orgs, "POST", deploy, BOB, json={**body, "version": v[2]})
        assert resp.status_code in (403, 404), resp.text
        assert snapshot(orgs, "org-a", ROLLOUT_MODEL) == during

        r = call(orgs, "POST", f"{m}/resume", ALICE)
        assert r.status_code == 200 and r.json()["event"]["event_type"] == "rollout_step"
        r = call(orgs, "POST", f"{m}/promote", ALICE, json={"reason": "looks good"})
        assert r.status_code == 200, r.text
        event = r.json()["event"]
        assert (event["event_type"], event["strategy"], event["version"]) == (
            "deployment",
            "canary",
            v[1],
        )
        assert call(orgs, "GET", m, ALICE).json()["rollout"] is None
        status = call(orgs, "GET", f"{a}/status", ALICE, params={"model": ROLLOUT_MODEL})
        assert status.json()["champion"] == v[1]

        # blue-green: start with keep_previous, promote = the switch, then abort ends the watch
        bg = {
            "model": ROLLOUT_MODEL,
            "version": v[2],
            "strategy": "blue_green",
            "keep_previous": "2h",
        }
        r = call(orgs, "POST", deploy, ALICE, json=bg)
        assert r.status_code == 200 and r.json()["event"]["event_type"] == "rollout_started"
        state = call(orgs, "GET", m, ALICE).json()["rollout"]
        assert state["alias"] == {"preview": v[2]} and state["keep_previous_s"] == 7200
        r = call(orgs, "POST", f"{m}/promote", ALICE)
        assert r.status_code == 200, r.text
        assert r.json()["event"]["strategy"] == "blue_green"
        state = call(orgs, "GET", m, ALICE).json()["rollout"]
        assert state["phase"] == "watching" and state["previous"] == v[1]
        assert state["champion"] == v[2]
        r = call(orgs, "POST", f"{m}/abort", ALICE, json={"reason": "done watching"})
        assert r.status_code == 200 and r.json()["event"]["event_type"] == "rollout_aborted"
        assert call(orgs, "GET", m, ALICE).json()["rollout"] is None

        events = call(orgs, "GET", f"{a}/events", ALICE, params={"model": ROLLOUT_MODEL}).json()
        new = events["events"][before:]
        assert [(e["event_type"], e["strategy"]) for e in new] == [
            ("deployment", "all_at_once"),
            ("rollout_started", "canary"),
            ("rollout_paused", "canary"),
            ("rollout_step", "canary"),
            ("deployment", "canary"),
            ("rollout_started", "blue_green"),
            ("deployment", "blue_green"),
            ("rollout_aborted", "blue_green"),
        ]
        assert {e["actor"] for e in new} == {ALICE[0]}


class TestRetention:
    """``POST retention``: the dry run changes nothing; the real run archives, deletes and
    writes one ``retention`` event with the caller as actor; org-b's user is refused."""

    def test_dry_run_then_real(self, orgs: Orgs) -> None:
        """Artifacts are listed, archived and deleted with the caller's workspace and
        credentials (the API process has none), archived where the server is configured to."""
        a = f"{PREFIX}/org-a"
        v = orgs.own[RETENTION_MODEL]
        rules = {"rules": [{"keep_last": 1}], "default": "delete"}
        body = {"model": RETENTION_MODEL, "rules": rules}
        archived = orgs.archive / "org-a" / RETENTION_MODEL
        before = snapshot(orgs, "org-a", RETENTION_MODEL)
        # org-b's user, dry run or not: refused, nothing written
        for dry in (True, False):
            resp = call(orgs, "POST", f"{a}/retention", BOB, json={**body, "dry_run": dry})
            assert resp.status_code in (403, 404), resp.text
            _error(resp)
        resp = call(orgs, "POST", f"{a}/retention", ALICE, json={**body, "rules": {"bogus": 1}})
        assert resp.status_code == 400, resp.text
        dry = call(orgs, "POST", f"{a}/retention", ALICE, json=body)  # dry_run by default
        assert dry.status_code == 200, dry.text
        report = dry.json()
        assert report["dry_run"] is True and report["event_run_id"] is None
        actions = {d["version"]: d["action"] for d in report["versions"]}
        assert actions == {v[2]: "keep", v[1]: "delete", v[0]: "delete"}, report
        assert snapshot(orgs, "org-a", RETENTION_MODEL) == before
        assert not archived.exists()

        real = call(orgs, "POST", f"{a}/retention", ALICE, json={**body, "dry_run": False})
        assert real.status_code == 200, real.text
        report = real.json()
        assert sorted(report["deleted"]) == sorted([v[0], v[1]]) and report["event_run_id"]
        assert set(report["archived"]) == {v[0], v[1]}
        assert report["bytes_reclaimed"] > 0
        for version in (v[0], v[1]):  # archived: the files are there
            assert (archived / f"v{version}" / "manifest.json").is_file()
        events, _, _, versions = snapshot(orgs, "org-a", RETENTION_MODEL)
        assert versions == [v[2]]
        rows = call(
            orgs,
            "GET",
            f"{a}/events",
            ALICE,
            params={"model": RETENTION_MODEL, "event": "retention"},
        ).json()["events"]
        assert [(e["run_id"], e["actor"]) for e in rows] == [(report["event_run_id"], ALICE[0])]

    def test_archive_location_in_the_body_is_400(self, orgs: Orgs, tmp_path: Any) -> None:
        """A request cannot choose where the API host writes: ``rules.archive_uri`` is refused
        (400, nothing written), dry run or not, whatever its value; a body without rules
        gets the default policy's."""
        a = f"{PREFIX}/org-a"
        before = snapshot(orgs, "org-a", RETENTION_MODEL)
        for where in (str(tmp_path / "elsewhere"), str(orgs.archive)):
            rules = {"archive_uri": where, "rules": [{"keep_last": 1}], "default": "delete"}
            for dry in (True, False):
                body = {"model": RETENTION_MODEL, "rules": rules, "dry_run": dry}
                resp = call(orgs, "POST", f"{a}/retention", ALICE, json=body)
                assert resp.status_code == 400, resp.text
                assert "archive_uri" in _error(resp)["message"]
        assert not (tmp_path / "elsewhere").exists()
        # without rules: the default policy's (keep everything), archived nowhere
        resp = call(orgs, "POST", f"{a}/retention", ALICE, json={"model": RETENTION_MODEL})
        assert resp.status_code == 200, resp.text
        assert {d["action"] for d in resp.json()["versions"]} == {"keep"}
        assert snapshot(orgs, "org-a", RETENTION_MODEL) == before

    def test_two_organisations_never_share_an_archive(self, orgs: Orgs) -> None:
        """The same model name and version in two organisations and one archive location:
        each version is archived under its organisation with its own run id, and an archive of
        the other organisation's version found at a version's path is refused (409), never
        reused to delete it."""
        import shutil

        model = SHARED_RETENTION_MODEL
        body = {
            "model": model,
            "rules": {"rules": [{"keep_last": 1}], "default": "delete"},
            "dry_run": False,
        }
        run_ids = {
            org: Registry(orgs.uri, scope=Scope(org, *ADMIN)).get_version(model, "1").run_id
            for org in ORGS
        }
        assert run_ids["org-a"] != run_ids["org-b"]
        resp = call(orgs, "POST", f"{PREFIX}/org-a/retention", ALICE, json=body)
        assert resp.status_code == 200, resp.text
        assert resp.json()["deleted"] == ["1"]
        assert snapshot(orgs, "org-b", model)[3] == ["1", "2"]  # org-b untouched

        # org-a's archive planted at org-b's path: org-b's v1 is not deleted against it
        planted = orgs.archive / "org-b" / model / "v1"
        shutil.copytree(orgs.archive / "org-a" / model / "v1", planted)
        resp = call(orgs, "POST", f"{PREFIX}/org-b/retention", BOB, json=body)
        assert resp.status_code == 409, resp.text
        assert "holds an archive of another version" in _error(resp)["message"]
        assert snapshot(orgs, "org-b", model)[3] == ["1", "2"]

        shutil.rmtree(planted)
        resp = call(orgs, "POST", f"{PREFIX}/org-b/retention", BOB, json=body)
        assert resp.status_code == 200, resp.text
        assert resp.json()["deleted"] == ["1"]
        for org in ORGS:
            manifest = json.loads((orgs.archive / org / model / "v1" / "manifest.json").read_text())
            assert (manifest["workspace"], manifest["model"], manifest["version"]) == (
                org,
                model,
                "1",
            )
            assert manifest["run_id"] == run_ids[org]


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


class TestWorkspaceFromTheEnvironment:
    """``MLFLOW_WORKSPACE`` alone (no ``--workspace``) puts the CLI, ``tick`` (the operator's
    pass) and the MLproject entry points in the caller's organisation."""

    def test_cli_tick_and_entry_point(self, orgs: Orgs, monkeypatch: pytest.MonkeyPatch) -> None:
        """org-a's own model is found, ticked and promoted by ``mlflow run . -e promote``; the
        deployment event is in org-a's ledger; org-b is untouched."""
        before = snapshot(orgs, "org-b")
        as_user(monkeypatch, ALICE, "org-a")
        runner = CliRunner()
        base = ["--tracking-uri", orgs.uri]
        status = runner.invoke(main, [*base, "status", ROLLOUT_MODEL, "--json"])
        assert status.exit_code == 0, status.output
        champion = json.loads(status.output)["champion"]
        target = next(v for v in orgs.own[ROLLOUT_MODEL] if v != champion)
        tick = runner.invoke(main, [*base, "tick", "--model", ROLLOUT_MODEL, "--json", "--no-wait"])
        assert tick.exit_code == 0, tick.output
        assert ROLLOUT_MODEL in json.loads(tick.output[tick.output.index("{") :])
        root = Path(__file__).resolve().parents[2]
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": orgs.uri,
            "MLFLOW_EXPERIMENT_NAME": "mlflow_plugin-tests",
            "MLFLOW_PLUGIN_ACTOR": "alice-by-mlflow-run",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        env.pop("MLFLOW_EXPERIMENT_ID", None)
        cmd = [sys.executable, "-m", "mlflow", "run", ".", "-e", "promote", "--env-manager"]
        cmd += ["local", "-P", f"model_name={ROLLOUT_MODEL}", "-P", f"version={target}"]
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        last = Ledger(orgs.uri, scope=Scope("org-a", *ADMIN)).events(ROLLOUT_MODEL)[-1]
        assert (last.event_type, last.version, last.actor) == (
            "deployment",
            target,
            "alice-by-mlflow-run",
        )
        assert snapshot(orgs, "org-b") == before


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


class TestPermissionBeforeState:
    """MLflow's permission check comes before any look at the model's state."""

    def writes(self, model: str, versions: list[str]) -> list[tuple[str, str, dict[str, Any]]]:
        a = f"{PREFIX}/org-a"
        m = f"{a}/models/{model}/rollout"
        return [
            ("POST", f"{a}/deploy", {"json": {"model": model, "version": versions[0]}}),
            ("POST", f"{a}/promote", {"json": {"model": model, "version": versions[-1]}}),
            ("POST", f"{a}/rollback", {"json": {"model": model, "reason": "x"}}),
            ("DELETE", f"{a}/models/{versions[0]}", {"params": {"model": model}}),
            ("POST", f"{a}/retention", {"json": {"model": model, "dry_run": False}}),
            ("POST", f"{a}/cicd", {"json": {"model": model, "schedule": "0 2 * * *"}}),
            ("POST", f"{m}/pause", {"json": {"reason": "x"}}),
            ("POST", f"{m}/resume", {}),
            ("POST", f"{m}/abort", {"json": {"reason": "x"}}),
            ("POST", f"{m}/promote", {}),
        ]

    def refused(self, orgs: Orgs, model: str, versions: list[str], state: str) -> None:
        before = snapshot(orgs, "org-a", model)
        for method, path, kwargs in self.writes(model, versions):
            resp = call(orgs, method, path, READER, **kwargs)
            assert resp.status_code == 403, (state, method, path, resp.status_code, resp.text)
            assert _error(resp)["code"] == "permission_denied"
        assert snapshot(orgs, "org-a", model) == before

    def test_read_only_member_gets_403_on_every_write_route_in_every_state(
        self, orgs: Orgs
    ) -> None:
        """No rollout, a running canary, a paused one: each write route is 403 for a reader."""
        a = f"{PREFIX}/org-a"
        m = f"{a}/models/{ROLLOUT_MODEL}/rollout"
        v = orgs.own[ROLLOUT_MODEL]
        status = call(orgs, "GET", f"{a}/status", READER, params={"model": ROLLOUT_MODEL})
        assert status.status_code == 200, status.text  # a member: reads are allowed
        dry = {"model": ROLLOUT_MODEL, "dry_run": True}
        assert call(orgs, "POST", f"{a}/retention", READER, json=dry).status_code == 200
        self.refused(orgs, ROLLOUT_MODEL, v, "no rollout")

        champion = status.json()["champion"]
        if champion is None:  # a canary needs a champion to compare with
            first = {"model": ROLLOUT_MODEL, "version": v[0]}
            assert call(orgs, "POST", f"{a}/deploy", ALICE, json=first).status_code == 200
            champion = v[0]
        canary = {
            "model": ROLLOUT_MODEL,
            "version": next(x for x in v if x != champion),
            "strategy": "canary",
            "steps": [10, 50],
            "interval": "5m",
        }
        r = call(orgs, "POST", f"{a}/deploy", ALICE, json=canary)
        assert r.status_code == 200, r.text
        try:
            self.refused(orgs, ROLLOUT_MODEL, v, "canary running")
            r = call(orgs, "POST", f"{m}/pause", ALICE, json={"reason": "hold"})
            assert r.status_code == 200, r.text
            self.refused(orgs, ROLLOUT_MODEL, v, "canary paused")
        finally:
            call(orgs, "POST", f"{m}/abort", ALICE, json={"reason": "test over"})
