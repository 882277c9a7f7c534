"""Guardrails on model outputs: finite numbers, probabilities in [0, 1], distributions summing to 1.

They work on whatever a pyfunc returns: a DataFrame (the pipeline's ``risk`` column plus
probability bucket columns), a Series, a NumPy array, a list, or a dict of those. Probability
columns are the ones named in :attr:`Guardrails.probability_columns`, or by default every column
whose name starts with ``p_``; when there are two or more they are taken to form one distribution
whose rows must sum to 1, unless :attr:`Guardrails.distributions` says otherwise.

The rules are the gates' own sanity checks (:func:`mlflow_plugin.metrics.check_finite`,
:func:`~mlflow_plugin.metrics.check_probability_range`,
:func:`~mlflow_plugin.metrics.check_probability_rows`), called on the output block, not a copy of
them; their happy path is a few NumPy reductions (no per-row Python), because it runs on every
request.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlflow_plugin.errors import ConfigError
from mlflow_plugin.metrics._report import SanityResult
from mlflow_plugin.metrics._sanity import (
    check_finite,
    check_probability_range,
    check_probability_rows,
)

__all__ = ["RULES", "Guardrails", "Violation"]

NON_FINITE = "non_finite"
PROBABILITY_RANGE = "probability_range"
DISTRIBUTION_SUM = "distribution_sum"
LATENCY_BUDGET = "latency_budget"
RULES = (NON_FINITE, PROBABILITY_RANGE, DISTRIBUTION_SUM, LATENCY_BUDGET)


@dataclass(frozen=True)
class Violation:
    """One broken guardrail: the rule's name and a one-line detail."""

    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.detail}"


@dataclass(frozen=True)
class Guardrails:
    """What a model's output must satisfy before it is returned.

    Attributes:
        finite: every numeric output value must be finite (no NaN, no inf).
        probability_columns: columns that hold probabilities; ``None`` means every column whose
            name starts with ``probability_prefix``.
        probability_prefix: the naming convention used when ``probability_columns`` is None.
        distributions: groups of columns whose values must sum to 1 on every row. ``None`` means
            "all probability columns form one distribution when there are at least two"; ``()``
            checks no sums.
        array_probabilities: treat a bare 2-D numeric array output (``predict_proba`` style) as
            rows of a distribution.
        tolerance: absolute tolerance on row sums.
        latency_budget_ms: a request slower than this is flagged ``latency_budget``. It never
            triggers the fallback: scoring again would only make a slow answer slower.
        enforce: if True, an output that breaks an output rule is not returned (the fallback
            answers, or the request fails); if False, violations are only counted and flagged.
    """

    finite: bool = True
    probability_columns: tuple[str, ...] | None = None
    probability_prefix: str = "p_"
    distributions: tuple[tuple[str, ...], ...] | None = None
    array_probabilities: bool = False
    tolerance: float = 1e-6
    latency_budget_ms: float | None = None
    enforce: bool = True

    def __post_init__(self) -> None:
        if not (self.tolerance >= 0 and math.isfinite(self.tolerance)):
            raise ConfigError(
                f"guardrails: tolerance must be a finite number >= 0, got {self.tolerance!r}"
            )
        if self.latency_budget_ms is not None and not self.latency_budget_ms > 0:
            raise ConfigError(
                f"guardrails: latency_budget_ms must be > 0, got {self.latency_budget_ms!r}"
            )
        # Accept lists from callers; keep the dataclass hashable (it keys a cache below).
        if self.probability_columns is not None:
            object.__setattr__(self, "probability_columns", tuple(self.probability_columns))
        if self.distributions is not None:
            groups = tuple(tuple(g) for g in self.distributions)
            for group in groups:
                if len(group) < 2:
                    raise ConfigError(
                        f"guardrails: a distribution needs two or more columns: {group!r}"
                    )
            object.__setattr__(self, "distributions", groups)

    @classmethod
    def off(cls, latency_budget_ms: float | None = None) -> Guardrails:
        """No output rules (only the latency budget, if given, is flagged)."""
        return cls(
            finite=False,
            probability_columns=(),
            distributions=(),
            enforce=False,
            latency_budget_ms=latency_budget_ms,
        )

    # -- checks --------------------------------------------------------------------------
    def check(self, output: Any) -> tuple[Violation, ...]:
        """The output rules ``output`` breaks (empty when it passes)."""
        with np.errstate(all="ignore"):  # NaN/inf are what we look for, not a reason to warn
            return self._check(output)

    def _check(self, output: Any) -> tuple[Violation, ...]:
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - pandas is a dependency of mlflow
            pd = None
        if pd is not None and isinstance(output, pd.DataFrame):
            return self._check_frame(output)
        if isinstance(output, dict):
            out: list[Violation] = []
            for key, value in output.items():
                out.extend(
                    Violation(v.rule, f"{key}: {v.detail}") for v in self._check_array(value)
                )
            return tuple(out)
        if pd is not None and isinstance(output, pd.Series):
            if self._is_probability(str(output.name)):
                return self._check_array(output.to_numpy(), probabilities=True)
            return self._check_array(output.to_numpy())
        return self._check_array(output)

    def check_latency(self, seconds: float) -> Violation | None:
        """A ``latency_budget`` violation if ``seconds`` exceeds the budget."""
        budget = self.latency_budget_ms
        if budget is not None and seconds * 1000.0 > budget:
            return Violation(LATENCY_BUDGET, f"took {seconds * 1000:.1f} ms, budget {budget:g} ms")
        return None

    def _is_probability(self, name: str) -> bool:
        if self.probability_columns is not None:
            return name in self.probability_columns
        return bool(self.probability_prefix) and name.startswith(self.probability_prefix)

    def _check_frame(self, frame: Any) -> tuple[Violation, ...]:
        if frame.shape[1] == 0 or frame.shape[0] == 0:
            return ()
        layout = _layout(self, tuple(str(c) for c in frame.columns))
        values = frame.to_numpy()
        if values.dtype.kind not in "fiub":
            # Mixed frame (strings next to numbers): look at the numeric columns only.
            numeric = [i for i, dt in enumerate(frame.dtypes) if dt.kind in "fiub"]
            values = frame.iloc[:, numeric].to_numpy(dtype=float) if numeric else None
            layout = _layout(self, tuple(str(frame.columns[i]) for i in numeric))
        if values is None:
            return ()
        out: list[Violation] = []
        if self.finite:
            _add(out, NON_FINITE, check_finite(values))
        if layout.probabilities is not None:
            _add(
                out,
                PROBABILITY_RANGE,
                check_probability_range(values[:, layout.probabilities]),
                layout.probability_names,
            )
        for columns, names in layout.groups:
            _add(
                out,
                DISTRIBUTION_SUM,
                check_probability_rows(values[:, columns], atol=self.tolerance),
                names,
            )
        return tuple(out)

    def _check_array(self, output: Any, probabilities: bool = False) -> tuple[Violation, ...]:
        try:
            values = np.asarray(output)
        except (ValueError, TypeError):  # ragged or exotic: nothing numeric to check
            return ()
        if values.dtype.kind not in "fiub" or values.size == 0:
            return ()
        out: list[Violation] = []
        if self.finite:
            _add(out, NON_FINITE, check_finite(values))
        as_distribution = self.array_probabilities and values.ndim == 2 and values.shape[1] >= 2
        if probabilities or as_distribution:
            _add(out, PROBABILITY_RANGE, check_probability_range(values))
        if as_distribution:
            _add(out, DISTRIBUTION_SUM, check_probability_rows(values, atol=self.tolerance))
        return tuple(out)


