"""What ``validate`` and ``backtest`` share: their inputs, which version, its recipe, the policy's share of
gates per step, and how a verdict is recorded (run artifacts + version tags)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mlflow_plugin.errors import BadInput, ConfigError
from mlflow_plugin.settings import TAG_PREFIX
from mlflow_plugin.training._tracking import CLOCK, log_artifact_files, queue_metrics, set_tags
from mlflow_plugin.types import CHALLENGER, VersionInfo

if TYPE_CHECKING:
    from mlflow_plugin.metrics import GateReport
    from mlflow_plugin.policy import Policy
    from mlflow_plugin.registry._adapter import Registry
    from mlflow_plugin.training._data import SurvivalData
    from mlflow_plugin.training._params import Columns

__all__ = [
    "BACKTEST_GATES",
    "VALIDATE_GATES",
    "StepParams",
    "StepVerdict",
    "log_report",
    "recipe_of",
    "record_verdict",
    "resolve_version",
    "step_inputs",
    "step_policy",
]

#: The metrics each step computes, hence the policy gates it applies.
VALIDATE_GATES = ("c_index", "brier", "integrated_brier")
BACKTEST_GATES = ("f1", "precision", "recall", "brier")
RECIPE_TAG = TAG_PREFIX + "recipe"


@dataclass(frozen=True)
class StepVerdict:
    """The outcome of a gate step.

    Attributes:
        step: ``validate`` or ``backtest``.
        version: the version judged.
        report: the gate report.
        metrics: the candidate's metric values that could be computed.
        run_id: the run holding the report.
    """

    step: str
    version: str
    report: GateReport
    metrics: dict[str, float]
    run_id: str

    @property
    def passed(self) -> bool:
        return self.report.passed

    def reasons(self) -> list[str]:
        """One ``step: gate (reason)`` line per gate that did not pass."""
        return [
            f"{self.step}: {r.name} {r.status.value} ({r.reason})"
            for r in self.report.gates
            if not r.passed
        ]


def step_policy(policy: Policy, names: Iterable[str]) -> Policy:
    """The gates of ``policy`` on the metrics ``names`` (policy order kept)."""
    from mlflow_plugin.policy import Policy

    wanted = set(names)
    gates = tuple(spec for spec in policy.gates if spec.name in wanted)
    return Policy(
        gates=gates,
        sanity=policy.sanity,
        horizon=policy.horizon,
        champion_test=policy.champion_test,
    )


def resolve_version(registry: Registry, model: str, version: str | None) -> VersionInfo:
    """``version`` of ``model``, or the one ``challenger`` points at.

    Raises:
        NotFound: no such model or version.
        BadInput: no version given and no challenger.
    """
    with CLOCK("registry"):
        if version is None:
            aliases = registry.get_model(model).aliases
            if CHALLENGER not in aliases:
                raise BadInput(f"{model!r} has no {CHALLENGER!r} version; pass version")
            version = aliases[CHALLENGER]
        return registry.get_version(model, version)


class StepParams(Protocol):
    """What ``validate`` and ``backtest`` read their inputs from (their ``*Params``)."""

    @property
    def model_name(self) -> str: ...
    @property
    def version(self) -> str | None: ...
    @property
    def data(self) -> str: ...
    @property
    def policy(self) -> str | None: ...
    @property
    def missing(self) -> str: ...


def step_inputs(
    params: StepParams,
    tracking_uri: str | None,
    columns_of: Callable[[VersionInfo], Columns],
) -> tuple[Policy, Registry, VersionInfo, SurvivalData]:
    """A step's policy, registry, version and data (prepared with ``columns_of(version)``),
    read before its run starts, so that bad input fails without a run."""
    from mlflow_plugin.policy import load_policy
    from mlflow_plugin.registry._adapter import Registry
    from mlflow_plugin.training._data import load_data, prepare

    policy = load_policy(params.policy)
    registry = Registry(tracking_uri)
    version = resolve_version(registry, params.model_name, params.version)
    columns = columns_of(version)
    with CLOCK("data"):
        data = prepare(load_data(params.data), columns, missing=params.missing)
    return policy, registry, version, data


def recipe_of(version: VersionInfo) -> dict[str, Any]:
    """The training recipe ``train`` stored on the version ({} for a version it did not make)."""
    raw = version.tags.get(RECIPE_TAG)
    if not raw:
        return {}
    try:
        recipe = json.loads(raw)
    except ValueError:
        raise ConfigError(
            f"{version.name} version {version.version}: tag {RECIPE_TAG} is not JSON"
        ) from None
    return recipe if isinstance(recipe, dict) else {}


def log_report(report: GateReport, title: str, *, extra: str = "") -> None:
    """The report as ``gate_report.json`` of the active run and, in Markdown, as the run's
    description (``mlflow.note.content``, in the step's batch: no upload of its own); ``extra``
    (Markdown, e.g. the candidate-minus-champion table) goes under the gate table."""
    markdown = f"### {title}\n\n{report.to_markdown()}" + (f"\n\n{extra}" if extra else "")
    log_artifact_files({"gate_report.json": report.to_json()})
    set_tags(
        {
            TAG_PREFIX + "gates": "passed" if report.passed else "failed",
            TAG_PREFIX + "failed_gates": ",".join(report.failed_gates),
            "mlflow.note.content": markdown,
        }
    )


def log_metrics(
    metrics: dict[str, Any], *, prefix: str = "", step: int | None = None
) -> dict[str, float]:
    """Log the finite values of ``metrics``; return them."""
    import math

    finite = {
        f"{prefix}{k}": float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }
    if finite:
        queue_metrics(finite, step=step)
    return finite


def record_verdict(
    registry: Registry, version: VersionInfo, step: str, passed: bool, run_id: str
) -> None:
    """Set ``mlflow_plugin.<validation|backtest>`` on the version, and link the report run."""
    state_tag = TAG_PREFIX + ("validation" if step == "validate" else "backtest")
    link_tag = TAG_PREFIX + ("gate_report" if step == "validate" else "backtest_report")
    from mlflow_plugin._internal.concurrency import parallel

    state = "passed" if passed else "failed"
    with CLOCK("registry"):  # two independent writes: one round trip's time
        parallel(
            lambda: registry.set_version_tag(version.name, version.version, state_tag, state),
            lambda: registry.set_version_tag(version.name, version.version, link_tag, run_id),
        )
