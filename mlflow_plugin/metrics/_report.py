"""The gate report: one row per gate, a verdict, JSON both ways and a Markdown table.

Pure data: it is built by :func:`mlflow_plugin.evaluation._evaluate.evaluate_policy` and stored as a JSON
artifact of the validation run; the controller reads it back with :meth:`GateReport.from_json`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

__all__ = ["GateReport", "GateResult", "GateStatus", "SanityResult"]

_SCHEMA = 1


class GateStatus(StrEnum):
    """Outcome of one gate. ``UNDEFINED`` (missing, NaN or undefined metric) never passes."""

    PASSED = "passed"
    FAILED = "failed"
    UNDEFINED = "undefined"


@dataclass(frozen=True)
class SanityResult:
    """Outcome of one sanity check (:func:`~mlflow_plugin.metrics.check_finite`, ...).

    Attributes:
        name: ``finite`` or ``probability_rows``.
        passed: whether the predictions passed.
        n_bad: number of offending values (``finite``) or rows (``probability_rows``).
        detail: one line for a person: what was checked, or the first offence.
    """

    name: str
    passed: bool
    n_bad: int
    detail: str


@dataclass(frozen=True)
class GateResult:
    """One row of the report.

    Attributes:
        name: the metric (``c_index``, ``f1``, ...) or sanity check (``finite``, ...).
        status: passed, failed or undefined.
        value: the candidate's value; ``None`` when missing or not a finite number.
        threshold: the absolute bound the value was compared with.
        comparator: how: ``>``, ``>=``, ``<``, ``<=`` (``==`` for sanity checks, whose value
            is the number of offending entries).
        champion_value: the champion's value of the metric, when known.
        champion_bound: the value the candidate had to reach (``>=`` for higher-is-better,
            ``<=`` otherwise) because of the champion, when the gate compares with it.
        reason: one line for a person.
    """

    name: str
    status: GateStatus
    value: float | None
    threshold: float | None
    comparator: str
    champion_value: float | None = None
    champion_bound: float | None = None
    reason: str = ""

    @property
    def passed(self) -> bool:
        """Whether this gate passed."""
        return self.status is GateStatus.PASSED


@dataclass(frozen=True)
class GateReport:
    """The outcome of every gate for one candidate.

    Attributes:
        gates: one :class:`GateResult` per gate, policy gates first, then sanity checks.
    """

    gates: tuple[GateResult, ...]

    @property
    def passed(self) -> bool:
        """True when there is at least one gate and every gate passed."""
        return bool(self.gates) and all(result.passed for result in self.gates)

    @property
    def failed_gates(self) -> tuple[str, ...]:
        """Names of the gates that did not pass (failed or undefined), in report order."""
        return tuple(result.name for result in self.gates if not result.passed)

    @property
    def undefined_gates(self) -> tuple[str, ...]:
        """Names of the gates whose value was missing, NaN or undefined."""
        return tuple(r.name for r in self.gates if r.status is GateStatus.UNDEFINED)

    def gate(self, name: str) -> GateResult:
        """The row of gate ``name``; :class:`KeyError` if there is none."""
        for result in self.gates:
            if result.name == name:
                return result
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (``passed`` is included for readers; it is recomputed on load)."""
        return {
            "schema": _SCHEMA,
            "passed": self.passed,
            "failed_gates": list(self.failed_gates),
            "gates": [{**asdict(r), "status": r.status.value} for r in self.gates],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """The report as JSON text (strict JSON: no NaN)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: object) -> GateReport:
        """Rebuild a report from :meth:`to_dict`'s mapping.

        Raises:
            ValueError: the mapping is not a gate report (the message names the field).
        """
        if not isinstance(data, Mapping) or not isinstance(data.get("gates"), list):
            raise ValueError("gate report: expected a mapping with a list under 'gates'")
        if data.get("schema", _SCHEMA) != _SCHEMA:
            raise ValueError(f"gate report: unsupported schema {data['schema']!r} (expected 1)")
        return cls(tuple(_result(i, row) for i, row in enumerate(data["gates"])))

    @classmethod
    def from_json(cls, text: str | bytes) -> GateReport:
        """Parse :meth:`to_json`'s output.

        Raises:
            ValueError: the text is not JSON or not a gate report.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"gate report: not JSON ({exc})") from None
        return cls.from_dict(data)

    def to_markdown(self) -> str:
        """A short Markdown table: gate, status, value, condition, champion, reason."""
        verdict = "passed" if self.passed else f"failed: {', '.join(self.failed_gates)}"
        lines = [
            f"**Gates {verdict}**",
            "",
            "| gate | status | value | condition | champion | reason |",
            "| --- | --- | ---: | --- | --- | --- |",
        ]
        for r in self.gates:
            condition = f"{r.comparator} {_fmt(r.threshold)}" if r.threshold is not None else ""
            champion = ""
            if r.champion_value is not None:
                champion = _fmt(r.champion_value)
            if r.champion_bound is not None:
                direction = "<=" if r.comparator.startswith("<") else ">="
                champion += f" (need {direction} {_fmt(r.champion_bound)})"
            cells = [r.name, r.status.value, _fmt(r.value), condition, champion.strip(), r.reason]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


_FIELDS = {
    "name": str,
    "status": str,
    "value": float,
    "threshold": float,
    "comparator": str,
    "champion_value": float,
    "champion_bound": float,
    "reason": str,
}
_OPTIONAL = {"value", "threshold", "champion_value", "champion_bound"}


def _result(index: int, row: object) -> GateResult:
    where = f"gate report: gates[{index}]"
    if not isinstance(row, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(row).__name__}")
    unknown = set(row) - set(_FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    values: dict[str, Any] = {}
    for key, kind in _FIELDS.items():
        value = row.get(key, "" if key == "reason" else None)
        if value is None and key in _OPTIONAL:
            values[key] = None
        elif kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ValueError(f"{where}.{key}: expected a finite number, got {value}")
            values[key] = float(value)
        elif kind is str and isinstance(value, str):
            values[key] = value
        else:
            raise ValueError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")
    try:
        values["status"] = GateStatus(values["status"])
    except ValueError:
        choices = ", ".join(s.value for s in GateStatus)
        raise ValueError(
            f"{where}.status: expected one of {choices}, got {values['status']!r}"
        ) from None
    return GateResult(**values)