@dataclass(frozen=True)
class _Layout:
    probabilities: slice | list[int] | None  # None: no probability columns
    probability_names: str
    groups: list[tuple[slice | list[int], str]]  # (columns, "p_a+p_b") per distribution


@functools.lru_cache(maxsize=256)
def _layout(rails: Guardrails, names: tuple[str, ...]) -> _Layout:
    """Column positions of the probabilities and distributions (cached per output shape)."""
    index = {n: i for i, n in enumerate(names)}
    probs = [i for i, n in enumerate(names) if rails._is_probability(n)]
    if rails.distributions is None:
        groups = [probs] if len(probs) >= 2 else []
    else:
        # A configured distribution is checked when its columns are present; a model that
        # does not return them is not this guardrail's business (the gates check shapes).
        groups = [
            [index[c] for c in group]
            for group in rails.distributions
            if all(c in index for c in group)
        ]
    return _Layout(
        _as_slice(probs) if probs else None,
        ", ".join(names[i] for i in probs),
        [(_as_slice(g), "+".join(names[i] for i in g)) for g in groups],
    )


def _as_slice(positions: list[int]) -> slice | list[int]:
    """Adjacent columns as a slice: NumPy then takes a view instead of copying."""
    if positions and positions == list(range(positions[0], positions[-1] + 1)):
        return slice(positions[0], positions[-1] + 1)
    return positions


def _add(out: list[Violation], rule: str, result: SanityResult, columns: str = "") -> None:
    """Turn a failed gate check (the gates' own functions: one rule, one home) into a violation."""
    if not result.passed:
        out.append(Violation(rule, f"{columns}: {result.detail}" if columns else result.detail))


def parse_columns(text: str | None) -> tuple[str, ...] | None:
    """``"p_a, p_b"`` -> ``("p_a", "p_b")``; empty or None -> None (for the CLI)."""
    if not text:
        return None
    return tuple(c.strip() for c in text.split(",") if c.strip())
