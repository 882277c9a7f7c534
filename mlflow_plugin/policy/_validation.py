"""What every section of the policy file shares: the pydantic base model, the number types and
the one translation of pydantic's errors into ours.

Each section module (``_gate_spec.py``, ``_loop.py``, ``_retention.py``, ``_rollout.py``)
declares its part of the file as a :class:`Section` and turns it into its frozen value object;
:class:`~mlflow_plugin.policy.Policy` validates the whole document at once and reports the
first problem as a one-line :class:`~mlflow_plugin.errors.ConfigError` that starts with the
key's dotted path (``gates.f1.threshold: required``), in the words users saw before pydantic.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import (
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from mlflow_plugin.errors import ConfigError

__all__ = [
    "Fraction",
    "Number",
    "Section",
    "Text",
    "WHOLE",
    "config_error",
    "problem",
]


def _whole_float(value: object) -> object:
    # YAML writes 200.0 as a float; a whole float is the integer (2.5 stays and is refused).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: A finite real number; an integer is accepted, text and booleans are not (strict mode:
#: pydantic's lax mode would read ``"0.5"`` and ``true`` as numbers).
Number = Annotated[float, Strict(), AllowInfNan(False)]
#: A number in ``[0, 1]``.
Fraction = Annotated[Number, Field(ge=0.0, le=1.0)]
#: Put last in ``Annotated[int, Strict(), Field(ge=...), WHOLE]``: a whole number, ``3`` or
#: ``3.0``. (Bounds given after a before-validator would not reach the JSON Schema.)
WHOLE = BeforeValidator(_whole_float)
#: Non-blank text, stripped.
Text = Annotated[str, Strict(), StringConstraints(strip_whitespace=True, min_length=1)]


def problem(message: str, key: str = "") -> PydanticCustomError:
    """An error for a validator to raise, at ``key`` below the validated mapping (if given)."""
    return PydanticCustomError("policy", "{message}", {"message": message, "key": key})


class Section(BaseModel):
    """A mapping of the policy file: unknown keys are refused with the keys it takes, and a key
    set to null means its default (as if it were left out), unless ``null_is_default`` is off."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)
    null_is_default: ClassVar[bool] = True

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data  # pydantic reports the type
        for key in data:
            if key not in cls.model_fields:
                expected = ", ".join(cls.model_fields)
                raise problem(f"unknown key; expected one of {expected}", str(key))
        if cls.null_is_default:
            return {k: v for k, v in data.items() if v is not None}
        return data


def config_error(exc: ValidationError, source: str | None = None) -> ConfigError:
    """The first of ``exc``'s errors as one line: dotted path, problem, then ``(in source)``."""
    error = exc.errors()[0]
    loc = list(error["loc"])
    ctx = error.get("ctx") or {}
    if error["type"] == "policy" and ctx.get("key"):
        loc.append(ctx["key"])
    if loc and loc[-1] == "[key]":  # a mapping key outside its Literal
        loc.pop()
        message = f"unknown key; expected one of {', '.join(_choices(ctx))}"
    else:
        message = _message(error)
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    suffix = f" (in {source})" if source else ""
    return ConfigError(f"{path.lstrip('.') or 'policy'}: {message}{suffix}")


def _message(error: ErrorDetails) -> str:
    kind, value, ctx = error["type"], error["input"], error.get("ctx") or {}
    if kind == "policy":
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
    if kind in ("string_type", "string_too_short"):
        return f"expected non-blank text, got {_kind(value)}"
    if kind == "literal_error":
        choices = _choices(ctx)
        listed = " or ".join(choices) if len(choices) == 2 else f"one of {', '.join(choices)}"
        return f"expected {listed}, got {_kind(value)}"
    if kind == "finite_number":
        return f"expected a finite number, got {value}"
    if kind in ("int_type", "int_from_float", "float_type"):
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
