"""The documentation stays true to the code: docs/cli.md is what docs/gen_cli_reference.py makes
from the click commands today, every relative link of README.md and docs/*.md reaches a file,
every `mlflow-plugin ...` example names commands and options that exist, and every section the
code cites ("docs/ARCHITECTURE.md, \"The ledger\"") is there. Offline and fast: nothing here
starts a server or runs a command."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import click
import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md"), REPO / "benchmarks/README.md"])
# [text](target) and [text]: target, outside code spans; images too.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|^\[[^\]]+\]:\s*(\S+)", re.M)
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_cli_reference", REPO / "docs/gen_cli_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings (lower case, punctuation dropped, spaces as -)."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    seen: dict[str, int] = {}
    anchors = set()
    for title in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M):
        slug = "".join(c for c in title.lower() if c.isalnum() or c in " -_").replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links(page: Path) -> list[str]:
    text = CODE.sub("", page.read_text(encoding="utf-8"))
    return [a or b for a, b in LINK.findall(text)]


class TestCliReference:
    def test_committed_page_is_current(self) -> None:
        """docs/cli.md equals a fresh rendering (run `python docs/gen_cli_reference.py`)."""
        # A fresh interpreter: click caches each command's help option on first use, so a
        # command another test invoked without its group's context renders differently.
        code = "import sys; sys.stdout.write(__import__('gen_cli_reference').render())"
        fresh = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO / "docs",
            env={k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        committed = (REPO / "docs/cli.md").read_text(encoding="utf-8")
        assert committed == fresh, (
            "docs/cli.md is out of date: run `python docs/gen_cli_reference.py` and commit it"
        )

    def test_every_command_is_documented(self) -> None:
        """Each command and subcommand the group lists has its section, subgroups included."""
        text = (REPO / "docs/cli.md").read_text(encoding="utf-8")
        for path in ("promote", "rollback", "fallback enable", "rollout abort", "outcomes ingest"):
            assert f"## `mlflow-plugin {path}`" in text


class TestLinks:
    @pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
    def test_relative_links_reach_files(self, page: Path) -> None:
        """A relative link names a file or folder that exists, and its #anchor a heading there."""
        assert page.exists(), page
        broken = []
        for target in _links(page):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # http(s)://, mailto:
            if target.startswith("#"):
                target = page.name + target
            path, _, anchor = target.partition("#")
            file = page.parent / path.split("?", 1)[0]
            if not file.exists():
                broken.append(target)
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
                broken.append(target)
        assert not broken, f"{page.relative_to(REPO)}: broken links {broken}"

    def test_pages_link_something(self) -> None:
        """The link finder works: the front page links the user guide."""
        assert any(t.startswith("docs/") for t in _links(REPO / "README.md"))


