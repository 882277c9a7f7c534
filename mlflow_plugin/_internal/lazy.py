"""PEP 562 lazy attributes, for package ``__init__`` modules whose members are costly to import."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(
    namespace: dict[str, Any], members: dict[str, str], exported: Iterable[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` for a module: ``members`` maps a public name to the
    (absolute) module that defines it; the value is imported on first use and cached in
    ``namespace`` (the module's ``globals()``)."""
    module_name = namespace["__name__"]
    public = set(exported)

    def __getattr__(name: str) -> Any:
        source = members.get(name)
        if source is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | public)

    return __getattr__, __dir__
