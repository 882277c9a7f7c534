"""The click group behaviour shared by ``mlflow-plugin`` and the MLproject entry script: our
errors become one line on stderr and their documented exit code; ``--debug`` shows tracebacks."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click

from mlflow_plugin._errors import MlflowPluginError

__all__ = ["ErrorHandlingGroup", "fail"]


class ErrorHandlingGroup(click.Group):
    """A click group whose subcommands' errors map to exit codes (see :mod:`mlflow_plugin._errors`)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except MlflowPluginError as exc:
            fail(ctx, exc, exc.exit_code)
        except Exception as exc:  # noqa: BLE001 - the last line of defence of a command line
            fail(ctx, exc, 1, unexpected=True)


def fail(ctx: click.Context, exc: BaseException, code: int, unexpected: bool = False) -> NoReturn:
    """Print ``error: <one line>`` on stderr (and the traceback with ``--debug``) and exit."""
    debug = bool(ctx.find_root().params.get("debug"))
    if debug:
        import traceback

        traceback.print_exception(exc)
    text = " ".join(str(exc).split()) or type(exc).__name__
    if unexpected:
        text = f"unexpected {type(exc).__name__}: {text}" + ("" if debug else " (--debug for details)")
    click.echo(f"error: {text}", err=True)
    sys.stdout.flush()
    ctx.exit(code)
    raise AssertionError("unreachable")
