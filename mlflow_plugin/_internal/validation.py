"""Pydantic's validation errors as ours: one line, the dotted path of the bad key or parameter
first, in the words users saw before pydantic (``gates.f1.threshold: required``,
``holdout: must be < 1, got 1``). Used by the policy file and the steps' parameters.

A validator that wants its own words raises ``ValueError(message)`` (the message is kept), or
``PydanticCustomError("problem", "{message}", {"message": ..., "key": ...})`` to point at ``key``
below the mapping it validates (``mlflow_plugin.policy._validation.problem``).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from mlflow_plugin.errors import ConfigError

__all__ = ["config_error"]


def config_error(
    exc: ValidationError, source: str | None = None, *, root: str = "input"
) -> ConfigError:
    """The first of ``exc``'s errors as one line: dotted path (``root`` for the whole input),
    problem, then ``(in source)``."""
    error = exc.errors()[0]
    loc = list(error["loc"])
    ctx = error.get("ctx") or {}
    if error["type"] == "problem" and ctx.get("key"):
        loc.append(ctx["key"])
    if loc and loc[-1] == "[key]":  # a mapping key outside its Literal
        loc.pop()
        message = f"unknown key; expected one of {', '.join(_choices(ctx))}"
    else:
        message = _message(error)
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    suffix = f" (in {source})" if source else ""
    return ConfigError(f"{path.lstrip('.') or root}: {message}{suffix}")


def _message(error: ErrorDetails) -> str:
    kind, value, ctx = error["type"], error["input"], error.get("ctx") or {}
    if kind == "problem":
        return str(ctx["message"])
    if kind == "value_error":
        return str(ctx["error"])
    if kind == "missing":
        return "required"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected a mapping, got {_kind(value)}"
    if kind == "list_type":
        return f"expected a list, got {_kind(value)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {_kind(value)}"
    if kind == "string_type":
        return f"expected text, got {_kind(value)}"
    if kind == "string_too_short":
        return f"expected non-blank text, got {_kind(value)}"
    if kind == "literal_error":
        choices = _choices(ctx)
        listed = " or ".join(choices) if len(choices) == 2 else f"one of {', '.join(choices)}"
        return f"expected {listed}, got {_kind(value)}"
    if kind == "finite_number":
        return f"expected a finite number, got {value}"
    if kind in ("int_type", "int_from_float", "int_parsing", "float_type", "float_parsing"):
        return _number_message(value)
    bounds = {
        "greater_than_equal": (">=", "ge"),
        "greater_than": (">", "gt"),
        "less_than_equal": ("<=", "le"),
        "less_than": ("<", "lt"),
    }
    if kind in bounds:
        sign, name = bounds[kind]
        return f"must be {sign} {ctx[name]:g}, got {value:g}"
    return error["msg"]


def _number_message(value: object) -> str:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if math.isfinite(value):
            return f"expected a whole number, got {value!r}"
        return f"expected a finite number, got {value}"
    hint = ""
    if isinstance(value, str):
        try:
            float(value)
            hint = " (write it with a dot, e.g. 1.0e-6: YAML reads 1e-6 as text)"
        except ValueError:
            pass
    return f"expected a number, got {_kind(value)}{hint}"


def _choices(ctx: Mapping[str, Any]) -> list[str]:
    # pydantic words a Literal's values as "'a', 'b' or 'c'".
    return re.findall(r"'([^']*)'", str(ctx.get("expected", "")))


def _kind(value: object) -> str:
    if isinstance(value, str):
        return f"text {value!r}"
    if value is None:
        return "nothing (null)"
    return type(value).__name__
