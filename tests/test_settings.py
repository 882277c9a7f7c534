"""Every environment variable is read in mlflow_plugin.settings, when it is needed (not at
import), with its default, its parsing and its error message."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlflow_plugin import settings
from mlflow_plugin.errors import BadInput, ConfigError


class TestReadAtCallTime:
    def test_a_variable_set_after_import_is_seen(self, monkeypatch):
        """Values are read per call: a test (or a parent process) may set them any time."""
        monkeypatch.delenv("MLFLOW_PLUGIN_RETRAIN_EXPERIMENT", raising=False)
        assert settings.retrain_experiment() == "mlflow_plugin-retraining"
        monkeypatch.setenv("MLFLOW_PLUGIN_RETRAIN_EXPERIMENT", " mine ")
        assert settings.retrain_experiment() == "mine"

    def test_experiment_defaults(self, monkeypatch):
        """Blank means the default experiment, for each of them."""
        for name in (
            "MLFLOW_PLUGIN_EXPERIMENT",
            "MLFLOW_PLUGIN_MONITORING_EXPERIMENT",
            "MLFLOW_PLUGIN_AUDIT_EXPERIMENT",
        ):
            monkeypatch.setenv(name, "  ")
        assert settings.training_experiment() == "mlflow_plugin-training"
        assert settings.monitoring_experiment() == "mlflow_plugin-monitoring"
        assert settings.audit_experiment() == "mlflow_plugin-deployments"


class TestParsing:
    def test_lock_lease_bounds_and_words(self, monkeypatch):
        """The lease is 0.5..3600 seconds; anything else is one BadInput line naming it."""
        monkeypatch.delenv("MLFLOW_PLUGIN_LOCK_LEASE", raising=False)
        assert settings.lock_lease() == 30.0
        monkeypatch.setenv("MLFLOW_PLUGIN_LOCK_LEASE", "soon")
        with pytest.raises(BadInput, match="MLFLOW_PLUGIN_LOCK_LEASE='soon' is not a number"):
            settings.lock_lease()
        monkeypatch.setenv("MLFLOW_PLUGIN_LOCK_LEASE", "0.1")
        with pytest.raises(BadInput, match="must be between 0.5 and 3600 seconds"):
            settings.lock_lease()

    def test_lock_timeout_must_be_positive(self, monkeypatch):
        """MLFLOW_PLUGIN_LOCK_TIMEOUT defaults to 120 and refuses zero."""
        monkeypatch.delenv("MLFLOW_PLUGIN_LOCK_TIMEOUT", raising=False)
        assert settings.lock_timeout() == 120.0
        monkeypatch.setenv("MLFLOW_PLUGIN_LOCK_TIMEOUT", "0")
        with pytest.raises(BadInput, match="MLFLOW_PLUGIN_LOCK_TIMEOUT='0' must be positive"):
            settings.lock_timeout()

    def test_stage_mirror_is_a_strict_boolean(self, monkeypatch):
        """true/false spellings only; anything else is a ConfigError."""
        monkeypatch.setenv("MLFLOW_PLUGIN_STAGE_MIRROR", "off")
        assert settings.stage_mirror_enabled() is False
        monkeypatch.setenv("MLFLOW_PLUGIN_STAGE_MIRROR", "maybe")
        with pytest.raises(ConfigError, match="is not a boolean"):
            settings.stage_mirror_enabled()

    def test_model_cache_and_connect_timeout(self, monkeypatch, tmp_path):
        """The cache can be off or moved; a bad or non-positive timeout is the default 5s."""
        monkeypatch.setenv("MLFLOW_PLUGIN_MODEL_CACHE", "off")
        assert settings.model_cache_dir() is None
        monkeypatch.setenv("MLFLOW_PLUGIN_MODEL_CACHE", str(tmp_path))
        assert settings.model_cache_dir() == Path(tmp_path)
        for raw, want in (("", 5.0), ("x", 5.0), ("-1", 5.0), ("2.5", 2.5)):
            monkeypatch.setenv("MLFLOW_PLUGIN_CONNECT_TIMEOUT", raw)
            assert settings.connect_timeout() == want

    def test_rest_client_switch_and_mlflow_signing(self, monkeypatch):
        """`off` turns the REST client off; an auth plugin or SigV4 needs MLflow's client."""
        monkeypatch.setenv("MLFLOW_PLUGIN_REST_CLIENT", " OFF ")
        assert settings.rest_client_off()
        monkeypatch.setenv("MLFLOW_PLUGIN_REST_CLIENT", "on")
        assert not settings.rest_client_off()
        monkeypatch.delenv("MLFLOW_TRACKING_AUTH", raising=False)
        monkeypatch.setenv("MLFLOW_TRACKING_AWS_SIGV4", "true")
        assert settings.mlflow_auth_plugin_or_sigv4()

    def test_http_settings_fall_back_as_mlflow_does(self, monkeypatch):
        """A number that does not parse is MLflow's default; redirects are on unless false."""
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "many")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        monkeypatch.setenv("MLFLOW_ALLOW_HTTP_REDIRECTS", "false")
        http = settings.http_settings()
        assert (http.max_retries, http.timeout, http.allow_redirects) == (7, 30.0, False)
