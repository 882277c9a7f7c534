"""The API's archive locations: server configuration, per organisation."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from mlflow_plugin.api import ArchiveLocations
from mlflow_plugin.cli import main
from mlflow_plugin.errors import BadInput


class TestArchiveLocations:
    def test_one_for_all_and_one_per_organisation(self):
        """``URI`` serves every organisation, ``ORG=URI`` one; URIs may contain ``=``."""
        found = ArchiveLocations.parse(["s3://bucket/archive?x=1", "org-b=/srv/b"])
        assert found.for_org("org-a") == "s3://bucket/archive?x=1"
        assert found.for_org("org-b") == "/srv/b"
        assert ArchiveLocations.parse(["org-a=file:///a"]).for_org("org-c") is None
        assert ArchiveLocations().for_org("org-a") is None

    @pytest.mark.parametrize(
        "entries",
        [["org-a="], ["/a", "/b"], ["org-a=/a", "org-a=/b"], ["Org_A=/a"], [" "]],
    )
    def test_bad_entries_are_bad_input(self, entries):
        """An empty URI, two defaults, an organisation twice or a malformed one: BadInput."""
        with pytest.raises(BadInput):
            ArchiveLocations.parse(entries)

    def test_the_environment_is_the_default(self, monkeypatch):
        """``$MLFLOW_PLUGIN_API_ARCHIVE_URIS`` holds whitespace-separated entries."""
        from mlflow_plugin.settings import api_archive_uris

        monkeypatch.setenv("MLFLOW_PLUGIN_API_ARCHIVE_URIS", " /srv/all  org-b=/srv/b ")
        assert api_archive_uris() == ["/srv/all", "org-b=/srv/b"]
        monkeypatch.delenv("MLFLOW_PLUGIN_API_ARCHIVE_URIS")
        assert api_archive_uris() == []

    def test_bad_option_is_exit_2_before_serving(self):
        """``api --archive-uri org-a=`` fails with one line, exit 2, nothing served."""
        result = CliRunner().invoke(
            main, ["--tracking-uri", "http://127.0.0.1:9", "api", "--archive-uri", "org-a="]
        )
        assert result.exit_code == 2, result.output
        assert len(result.stderr.strip().splitlines()) == 1
        assert "no URI" in result.stderr
