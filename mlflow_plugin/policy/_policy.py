"""The gate policy: thresholds per metric, parsed once from YAML into frozen dataclasses.

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
message starts with the key's dotted path (``gates.f1.threshold: required``).
How the thresholds are applied is documented in :func:`mlflow_plugin.evaluation._evaluate.evaluate_policy`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from mlflow_plugin.errors import ConfigError
from mlflow_plugin.metrics._scalar import as_number
from mlflow_plugin.policy._gate_spec import (
    CHAMPION_TEST_METHODS,
    GATE_DIRECTIONS,
    ChampionTest,
    GateSpec,
    SanityPolicy,
)
from mlflow_plugin.policy._loop import (
    Alerts,
    RollbackIf,
    Triggers,
    parse_alerts,
    parse_rollback_if,
    parse_triggers,
)
from mlflow_plugin.policy._retention import RetentionPolicy, parse_retention
from mlflow_plugin.policy._rollout import RolloutPolicy, parse_rollout

__all__ = [
    "CHAMPION_TEST_METHODS",
    "ChampionTest",
    "GATE_DIRECTIONS",
    "GateSpec",
    "Policy",
    "SanityPolicy",
]

# Metrics bounded by 1; the IPCW Brier scores are only bounded below.
_UNIT_INTERVAL = frozenset({"c_index", "f1", "precision", "recall"})

_GATE_KEYS = (
    "threshold",
    "higher_is_better",
    "inclusive",
    "min_delta_vs_champion",
    "min_relative_change_vs_champion",
    "above_baseline",
)
_TOP_KEYS = (
    "gates",
    "sanity",
    "horizon",
    "champion_test",
    "retention",
    "triggers",
    "rollback_if",
    "alerts",
    "rollout",
)
_CHAMPION_TEST_KEYS = ("method", "margin", "confidence", "resamples", "seed")
_SANITY_KEYS = ("probability_atol",)

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
        return _Loader(source).policy(data)

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


class _Loader:
    """Walks the document once; every error carries the dotted path and the source."""

    def __init__(self, source: str | None) -> None:
        self._suffix = f" (in {source})" if source else ""

    def fail(self, path: str, problem: str) -> NoReturn:
        raise ConfigError(f"{path}: {problem}{self._suffix}")

    def mapping(self, path: str, value: object, allowed: tuple[str, ...]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(path, f"expected a mapping, got {_kind(value)}")
        for key in value:
            if key not in allowed:
                self.fail(
                    f"{path}.{key}" if path else str(key),
                    f"unknown key; expected one of {', '.join(allowed)}",
                )
        return value

    def number(self, path: str, value: object, **bounds: Any) -> float:
        if isinstance(value, str):
            hint = ""
            try:
                float(value)
                hint = " (write it with a dot, e.g. 1.0e-6: YAML reads 1e-6 as text)"
            except ValueError:
                pass
            self.fail(path, f"expected a number, got text {value!r}{hint}")
        try:
            return as_number(path, value, **bounds)
        except ValueError as exc:
            raise ConfigError(f"{exc}{self._suffix}") from None

    def optional_number(self, path: str, value: object, **bounds: Any) -> float | None:
        return None if value is None else self.number(path, value, **bounds)

    def boolean(self, path: str, value: object) -> bool:
        if not isinstance(value, bool):
            self.fail(path, f"expected true or false, got {_kind(value)}")
        return value

    def policy(self, data: object) -> Policy:
        if data is None:
            self.fail("gates", "required (the policy is empty)")
        if not isinstance(data, Mapping):
            self.fail("policy", f"expected a mapping at the top level, got {_kind(data)}")
        doc = self.mapping("", data, _TOP_KEYS)
        if "gates" not in doc:
            self.fail("gates", "required")
        gates_doc = self.mapping("gates", doc["gates"], tuple(GATE_DIRECTIONS))
        if not gates_doc:
            self.fail("gates", "at least one gate is required")
        gates = tuple(self.gate(str(name), spec) for name, spec in gates_doc.items())
        sanity = SanityPolicy()
        if doc.get("sanity") is not None:
            sanity_doc = self.mapping("sanity", doc["sanity"], _SANITY_KEYS)
            if "probability_atol" in sanity_doc:
                atol = self.number(
                    "sanity.probability_atol", sanity_doc["probability_atol"], lo=0.0, hi=1.0
                )
                sanity = SanityPolicy(probability_atol=atol)
        horizon = self.optional_number("horizon", doc.get("horizon"), lo=0.0, lo_inclusive=False)
        test = ChampionTest()
        if doc.get("champion_test") is not None:
            test = self.champion_test(doc["champion_test"])
        triggers = (
            parse_triggers(self, doc["triggers"]) if doc.get("triggers") is not None else None
        )
        rollback_if = (
            parse_rollback_if(self, doc["rollback_if"])
            if doc.get("rollback_if") is not None
            else None
        )
        alerts = parse_alerts(self, doc["alerts"]) if doc.get("alerts") is not None else Alerts()
        retention = parse_retention(self, doc.get("retention"))
        rollout = (
            parse_rollout(self, doc["rollout"])
            if doc.get("rollout") is not None
            else RolloutPolicy()
        )
        return Policy(
            gates=gates,
            sanity=sanity,
            horizon=horizon,
            champion_test=test,
            retention=retention,
            triggers=triggers,
            rollback_if=rollback_if,
            alerts=alerts,
            rollout=rollout,
        )

    def champion_test(self, value: object) -> ChampionTest:
        doc = self.mapping("champion_test", value, _CHAMPION_TEST_KEYS)
        method = doc.get("method", "point")
        if method not in CHAMPION_TEST_METHODS:
            self.fail(
                "champion_test.method",
                f"expected one of {', '.join(CHAMPION_TEST_METHODS)}, got {_kind(method)}",
            )
        resamples = self.number(
            "champion_test.resamples", doc.get("resamples", 200), lo=20, hi=100000
        )
        seed = self.number("champion_test.seed", doc.get("seed", 0), lo=0)
        for key, number in (("resamples", resamples), ("seed", seed)):
            if not float(number).is_integer():
                self.fail(f"champion_test.{key}", f"expected a whole number, got {number:g}")
        return ChampionTest(
            method=str(method),
            margin=self.number("champion_test.margin", doc.get("margin", 0.0), lo=0.0),
            confidence=self.number(
                "champion_test.confidence", doc.get("confidence", 0.95), lo=0.5, hi=0.999
            ),
            resamples=int(resamples),
            seed=int(seed),
        )

    def gate(self, name: str, value: object) -> GateSpec:
        path = f"gates.{name}"
        spec = self.mapping(path, value, _GATE_KEYS)
        direction = GATE_DIRECTIONS[name]
        if "threshold" not in spec or spec["threshold"] is None:
            self.fail(f"{path}.threshold", "required")
        upper = 1.0 if name in _UNIT_INTERVAL else None
        threshold = self.number(f"{path}.threshold", spec["threshold"], lo=0.0, hi=upper)
        higher = self.boolean(f"{path}.higher_is_better", spec.get("higher_is_better", direction))
        if higher != direction:
            self.fail(
                f"{path}.higher_is_better",
                f"{name} is {'higher' if direction else 'lower'}-is-better, got {higher}",
            )
        return GateSpec(
            name=name,
            threshold=threshold,
            higher_is_better=higher,
            inclusive=self.boolean(f"{path}.inclusive", spec.get("inclusive", False)),
            min_delta_vs_champion=self.optional_number(
                f"{path}.min_delta_vs_champion", spec.get("min_delta_vs_champion")
            ),
            min_relative_change_vs_champion=self.optional_number(
                f"{path}.min_relative_change_vs_champion",
                spec.get("min_relative_change_vs_champion"),
                lo=0.0,
                hi=1.0,
            ),
            above_baseline=self.boolean(
                f"{path}.above_baseline", spec.get("above_baseline", False)
            ),
        )


def _kind(value: object) -> str:
    if isinstance(value, str):
        return f"text {value!r}"
    if value is None:
        return "nothing (null)"
    return type(value).__name__
