"""What every section of the policy file shares: the pydantic base model and the number types.

Each section module (``_gate_spec.py``, ``_loop.py``, ``_retention.py``, ``_rollout.py``)
declares its part of the file as a :class:`Section` and turns it into its frozen value object;
:class:`~mlflow_plugin.policy.Policy` validates the whole document at once and reports the
first problem as a one-line :class:`~mlflow_plugin.errors.ConfigError` that starts with the
key's dotted path (``gates.f1.threshold: required``; the translation is
:func:`mlflow_plugin._internal.validation.config_error`).
"""

from __future__ import annotations

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
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "Fraction",
    "Number",
    "Section",
    "Text",
    "WHOLE",
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
    return PydanticCustomError("problem", "{message}", {"message": message, "key": key})


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
