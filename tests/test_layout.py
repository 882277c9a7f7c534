"""The package layout (docs/ARCHITECTURE.md, "Module map"): every module sits in a layer of the
import-linter contract in setup.cfg, the top level keeps only errors/settings/types, and no
module imports another that imports it back (TYPE_CHECKING imports aside)."""

from __future__ import annotations

import configparser
from pathlib import Path

import grimp
import pytest

import mlflow_plugin

ROOT = Path(mlflow_plugin.__file__).parent
SETUP_CFG = ROOT.parent / "setup.cfg"
TOP_LEVEL_MODULES = {"__init__.py", "errors.py", "settings.py", "types.py"}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("mlflow_plugin", exclude_type_checking_imports=True)


def _layers() -> list[str]:
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    text = config["importlinter:contract:layers"]["layers"]
    return [
        part.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
        for part in line.replace(":", "|").split("|")
    ]


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(graph.find_modules_directly_imported_by(child))))
                    )
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


class TestLayout:
    def test_no_import_cycles(self, graph):
        """No module imports one that imports it back."""
        assert _cycles(graph) == []

    def test_every_module_is_in_a_layer(self, graph):
        """The layers contract covers every module but the root package and the test kit."""
        layers = _layers()
        outside = sorted(
            m
            for m in graph.modules
            if m.startswith("mlflow_plugin.")
            and not m.startswith("mlflow_plugin.testing")
            and not any(m == layer or m.startswith(layer + ".") for layer in layers)
        )
        assert outside == []

    def test_top_level_is_packages(self):
        """The top level keeps errors, settings and types; everything else is a package."""
        modules = {p.name for p in ROOT.glob("*.py")}
        assert modules == TOP_LEVEL_MODULES
        for package in (p for p in ROOT.iterdir() if p.is_dir() and p.name != "__pycache__"):
            assert (package / "__init__.py").is_file(), package.name

    def test_production_never_imports_the_test_kit(self, graph):
        """``mlflow_plugin.testing`` is for tests: no production module reaches it."""
        importers = {
            m
            for m in graph.find_downstream_modules("mlflow_plugin.testing", as_package=True)
            if not m.startswith("mlflow_plugin.testing")
        }
        assert importers == set()

    def test_the_cycle_check_finds_a_cycle(self):
        """The check itself: two modules importing each other are reported."""
        g = grimp.ImportGraph()
        for name in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
            g.add_module(name)
        g.add_import(importer="pkg.a", imported="pkg.b")
        g.add_import(importer="pkg.b", imported="pkg.a")
        g.add_import(importer="pkg.c", imported="pkg.a")
        assert _cycles(g) == [["pkg.a", "pkg.b"]]