def _invocations(text: str) -> list[str]:
    """What follows ``mlflow-plugin`` in the page's code blocks and code spans."""
    found = []
    for block in re.findall(r"```[^\n]*\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = re.sub(r"^\s*\$\s*", "", line)
            match = re.search(r"(?:^|[\s;&(])(?:\S*/)?mlflow-plugin\s(.*)", line)
            if match and not line.lstrip().startswith("#"):
                found.append(match.group(1))
    outside_blocks = re.sub(r"```.*?```", "", text, flags=re.S)
    for span in re.findall(r"`([^`\n]*)`", outside_blocks):
        if match := re.search(r"(?:^|\s)mlflow-plugin\s(.*)", span.replace("\\|", "|")):
            found.append(match.group(1))
    return found


def _cli_problems(args: str) -> list[str]:
    """Commands and options of one example that the click group does not have.

    ``a|b`` alternatives are each checked; a shell pipe, ``;``, ``&&``, a redirection or a
    comment ends the example."""
    from mlflow_plugin.cli import main

    args = re.split(r"\s+(?:\|\||\||;|&&|>>?|#)(?:\s|$)|\s+&$|;", args)[0]
    try:
        tokens = shlex.split(args)
    except ValueError:
        tokens = args.split()
    problems: list[str] = []

    def walk(command: click.Command, ctx: click.Context, tokens: list[str]) -> None:
        if isinstance(command, click.Group):
            while tokens and tokens[0].startswith("-"):
                name = tokens[0].split("=")[0]
                param = next((p for p in command.params if name in p.opts), None)
                if param is None:
                    problems.append(f"{ctx.command_path}: no option {name}")
                    return
                flag = isinstance(param, click.Option) and param.is_flag
                tokens = tokens[1:] if flag or "=" in tokens[0] else tokens[2:]
            if not tokens:
                return
            for name in tokens[0].strip("[]").split("|"):
                if name == "...":  # "mlflow-plugin rollout ...": any subcommand
                    continue
                sub = command.get_command(ctx, name)
                if sub is None:
                    problems.append(f"{ctx.command_path}: no command {name!r}")
                    continue
                walk(sub, click.Context(sub, info_name=name, parent=ctx), tokens[1:])
            return
        known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        for token in tokens:
            for alternative in token.strip("[](),").split("|"):
                name = alternative.split("=")[0]
                if re.match(r"^--?[a-zA-Z]", name) and name not in known | {"-h", "--help"}:
                    problems.append(f"{ctx.command_path}: no option {name}")

    walk(main, click.Context(main, info_name="mlflow-plugin"), tokens)
    return problems


class TestExamples:
    @pytest.mark.parametrize(
        "page",
        [p for p in PAGES if p.name != "cli.md"],
        ids=lambda p: str(p.relative_to(REPO)),
    )
    def test_cli_examples_exist(self, page: Path) -> None:
        """Every `mlflow-plugin ...` example uses commands and options the CLI has."""
        problems = [
            f"`mlflow-plugin {example.strip()}`: {problem}"
            for example in _invocations(page.read_text(encoding="utf-8"))
            for problem in _cli_problems(example)
        ]
        assert not problems, "\n".join(problems)

    def test_the_checker_finds_a_wrong_example(self) -> None:
        """The check itself: an unknown option or subcommand is reported, a right one is not."""
        assert _cli_problems("promote churn --version 3 --bogus x")
        assert _cli_problems("rollout frobnicate churn")
        assert not _cli_problems("--tracking-uri $M rollout pause|abort churn --reason r | head")


class TestCitations:
    """Code and docs cite sections by name: ``(docs/ARCHITECTURE.md, "The ledger")``."""

    CITATION = re.compile(r"(ARCHITECTURE\.md|README)`{0,2}\s*[,(]\s*\(?\"([^\"]+)\"")

    @staticmethod
    def _sections(page: Path) -> list[str]:
        """Headings and bold lead-ins (``**Process start of ...**``) of a page."""
        text = page.read_text(encoding="utf-8")
        return re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M) + re.findall(
            r"^(?:- )?\*\*([^*]+?)\.?\*\*", text, re.M
        )

    def test_cited_sections_exist(self) -> None:
        """A cited section of ARCHITECTURE.md is there; one of "the README" is in the README or
        in the user guide it was moved to."""
        architecture = self._sections(REPO / "docs/ARCHITECTURE.md")
        guide = [
            s for page in PAGES if page.name != "ARCHITECTURE.md" for s in self._sections(page)
        ]
        sources = [
            path
            for folder in ("mlflow_plugin", "tests", "benchmarks", "flows", "docs")
            for path in (REPO / folder).rglob("*")
            if path.suffix in (".py", ".md", ".yaml", ".cfg")
        ]
        missing = []
        for path in [*sources, REPO / "setup.cfg", REPO / "README.md"]:
            text = re.sub(r"\n\s*(?:#\s*)?", " ", path.read_text(encoding="utf-8"))
            for doc, name in self.CITATION.findall(text):
                titles = architecture if doc.startswith("ARCHITECTURE") else guide
                if not any(title.startswith(name) for title in titles):
                    missing.append(f'{path.relative_to(REPO)}: {doc} "{name}"')
        assert not missing, missing
