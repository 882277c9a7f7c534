"""The gate policy: thresholds per metric, parsed once from YAML, validated by the pydantic
model of the file (:class:`PolicyFile`), and kept as frozen dataclasses (:class:`Policy`).

The file (``flows/policy.yaml`` is the default, with comments)::

    gates:                       # required; at least one gate
      c_index:                   # a metric name: c_index, brier, integrated_brier, f1, ...
        threshold: 0.5           # required
        higher_is_better: true   # optional; must agree with the metric's direction
        inclusive: false         # optional (false): may the value equal the threshold?
        min_delta_vs_champion: 0.0            # optional: candidate >= champion + delta
        min_relative_change_vs_champion: 0.05 # optional, in [0, 1]: MLflow's relative change
        above_baseline: false    # optional: must also beat a trivial predictor's value
      f1: {threshold: 0.4}
    champion_test:               # optional: how "not worse than the champion" is decided
      method: point              # point | non_inferiority | superiority
      margin: 0.0                # tolerated (non_inferiority) or required (superiority) gap
      confidence: 0.95           # of the paired-bootstrap interval
      resamples: 200
      seed: 0
    sanity:                      # optional
      probability_atol: 1.0e-6   # tolerance on probability row sums
    horizon: 52                  # optional: time point of the survival Brier score
    retention: {...}             # optional: see mlflow_plugin.policy._retention

Every problem is reported at load time as a :class:`~mlflow_plugin.ConfigError` whose one-line
message starts with the key's dotted path (``gates.f1.threshold: required``); see
:mod:`mlflow_plugin.policy._validation`. ``mlflow-plugin policy schema`` prints the file's JSON
Schema for editors.
How the thresholds are applied is documented in :func:`mlflow_plugin.evaluation._evaluate.evaluate_policy`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

import yaml
from pydantic import ConfigDict, Field, ValidationError

from mlflow_plugin._internal.validation import config_error
from mlflow_plugin.errors import ConfigError
from mlflow_plugin.policy._gate_spec import (
    CHAMPION_TEST_METHODS,
    GATE_DIRECTIONS,
    ChampionTest,
    ChampionTestSection,
    GateSpec,
    GatesSection,
    SanityPolicy,
    SanitySection,
)
from mlflow_plugin.policy._loop import (
    Alerts,
    AlertsSection,
    RollbackIf,
    RulesSection,
    Triggers,
    TriggersSection,
)
from mlflow_plugin.policy._retention import RetentionPolicy, RetentionSection
from mlflow_plugin.policy._rollout import RolloutPolicy, RolloutSection
from mlflow_plugin.policy._validation import Number, Section

__all__ = [
    "CHAMPION_TEST_METHODS",
    "ChampionTest",
    "GATE_DIRECTIONS",
    "GateSpec",
    "Policy",
    "PolicyFile",
    "SanityPolicy",
    "policy_schema",
]

_DEFAULTS: dict[str, Any] = {
    "gates": {
        "c_index": {"threshold": 0.5, "min_delta_vs_champion": 0.0},
        "f1": {"threshold": 0.4},
        "precision": {"threshold": 0.3},
        "brier": {"threshold": 0.3},
    },
    "sanity": {"probability_atol": 1e-6},
    "horizon": None,
}


@dataclass(frozen=True)
class Policy:
    """A validated gate policy. Build it with :meth:`from_yaml`, :meth:`from_dict` or
    :meth:`default`; the constructor trusts its arguments.

    Attributes:
        gates: one :class:`GateSpec` per gated metric, in file order.
        sanity: options of the sanity gates.
        horizon: time point of the survival Brier score, if the policy fixes one.
        retention: which versions may be archived and deleted (default: keep all).
        triggers: when the operator retrains (``triggers`` section; None: never on its own).
        rollback_if: when a champion is degraded (``rollback_if`` section; None: never).
        alerts: where alerts go besides the ledger (``alerts`` section).
        rollout: thresholds of the canary / blue-green / watch analysis (``rollout`` section;
            defaults: :class:`~mlflow_plugin.policy.RolloutPolicy`).
    """

    gates: tuple[GateSpec, ...]
    sanity: SanityPolicy = field(default_factory=SanityPolicy)
    horizon: float | None = None
    champion_test: ChampionTest = field(default_factory=ChampionTest)
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    triggers: Triggers | None = None
    rollback_if: RollbackIf | None = None
    alerts: Alerts = field(default_factory=Alerts)
    rollout: RolloutPolicy = field(default_factory=RolloutPolicy)

    @classmethod
    def default(cls) -> Policy:
        """C-index > 0.5 and >= the champion's, F1 > 0.4, precision > 0.3, Brier < 0.3."""
        return cls.from_dict(_DEFAULTS)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Policy:
        """Load and validate a policy file.

        Raises:
            ConfigError: the file is missing, unreadable or not YAML, or a key is unknown,
                of the wrong type, out of range or missing (message: dotted path first).
        """
        source = os.fspath(path)
        try:
            text = Path(source).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"policy file not found: {source}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read policy file {source}: {exc}") from exc
        try:
            data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
        except RecursionError:
            raise ConfigError(f"cannot parse policy file {source}: nested too deeply") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or "invalid YAML"
            raise ConfigError(f"cannot parse policy file {source}: {problem}{where}") from exc
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: object, *, source: str | None = None) -> Policy:
        """Validate a policy given as a mapping (the YAML document).

        Args:
            data: the parsed document.
            source: where it came from, appended to error messages.

        Raises:
            ConfigError: see :meth:`from_yaml`.
        """
        if data is None:
            raise ConfigError(f"gates: required (the policy is empty){_suffix(source)}")
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"policy: expected a mapping at the top level, got {type(data).__name__}"
                f"{_suffix(source)}"
            )
        try:
            document = PolicyFile.model_validate(data)
        except ValidationError as exc:
            raise config_error(exc, source, root="policy") from None
        return document.policy(data["gates"])

    def gate(self, name: str) -> GateSpec:
        """The gate on metric ``name``; :class:`KeyError` if the policy has none."""
        for spec in self.gates:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The YAML document of this policy; ``from_dict(p.to_dict()) == p``."""
        import dataclasses

        out: dict[str, Any] = {
            "gates": {spec.name: spec.to_dict() for spec in self.gates},
            "sanity": {"probability_atol": self.sanity.probability_atol},
            "horizon": self.horizon,
            "champion_test": self.champion_test.to_dict(),
        }
        if self.retention != RetentionPolicy():
            out["retention"] = self.retention.to_dict()
        for key in ("triggers", "rollback_if"):
            section = getattr(self, key)
            if section is not None:
                out[key] = {k: v for k, v in dataclasses.asdict(section).items() if v is not None}
                if "min_history" in out[key]:
                    out[key]["min_history"] = f"{out[key]['min_history'] / 86400:.6f}d"
        if self.alerts != Alerts():
            out["alerts"] = {
                k: v for k, v in dataclasses.asdict(self.alerts).items() if v is not None
            }
        if self.rollout != RolloutPolicy():
            out["rollout"] = self.rollout.to_dict()
        return out


def policy_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the policy file."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **PolicyFile.model_json_schema(),
    }


def _suffix(source: str | None) -> str:
    return f" (in {source})" if source else ""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys (it would silently keep the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class PolicyFile(Section):
    """The policy file as a pydantic model: its JSON Schema is ``mlflow-plugin policy schema``.
    :meth:`Policy.from_dict` validates with it and builds the frozen value objects."""

    model_config = ConfigDict(title="mlflow-plugin policy file")
    null_is_default: ClassVar[bool] = False  # `gates: null` is a mistake, not "no gates"

    gates: GatesSection
    """One gate per metric: c_index, f1, precision, recall (higher is better, in [0, 1]),
    brier, integrated_brier (lower is better)."""
    sanity: SanitySection | None = None
    horizon: Annotated[Number, Field(gt=0.0)] | None = None
    """Time point of the survival Brier score; null: chosen inside the rows' follow-up."""
    champion_test: ChampionTestSection | None = None
    retention: RetentionSection | None = None
    triggers: TriggersSection | None = None
    """When the operator retrains; null: never on its own."""
    rollback_if: RulesSection | None = None
    """When a champion is degraded; null: never."""
    alerts: AlertsSection | None = None
    rollout: RolloutSection | None = None

    def policy(self, gate_order: Mapping[str, object]) -> Policy:
        """The value objects; gates in the order of ``gate_order`` (the document's)."""
        return Policy(
            gates=self.gates.specs(gate_order),
            sanity=(self.sanity or SanitySection()).policy(),
            horizon=self.horizon,
            champion_test=(self.champion_test or ChampionTestSection()).policy(),
            retention=(self.retention or RetentionSection()).policy(),
            triggers=self.triggers.triggers() if self.triggers else None,
            rollback_if=self.rollback_if.rollback_if() if self.rollback_if else None,
            alerts=(self.alerts or AlertsSection()).alerts(),
            rollout=(self.rollout or RolloutSection()).policy(),
        )
