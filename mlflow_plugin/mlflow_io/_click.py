"""The click group behaviour shared by ``mlflow-plugin`` and the MLproject entry script: our
errors become one line on stderr and their documented exit code; ``--debug`` shows tracebacks;
errors from MLflow or the network that escaped the adapters are mapped the same way; a closed
stdout (``| head``) ends the command quietly; credentials in URIs are never printed."""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import click

from mlflow_plugin.errors import MlflowPluginError
from mlflow_plugin.settings import mlflow_tracking_uri

__all__ = ["ErrorHandlingGroup", "fail", "given_tracking_uri", "json_option"]

#: ``--json``: machine-readable output instead of the aligned text (the ``as_json`` parameter).
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


class ErrorHandlingGroup(click.Group):
    """A click group whose subcommands' errors map to exit codes (see :mod:`mlflow_plugin.errors`)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().main(*args, **kwargs)
        except BrokenPipeError:
            _quiet_broken_pipe()

    def invoke(self, ctx: click.Context) -> Any:
        from mlflow_plugin.mlflow_io._client import as_plugin_error, configure_http_defaults

        configure_http_defaults()
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            _quiet_broken_pipe()
        except MlflowPluginError as exc:
            fail(ctx, exc, exc.exit_code)
        except RecursionError as exc:  # e.g. a hostile, deeply nested input document
            fail(ctx, RuntimeError(f"input nested too deeply ({exc})"), 2)
        except Exception as exc:  # noqa: BLE001 - the last line of defence of a command line
            uri = given_tracking_uri(ctx) or mlflow_tracking_uri()
            ours = as_plugin_error(exc, "tracking server call", uri)
            if isinstance(ours, MlflowPluginError):
                fail(ctx, ours, ours.exit_code)
            fail(ctx, exc, 1, unexpected=True)


def given_tracking_uri(ctx: click.Context | None = None) -> str | None:
    """The root command's ``--tracking-uri`` (click fills it from ``$MLFLOW_TRACKING_URI``) in
    ``ctx`` (default: the current context, if any); None when not given, or when the root
    command has no such option (the MLproject entry script): the caller then lets MLflow
    resolve it. Unlike :func:`mlflow_plugin.mlflow_io._client.resolve_tracking_uri` this
    neither checks the URI nor imports mlflow: it only says what the user asked for."""
    if ctx is None:
        ctx = click.get_current_context(silent=True)
    uri = ctx.find_root().params.get("tracking_uri") if ctx is not None else None
    return str(uri) if uri else None


def _quiet_broken_pipe() -> NoReturn:
    """The reader went away (``mlflow-plugin status M | head -1``): stop without a traceback.
    stdout is pointed at /dev/null so that the interpreter's final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)


def fail(ctx: click.Context, exc: BaseException, code: int, unexpected: bool = False) -> NoReturn:
    """Print ``error: <one line>`` on stderr (and the traceback with ``--debug``) and exit."""
    from mlflow_plugin.errors import redact

    debug = bool(ctx.find_root().params.get("debug"))
    if debug:
        import traceback

        traceback.print_exception(exc)
    text = redact(" ".join(str(exc).split()) or type(exc).__name__)
    if unexpected:
        text = f"unexpected {type(exc).__name__}: {text}" + (
            "" if debug else " (--debug for details)"
        )
    click.echo(f"error: {text}", err=True)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_broken_pipe()
    ctx.exit(code)
    raise AssertionError("unreachable")
