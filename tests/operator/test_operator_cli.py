"""``mlflow-plugin outcomes ingest``, ``monitor`` and ``tick`` as a user runs them: one line and
the documented exit code on bad input or a server that is down."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from mlflow_plugin.cli import main
from mlflow_plugin.testing import free_port


def _run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_ingest_twice_then_bad_column(tmp_path: Path):
    """Upsert counts on stdout; an unknown column is exit 2 with one line, nothing written."""
    data = tmp_path / "o.csv"
    pd.DataFrame({"id": ["a", "b"], "y": [0, 1]}).to_csv(data, index=False)
    db = f"sqlite:///{tmp_path / 'p.db'}"
    args = [
        "outcomes",
        "ingest",
        "churn",
        "--data",
        str(data),
        "--entity-col",
        "id",
        "--label-col",
        "y",
        "--predictions",
        db,
    ]
    assert _run(*args).output == "churn: outcomes 2 inserted, 0 updated, 0 unchanged\n"
    assert _run(*args).output == "churn: outcomes 0 inserted, 0 updated, 2 unchanged\n"
    bad = _run(*args[:-6], "--entity-col", "nobody", "--label-col", "y", "--predictions", db)
    assert bad.exit_code == 2
    assert bad.output.strip() == "error: outcome data has no column 'nobody' (columns: id, y)"


def test_bad_window_is_exit_2(tmp_path: Path):
    """--window that is not a duration: exit 2, before the server is asked anything."""
    result = _run(
        "--tracking-uri",
        f"http://127.0.0.1:{free_port()}",
        "tick",
        "--window",
        "soon",
        "--predictions",
        f"sqlite:///{tmp_path / 'p.db'}",
    )
    assert result.exit_code == 2 and "--window: expected a duration" in result.output


def test_tick_exits_4_when_the_server_is_down(tmp_path: Path):
    """No server: exit 4 and one line, before any work."""
    result = _run(
        "--tracking-uri",
        f"http://127.0.0.1:{free_port()}",
        "tick",
        "--predictions",
        f"sqlite:///{tmp_path / 'p.db'}",
        "--project",
        str(Path(__file__).parents[2]),
    )
    assert result.exit_code == 4, result.output
    assert result.output.strip().startswith("error: tracking server")
    assert "Traceback" not in result.output
