"""Retention against a real ``mlflow server``: a dozen versions of mixed history."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner

from mlflow_plugin.cli import main
from mlflow_plugin.controller import Controller
from mlflow_plugin.policy import Policy
from mlflow_plugin.retention import (
    apply_retention,
    read_archive,
    restore_version,
    retention_task,
)

from helpers import log_own_models, register_own_artifacts

pytestmark = pytest.mark.integration

RULES = [{"keep_last": 1}, {"min_metric": {"c_index": 0.6}}, {"max_age": "30d"}]
C_INDEX = {"3": 0.55, "4": 0.7, "6": 0.52}  # v7 has no validation run; the rest 0.65
KEEP = {"12", "11", "10", "9", "8", "5", "2"}
DELETE = {"7", "6", "4", "3", "1"}


def _policy(archive: Path, **extra: object) -> Policy:
    doc = {
        "gates": {"f1": {"threshold": 0.4}},
        "retention": {"archive_uri": str(archive), "rules": RULES, "default": "delete", **extra},
    }
    return Policy.from_dict(doc)


def _validation_run(controller: Controller, model: str, version: str, c_index: float) -> None:
    client = controller.registry.client
    exp = client.get_experiment_by_name("mlflow_plugin-tests")
    run = client.create_run(exp.experiment_id)
    client.log_metric(run.info.run_id, "c_index", c_index)
    client.set_terminated(run.info.run_id)
    controller.registry.set_version_tag(
        model, version, "mlflow_plugin.gate_report", run.info.run_id
    )


@pytest.fixture(scope="module")
def history(mlflow_server):
    """12 versions: champion 8, fallback 5, challenger 12, canary 10, v9 rolled back from,
    v2 champion earlier; c_index per C_INDEX; 1, 3, 6, 7 have artifacts of their own."""
    uri = mlflow_server.uri
    model = f"retention-{uuid.uuid4().hex[:8]}"
    controller = Controller.from_uri(uri)
    registry = controller.registry
    # Own artifacts for 1, 3, 6 and 7; the other eight versions share one logged model.
    own1, own3, own6, own7, shared = log_own_models(uri, 5)
    by_version = {1: own1, 3: own3, 6: own6, 7: own7}
    sources = [by_version.get(v, shared) for v in range(1, 13)]
    assert register_own_artifacts(uri, model, 12, sources) == [str(i) for i in range(1, 13)]
    for v in range(1, 13):
        if str(v) != "7":
            _validation_run(controller, model, str(v), C_INDEX.get(str(v), 0.65))
    for v in ("2", "5", "8", "9"):
        controller.promote(model, v)
    controller.rollback(model, reason="v9 misbehaves")
    controller.set_challenger(model, "12")
    registry.set_alias(model, "canary", "10")
    return uri, controller, model


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """The history's archive directory (shared by the tests of one module)."""
    return tmp_path_factory.mktemp("archive")


def _versions(controller: Controller, model: str) -> set[str]:
    return {v.version for v in controller.registry.list_versions(model)}


