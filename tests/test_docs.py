"""The documentation stays true to the code: docs/cli.md is what docs/gen_cli_reference.py makes
from the click commands today, and every relative link of README.md and docs/*.md reaches a file.
Offline and fast: nothing here starts a server or runs a command."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

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
        generator = _generator()
        committed = (REPO / "docs/cli.md").read_text(encoding="utf-8")
        assert committed == generator.render(), (
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
