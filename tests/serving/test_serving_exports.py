"""The public surface of mlflow_plugin.serving."""

from __future__ import annotations

import mlflow_plugin.serving as serving


def test_all_is_sorted_and_importable():
    """__all__ is sorted and every name in it resolves (create_app lazily)."""
    assert serving.__all__ == sorted(serving.__all__)
    for name in serving.__all__:
        assert getattr(serving, name) is not None, name


def test_serve_command_help():
    """`mlflow-plugin serve --help` lists the options users need."""
    from click.testing import CliRunner

    from mlflow_plugin.cli import main

    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--poll-interval", "--prediction-log", "--guardrails"):
        assert option in result.output
