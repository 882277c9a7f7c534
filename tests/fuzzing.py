"""Property-based HTTP fuzzing of our ASGI apps from their OpenAPI schemas (schemathesis).

:func:`fuzz` runs every operation of a schema in-process (schemathesis' ASGI transport) for a
bounded number of hypothesis examples, half of them valid by the schema and half not, and
checks that no answer is a 5xx and that documented answers match their schema. Failures are
collected per operation rather than raised at the first, so one run names every bad route; the
number of cases each operation tried, and the answers' status codes, are kept for the report
(``pytest -s`` prints it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

#: Examples per operation and generation mode: a few dozen cases per route keep a server's
#: fuzzing to about a minute on two cores.
EXAMPLES = 15


def _checks(conformance: bool) -> list[Any]:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    return [not_a_server_error, response_schema_conformance][: 2 if conformance else 1]


@dataclass
class Fuzzed:
    """What one fuzzing run tried and found."""

    server: str
    cases: dict[str, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    #: how many answers had each status code
    statuses: Counter[int] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.cases.values())

    def record(self, label: str) -> None:
        self.cases[label] = self.cases.get(label, 0) + 1

    def report(self) -> str:
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        lines = [f"{self.server}: {self.total} cases over {len(self.cases)} operations ({codes})"]
        lines += [f"  {n:4d}  {label}" for label, n in sorted(self.cases.items())]
        return "\n".join(lines)


def load(app: Any, schema: dict[str, Any] | None = None) -> Any:
    """``app``'s schema (its ``/openapi.json``, or ``schema`` for an app that does not serve
    one), bound to ``app`` so that cases are sent to it in-process."""
    import schemathesis

    if schema is None:
        return schemathesis.openapi.from_asgi("/openapi.json", app)
    loaded = schemathesis.openapi.from_dict(schema)
    loaded.app = app
    return loaded


def fuzz(
    server: str,
    schema: Any,
    *,
    overrides: Iterable[dict[str, Any]] = ({},),
    prepare: Callable[[Any, Any], dict[str, Any]] | None = None,
    extra: Iterable[tuple[str, Any]] = (),
    examples: int = EXAMPLES,
    unschematic: Iterable[str] = (),
) -> Fuzzed:
    """Fuzz every operation of ``schema`` (from :func:`load`).

    Args:
        server: a name for the report.
        schema: the loaded schema.
        overrides: fixed ``path_parameters``/``headers``/``query``, one run of valid cases
            each (e.g. a real organisation and credentials, so that cases get past the
            membership check).
        prepare: ``prepare(case, draw)`` -> keyword arguments of ``case.call`` (e.g. the
            headers that sign the body it sends as ``data``).
        extra: more ``(label, strategy of cases)`` to run, for bodies the schema cannot
            describe (a model's own columns).
        examples: hypothesis examples per operation and mode.
        unschematic: operations (``"GET /ping"``) whose answers are only checked for 5xx, not
            against the schema (a body kept as MLflow's, which is not the JSON it declares).
    """
    from schemathesis import GenerationMode

    found = Fuzzed(server)
    runs: list[tuple[str, Any]] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        for fixed in overrides:
            runs.append((label, operation.as_strategy(GenerationMode.POSITIVE, **fixed)))
        runs.append((label, operation.as_strategy(GenerationMode.NEGATIVE)))
    runs.extend(extra)
    lenient = set(unschematic)
    for label, strategy in runs:
        checks = _checks(conformance=label not in lenient)
        _run(found, label, strategy, checks, prepare, examples)
    return found


def _run(
    found: Fuzzed,
    label: str,
    strategy: Any,
    checks: list[Any],
    prepare: Callable[[Any, Any], dict[str, Any]] | None,
    examples: int,
) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases on every run: a failure is reproducible
        phases=[Phase.explicit, Phase.generate],  # no shrinking: report, don't minimise
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy, data=st.data())
    def one(case: Any, data: Any) -> None:
        kwargs = prepare(case, data.draw) if prepare is not None else {}
        found.record(label)
        response = case.call(**kwargs)
        found.statuses[response.status_code] += 1
        case.validate_response(response, checks=checks, headers=kwargs.get("headers"))

    try:
        one()
    except Unsatisfiable:  # invalid cases of an operation that takes no input: none exist
        pass
    except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - the caller asserts none
        found.failures.setdefault(label, f"{type(exc).__name__}: {exc}"[:2000])