class TestRetention:
    def test_dry_run_and_real_run_agree_and_protected_survive(self, history, archive):
        """Same decisions both ways; only the unprotected, selected versions go, archived first."""
        uri, controller, model = history
        policy = _policy(archive)
        before = _versions(controller, model)
        policy_file = archive.parent / "policy.yaml"
        policy_file.write_text(yaml.safe_dump(policy.to_dict()))
        cli = CliRunner().invoke(
            main,
            ["--tracking-uri", uri, "retention", model, "--dry-run", "--policy", str(policy_file)],
        )
        assert cli.exit_code == 0, cli.output
        rows = [line.split() for line in cli.stdout.splitlines()[1:-1]]
        assert {r[0] for r in rows if r[1] == "delete"} == DELETE
        assert cli.stdout.splitlines()[-1].startswith(
            "dry run: would archive and delete 5 version(s)"
        )
        dry = apply_retention(controller, model, policy, dry_run=True)
        assert _versions(controller, model) == before
        assert {d.version for d in dry.decisions if d.action == "delete"} == DELETE
        assert not dry.archived and dry.event is None

        real = apply_retention(controller, model, policy)
        assert [(d.version, d.action) for d in real.decisions] == [
            (d.version, d.action) for d in dry.decisions
        ]
        assert _versions(controller, model) == KEEP
        assert sorted(real.deleted) == sorted(DELETE) and set(real.archived) == DELETE
        # v4's artifacts are shared with versions that stay: not freed.
        freed = ("7", "6", "3", "1")
        assert real.bytes_reclaimed == sum(real.archived[v].bytes for v in freed) > 0
        (event,) = controller.ledger.events(model, "retention")
        extra = {k.removeprefix("mlflow_plugin."): v for k, v in event.extra.items()}
        assert set(extra["deleted"].split(",")) == DELETE
        assert json.loads(extra["archived"]) == {v: r.tree_sha256 for v, r in real.archived.items()}
        assert int(extra["bytes_reclaimed"]) == real.bytes_reclaimed
        import mlflow

        mlflow.set_tracking_uri(uri)
        mlflow.pyfunc.load_model(f"models:/{model}/12")  # shared artifacts were kept
        again = apply_retention(controller, model, policy)
        assert again.event is None and not again.to_delete
        as_json = CliRunner().invoke(
            main,
            ["--tracking-uri", uri, "retention", model, "--json", "--policy", str(policy_file)],
        )
        document = json.loads(as_json.stdout)
        assert {v["version"] for v in document["versions"]} == KEEP
        assert document["deleted"] == [] and document["event_run_id"] is None

    def test_archive_is_restorable(self, history, archive):
        """A deleted version registers again from its archive and loads."""
        uri, controller, model = history
        apply_retention(controller, model, _policy(archive))  # no-op if the test above ran
        gone = "6"
        assert gone not in _versions(controller, model)
        restored = restore_version(controller.registry, str(archive), model, gone)
        assert restored.tags["mlflow_plugin.restored_from"].endswith(f"/default/{model}/v{gone}")
        import mlflow
        import numpy as np

        mlflow.set_tracking_uri(uri)
        loaded = mlflow.pyfunc.load_model(f"models:/{model}/{restored.version}")
        assert loaded.predict(np.zeros((2, 2))).shape == (2,)

    def test_tampered_archive_is_refused(self, history, tmp_path):
        """A file changed in the archive fails verification (exit 5) instead of restoring."""
        from mlflow_plugin.retention import ArchiveError

        uri, controller, model = history
        archive = tmp_path / "archive"
        version = controller.registry.list_versions(model)[-1]
        from mlflow_plugin.retention import archive_version

        archive_version(controller.registry, version, str(archive))
        victim = next(p for p in (archive / "default" / model).rglob("MLmodel"))
        victim.write_bytes(b"not a model")
        with pytest.raises(ArchiveError, match="does not match its manifest"):
            read_archive(str(archive), model, version.version)


