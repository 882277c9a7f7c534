"""Artifact integrity: the manifest, and promote / rollback / sign / verify on the real server.

A tampered ``python_model.pkl`` is a pickle whose ``__reduce__`` creates a marker file: the marker
staying absent proves nothing unpickled it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from pickled_model import artifact_dir, booby_trap, log_pickled

from mlflow_plugin.cli import main
from mlflow_plugin.integrity._manifest import (
    DIGEST_TAG,
    MANIFEST_TAG,
    REQUIRE_SIGNED_TAG,
    manifest_of,
    record_digest,
    verify_files,
    verify_version,
)
from mlflow_plugin.ledger._ledger import Ledger
from mlflow_plugin.registry._adapter import Registry

from helpers import PASSED


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


class TestManifest:
    @pytest.fixture()
    def tree(self, tmp_path: Path) -> Path:
        (tmp_path / "sub").mkdir()
        (tmp_path / "MLmodel").write_text("flavors: {}\n")
        (tmp_path / "sub" / "python_model.pkl").write_bytes(b"\x80\x04K\x01.")
        return tmp_path

    def tags(self, root: Path) -> dict[str, str]:
        m = manifest_of(str(root))
        return {DIGEST_TAG: m.digest, MANIFEST_TAG: m.to_json()}

    def test_same_files_verify(self, tree):
        """Untouched files match their digest; paths are relative and /-separated."""
        tags = self.tags(tree)
        report = verify_files(str(tree), tags)
        assert report.ok and report.problems == [] and not report.trusted_on_first_use
        assert report.digest == tags[DIGEST_TAG]
        assert [f.path for f in manifest_of(str(tree)).files] == ["MLmodel", "sub/python_model.pkl"]

    def test_changed_missing_and_extra_files_are_named(self, tree):
        """Each problem names its file: changed, missing, not in the manifest."""
        tags = self.tags(tree)
        (tree / "sub" / "python_model.pkl").write_bytes(b"evil")
        (tree / "MLmodel").unlink()
        (tree / "extra.py").write_text("print(1)")
        report = verify_files(str(tree), tags)
        assert not report.ok
        text = "\n".join(report.problems)
        assert "sub/python_model.pkl: sha256" in text
        assert "MLmodel: missing" in text
        assert "extra.py: not in the recorded manifest" in text

    def test_no_digest_is_trust_on_first_use_unless_signed_required(self, tree):
        """No digest: ok (trusted on first use) unless the model requires signed versions."""
        report = verify_files(str(tree), {})
        assert report.ok and report.trusted_on_first_use and report.digest is None
        assert report.actual == manifest_of(str(tree)).digest
        refused = verify_files(str(tree), {}, require_signed=True)
        assert not refused.ok and "requires signed versions" in refused.problems[0]

    def test_digest_without_manifest_still_detects(self, tree):
        """A digest alone (manifest too large to store) still refuses changed files."""
        digest = manifest_of(str(tree)).digest
        (tree / "MLmodel").write_text("changed\n")
        report = verify_files(str(tree), {DIGEST_TAG: digest})
        assert not report.ok and digest in report.problems[0]


@pytest.mark.integration
class TestOnTheServer:
    @pytest.fixture()
    def make(self, tracking_uri: str, model_name: str, mlflow_server):
        """``make(risk, signed=True)`` -> (version, artifact dir) of a new pickled version."""
        registry = Registry(tracking_uri)

        def _make(risk: float, signed: bool = True) -> tuple[str, Path]:
            uri = log_pickled(tracking_uri, risk)
            version = registry.register_version(model_name, uri, None, dict(PASSED)).version
            if signed:
                record_digest(registry, model_name, version)
            return version, artifact_dir(str(mlflow_server.workdir), uri)

        return _make

    def tamper(self, local: Path, marker: Path) -> None:
        pkl = local / "python_model.pkl"
        assert pkl.exists(), pkl
        pkl.write_bytes(booby_trap(str(marker)))

    def test_promote_refuses_a_tampered_pickle(self, make, model_name, tracking_uri, tmp_path):
        """promote exits 5 naming the file, unpickles nothing; --force --reason overrides, said in the event."""
        v1, _ = make(0.1)
        v2, local = make(0.2)
        marker = tmp_path / "pwned"
        self.tamper(local, marker)
        assert invoke("promote", model_name, "--version", v1).exit_code == 0
        result = invoke("promote", model_name, "--version", v2)
        assert result.exit_code == 5, result.output
        assert "python_model.pkl" in result.output
        assert Registry(tracking_uri).get_model(model_name).aliases["champion"] == v1
        forced = invoke("promote", model_name, "--version", v2, "--force", "--reason", "incident 7")
        assert forced.exit_code == 0, forced.output
        event = Ledger(tracking_uri).events(model_name, "deployment")[-1]
        assert event.version == v2 and event.extra["mlflow_plugin.integrity"] == "forced"
        assert "python_model.pkl" in event.extra["mlflow_plugin.integrity_problems"]
        assert not marker.exists()

    def test_rollback_refuses_a_tampered_pickle(self, make, model_name, tracking_uri, tmp_path):
        """rollback to a version whose pickle changed exits 5 and leaves the champion alone."""
        v1, local = make(0.1)
        v2, _ = make(0.2)
        assert invoke("promote", model_name, "--version", v1).exit_code == 0
        assert invoke("promote", model_name, "--version", v2).exit_code == 0
        marker = tmp_path / "pwned"
        self.tamper(local, marker)
        result = invoke("rollback", model_name, "--reason", "v2 is bad")
        assert result.exit_code == 5, result.output
        assert Registry(tracking_uri).get_model(model_name).aliases["champion"] == v2
        assert invoke("verify", model_name, "--version", v1).exit_code == 5
        assert invoke("verify", model_name, "--version", v2).exit_code == 0
        assert not marker.exists()

    def test_trust_on_first_use(self, make, model_name, tracking_uri):
        """A version without digest: its first promotion records one and says so in the event."""
        v1, _ = make(0.1, signed=False)
        registry = Registry(tracking_uri)
        assert DIGEST_TAG not in registry.get_version(model_name, v1).tags
        assert verify_version(registry, model_name, v1).trusted_on_first_use
        assert invoke("promote", model_name, "--version", v1).exit_code == 0
        event = Ledger(tracking_uri).events(model_name, "deployment")[-1]
        assert event.extra["mlflow_plugin.integrity"] == "trust_on_first_use"
        recorded = registry.get_version(model_name, v1).tags[DIGEST_TAG]
        assert event.extra["mlflow_plugin.sha256"] == recorded
        report = verify_version(registry, model_name, v1)
        assert report.ok and report.digest == recorded and not report.trusted_on_first_use

    def test_require_signed_then_sign_and_verify(self, make, model_name, tracking_uri):
        """require_signed refuses an unsigned version until `sign` records its digest (an event by its actor)."""
        v1, _ = make(0.1, signed=False)
        registry = Registry(tracking_uri)
        registry.set_model_tag(model_name, REQUIRE_SIGNED_TAG, "true")
        refused = invoke("promote", model_name, "--version", v1)
        assert refused.exit_code == 5 and "requires signed versions" in refused.output
        assert invoke("verify", model_name, "--version", v1).exit_code == 5
        signed = invoke("sign", model_name, "--version", v1)
        assert signed.exit_code == 0, signed.output
        event = Ledger(tracking_uri).events(model_name, "config_change")[-1]
        assert event.actor == "pytest" and event.extra["mlflow_plugin.integrity"] == "signed"
        verified = invoke("verify", model_name, "--version", v1, "--json")
        assert verified.exit_code == 0 and json.loads(verified.output)["ok"] is True
        assert invoke("promote", model_name, "--version", v1).exit_code == 0
        deployment = Ledger(tracking_uri).events(model_name, "deployment")[-1]
        assert deployment.extra["mlflow_plugin.integrity"] == "verified"

    def test_sign_refuses_changed_files(self, make, model_name, tmp_path):
        """Re-signing a version whose files changed would bless the change: exit 5 without --force."""
        v1, local = make(0.1)
        marker = tmp_path / "pwned"
        self.tamper(local, marker)
        result = invoke("sign", model_name, "--version", v1)
        assert result.exit_code == 5 and "python_model.pkl" in result.output
        assert not marker.exists()
