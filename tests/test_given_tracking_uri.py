"""The one reading of the root command's ``--tracking-uri`` that every command group uses."""

from __future__ import annotations

import click
from click.testing import CliRunner

from mlflow_plugin.mlflow_io._click import given_tracking_uri


@click.group()
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", default=None)
def _root(tracking_uri: str | None) -> None:
    """A root group like ``mlflow-plugin``'s."""


@_root.command("show")
def _show() -> None:
    click.echo(repr(given_tracking_uri()))


@click.group()
def _steps() -> None:
    """A root group without the option, like the MLproject entry script's."""


_steps.add_command(_show)


class TestGivenTrackingUri:
    def test_the_option_then_the_environment_else_none(self, monkeypatch):
        """--tracking-uri wins, $MLFLOW_TRACKING_URI is click's fallback, else None."""
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        runner = CliRunner()
        assert runner.invoke(_root, ["show"]).output == "None\n"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
        assert runner.invoke(_root, ["show"]).output == "'http://env:5000'\n"
        given = runner.invoke(_root, ["--tracking-uri", "http://flag:5000", "show"])
        assert given.output == "'http://flag:5000'\n"

    def test_none_without_the_option_or_outside_a_command(self, monkeypatch):
        """A root without --tracking-uri, or no click context at all, gives None."""
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
        assert CliRunner().invoke(_steps, ["show"]).output == "None\n"
        assert given_tracking_uri() is None