@pytest.mark.parametrize("failpoint", ["retention.after_archive", "retention.after_first_delete"])
def test_killed_run_never_deletes_without_archive(mlflow_server, tmp_path, failpoint):
    """A retention run killed half-way leaves every deleted version archived and recorded; the
    next run completes it."""
    uri = mlflow_server.uri
    model = f"retention-kill-{uuid.uuid4().hex[:8]}"
    controller = Controller.from_uri(uri)
    register_own_artifacts(uri, model, 4, log_own_models(uri, 1) * 4)
    controller.promote(model, "4")
    archive = tmp_path / "archive"
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(
        yaml.safe_dump(
            {
                "gates": {"f1": {"threshold": 0.4}},
                "retention": {
                    "archive_uri": str(archive),
                    "rules": [{"keep_last": 1}],
                    "default": "delete",
                },
            }
        )
    )
    exe = Path(sys.executable).with_name("mlflow-plugin")
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_PLUGIN_FAILPOINT": failpoint}
    proc = subprocess.run(
        [str(exe), "retention", model, "--policy", str(policy_file)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 137, proc.stderr
    left = {v.version for v in controller.registry.list_versions(model)}
    deleted = {"1", "2", "3", "4"} - left
    recorded = {
        v
        for e in controller.ledger.events(model, "retention")
        for v in e.extra["mlflow_plugin.deleted"].split(",")
    }
    for version in deleted:
        assert read_archive(str(archive), model, version) is not None
        assert version in recorded
    if failpoint == "retention.after_first_delete":
        assert len(deleted) == 1

    # The operator's task completes it (and does not run again within its interval).
    ctx = SimpleNamespace(model=model, lines=[])
    ctx.did = ctx.lines.append
    task = retention_task(controller, Policy.from_yaml(policy_file))
    task(ctx)
    task(ctx)
    assert {v.version for v in controller.registry.list_versions(model)} == {"3", "4"}
    last = controller.ledger.events(model, "retention")[-1]
    assert set(last.extra["mlflow_plugin.deleted"].split(",")) == {"1", "2"} - deleted
    assert len(ctx.lines) == 1 and ctx.lines[0].startswith("retention: archived and deleted")
    if failpoint == "retention.after_first_delete":
        assert last.extra["mlflow_plugin.resumes"]
        # The dead run held the model's lock: broken by the next run and recorded.
        errors = controller.ledger.events(model, "error")
        assert [e.extra["mlflow_plugin.interrupted_op"] for e in errors] == ["retention"]


def _one_rule_policy(archive: Path) -> Policy:
    rules = {"archive_uri": str(archive), "rules": [{"keep_last": 1}], "default": "delete"}
    return Policy.from_dict({"gates": {"f1": {"threshold": 0.4}}, "retention": rules})


class TestArchiveIdentity:
    def test_recreated_model_is_not_deleted_against_the_old_models_archive(
        self, mlflow_server, tmp_path
    ):
        """A model deleted and re-created under the same name: the new v1 is refused (exit 5),
        not deleted against the old v1's archive, and that archive is left as it was."""
        from mlflow_plugin.retention import ArchiveError

        uri = mlflow_server.uri
        model = f"retention-recreated-{uuid.uuid4().hex[:8]}"
        controller = Controller.from_uri(uri)
        archive = tmp_path / "archive"
        policy = _one_rule_policy(archive)
        register_own_artifacts(uri, model, 2)
        first = apply_retention(controller, model, policy)
        assert first.deleted == ["1"]
        old = read_archive(str(archive), model, "1")
        assert old is not None
        controller.registry.client.delete_registered_model(model)
        register_own_artifacts(uri, model, 2)
        new_v1 = controller.registry.get_version(model, "1")
        assert new_v1.run_id != old.manifest["run_id"]

        with pytest.raises(ArchiveError, match="holds an archive of another version"):
            apply_retention(controller, model, policy)
        assert _versions(controller, model) == {"1", "2"}
        again = read_archive(str(archive), model, "1")
        assert again is not None and again.manifest == old.manifest

    def test_archive_records_the_exact_version(self, mlflow_server, tmp_path):
        """The manifest names workspace, model, version, run id, source and artifact digest,
        and the archive sits under the workspace."""
        from mlflow_plugin.integrity._manifest import DIGEST_TAG, record_digest

        uri = mlflow_server.uri
        model = f"retention-identity-{uuid.uuid4().hex[:8]}"
        controller = Controller.from_uri(uri)
        register_own_artifacts(uri, model, 2)
        record_digest(controller.registry, model, "1")
        v1 = controller.registry.get_version(model, "1")
        archive = tmp_path / "archive"
        apply_retention(controller, model, _one_rule_policy(archive))
        assert (archive / "default" / model / "v1" / "manifest.json").is_file()
        manifest = json.loads((archive / "default" / model / "v1" / "manifest.json").read_text())
        assert {k: manifest[k] for k in ("workspace", "model", "version", "run_id", "source")} == {
            "workspace": "default",
            "model": model,
            "version": "1",
            "run_id": v1.run_id or "",
            "source": v1.source,
        }
        assert manifest["artifact_sha256"] == v1.tags[DIGEST_TAG]


class TestRestoreCommand:
    def _archived(self, uri: str, tmp_path: Path) -> tuple[Controller, str, Path]:
        from mlflow_plugin.integrity._manifest import record_digest

        model = f"retention-restore-{uuid.uuid4().hex[:8]}"
        controller = Controller.from_uri(uri)
        register_own_artifacts(uri, model, 2)
        record_digest(controller.registry, model, "1")
        archive = tmp_path / "archive"
        assert apply_retention(controller, model, _one_rule_policy(archive)).deleted == ["1"]
        return controller, model, archive

    def _runs(self, controller: Controller, status: str) -> list[object]:
        client = controller.registry.client
        exp = client.get_experiment_by_name("mlflow_plugin-restores")
        if exp is None:
            return []
        return [
            r
            for r in client.search_runs([exp.experiment_id], max_results=1000)
            if r.info.status == status
        ]

    def test_restore_over_http_without_policy(self, mlflow_server, tmp_path, monkeypatch):
        """``retention-restore MODEL --version V`` (no --policy: the ledger says where) works
        with the REST client and restores a version whose digest equals the archived one."""
        from mlflow_plugin.integrity._manifest import DIGEST_TAG, verify_version
        from mlflow_plugin.mlflow_io._rest import RestClient

        uri = mlflow_server.uri
        monkeypatch.delenv("MLFLOW_PLUGIN_REST_CLIENT", raising=False)
        controller, model, archive = self._archived(uri, tmp_path)
        cli = Controller.from_uri(uri, rest=True)
        assert isinstance(cli.registry.client, RestClient)  # what the CLI uses over http
        result = CliRunner().invoke(
            main, ["--tracking-uri", uri, "retention-restore", model, "--version", "1"]
        )
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == f"restored {model} version 1 as {model} version 3"
        record = read_archive(str(archive), model, "1")
        restored = controller.registry.get_version(model, "3")
        assert restored.tags[DIGEST_TAG] == record.manifest["tags"][DIGEST_TAG]
        assert restored.tags[DIGEST_TAG] == record.manifest["artifact_sha256"]
        report = verify_version(controller.registry, model, "3")
        assert report.ok and not report.trusted_on_first_use, report.problems
        assert not self._runs(controller, "RUNNING")

    def test_failed_upload_leaves_no_running_run(self, mlflow_server, tmp_path, monkeypatch):
        """An upload that fails ends the restore run FAILED (its exit code), no new version."""
        import mlflow_plugin.retention._archive as archive_module
        from mlflow_plugin.errors import RegistryUnavailable

        uri = mlflow_server.uri
        controller, model, _ = self._archived(uri, tmp_path)
        failed_before = len(self._runs(controller, "FAILED"))

        def refuse(*_args: object) -> None:
            raise RegistryUnavailable("artifact store unreachable")

        monkeypatch.setattr(archive_module, "upload_artifacts", refuse)
        result = CliRunner().invoke(
            main, ["--tracking-uri", uri, "retention-restore", model, "--version", "1"]
        )
        assert result.exit_code == RegistryUnavailable.exit_code, result.output
        assert "artifact store unreachable" in result.stderr
        assert _versions(controller, model) == {"2"}
        assert not self._runs(controller, "RUNNING")
        assert len(self._runs(controller, "FAILED")) == failed_before + 1

    def test_restore_without_any_archive_is_exit_2(self, mlflow_server):
        """No --archive-uri, no policy location, nothing in the ledger: exit 2, one line."""
        uri = mlflow_server.uri
        model = f"retention-none-{uuid.uuid4().hex[:8]}"
        register_own_artifacts(uri, model, 1)
        result = CliRunner().invoke(
            main, ["--tracking-uri", uri, "retention-restore", model, "--version", "1"]
        )
        assert result.exit_code == 2, result.output
        assert len(result.stderr.strip().splitlines()) == 1
        assert "no archive of" in result.stderr
