"""Write docs/cli.md, the reference of every ``mlflow-plugin`` command, from the click group.

Run ``python docs/gen_cli_reference.py`` after changing a command, an option or a help text;
``tests/test_docs.py`` fails while the committed page differs from what this script makes.
Lazy subcommands are resolved through the group's ``list_commands``/``get_command``, and
subgroups (``fallback``, ``rollout``, ``outcomes``) are walked recursively.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import click

PROG = "mlflow-plugin"
OUT = Path(__file__).resolve().parent / "cli.md"

HEADER = f"""# CLI reference

Generated from the click commands by `docs/gen_cli_reference.py`; do not edit by hand
(`tests/test_docs.py` checks that this page is current). Every command honours
`MLFLOW_TRACKING_URI` and takes the group options of `{PROG}` before its name, e.g.
`{PROG} --workspace acme status churn`. Exit codes: 0 ok, 1 usage or unexpected error,
2 bad input, 3 a gate refused, 4 tracking server unreachable, 5 an integrity check failed.
"""


def _walk(command: click.Command, ctx: click.Context) -> list[tuple[click.Command, click.Context]]:
    """The command and, for a group, every subcommand below it, in ``list_commands`` order."""
    found = [(command, ctx)]
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            sub_ctx = click.Context(sub, info_name=name, parent=ctx)
            found.extend(_walk(sub, sub_ctx))
    return found


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _section(command: click.Command, ctx: click.Context) -> str:
    path = ctx.command_path
    lines = [f"## `{path}`", ""]
    usage = command.collect_usage_pieces(ctx)
    lines += ["```", " ".join([f"Usage: {path}", *usage]), "```", ""]
    help_text = inspect.cleandoc(command.help or "").replace("\b\n", "")
    if help_text:
        lines += [help_text, ""]
    records = [
        record
        for param in command.get_params(ctx)
        if not isinstance(param, click.Argument)
        and (record := param.get_help_record(ctx)) is not None
    ]
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    if arguments:
        names = ", ".join(f"`{p.make_metavar(ctx)}`" for p in arguments)
        lines += [f"Arguments: {names}.", ""]
    if records:
        lines += ["| option | description |", "| --- | --- |"]
        lines += [f"| `{_escape(opts)}` | {_escape(text)} |" for opts, text in records]
        lines.append("")
    if isinstance(command, click.Group):
        subs = [f"[`{name}`](#{_anchor(f'{path} {name}')})" for name in command.list_commands(ctx)]
        lines += ["Commands: " + ", ".join(subs) + ".", ""]
    return "\n".join(lines)


def _anchor(title: str) -> str:
    """GitHub's heading anchor for a heading that is one code span."""
    return "".join(c for c in title.lower() if c.isalnum() or c in " -_").replace(" ", "-")


def render() -> str:
    """The whole page, as the committed docs/cli.md must read."""
    from mlflow_plugin.cli import main

    ctx = click.Context(main, info_name=PROG, terminal_width=100, max_content_width=100)
    sections = [_section(command, sub_ctx) for command, sub_ctx in _walk(main, ctx)]
    return HEADER + "\n" + "\n".join(sections).rstrip("\n") + "\n"


def main() -> int:
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
