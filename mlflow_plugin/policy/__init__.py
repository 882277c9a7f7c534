"""The policy file: gate thresholds, the champion test, sanity checks, and the closed loop's,
rollouts', retention's and CI/CD's sections, parsed once from YAML into frozen value objects.

The file is validated by pydantic models (:class:`PolicyFile`, whose JSON Schema
``mlflow-plugin policy schema`` prints); a bad file fails at load with the dotted path of the key
(:class:`~mlflow_plugin.errors.ConfigError`).
Pure: no mlflow, no statistics (those are :mod:`mlflow_plugin.metrics`).
"""

from __future__ import annotations

from mlflow_plugin.policy._load import DEFAULT_POLICY, load_policy
from mlflow_plugin.policy._loop import (
    Alerts,
    PerformanceRules,
    RollbackIf,
    Triggers,
    parse_duration,
)
from mlflow_plugin.policy._policy import (
    CHAMPION_TEST_METHODS,
    GATE_DIRECTIONS,
    ChampionTest,
    GateSpec,
    Policy,
    PolicyFile,
    SanityPolicy,
    policy_schema,
)
from mlflow_plugin.policy._retention import (
    PROTECTED_ALIASES,
    KeepLast,
    MaxAge,
    MinMetric,
    RetentionPolicy,
    RetentionRule,
)
from mlflow_plugin.policy._rollout import RolloutPolicy

__all__ = [
    "Alerts",
    "CHAMPION_TEST_METHODS",
    "ChampionTest",
    "DEFAULT_POLICY",
    "GATE_DIRECTIONS",
    "GateSpec",
    "KeepLast",
    "MaxAge",
    "MinMetric",
    "PROTECTED_ALIASES",
    "PerformanceRules",
    "Policy",
    "PolicyFile",
    "RetentionPolicy",
    "RetentionRule",
    "RollbackIf",
    "RolloutPolicy",
    "SanityPolicy",
    "Triggers",
    "load_policy",
    "parse_duration",
    "policy_schema",
]
