"""An organisation's pipeline settings for one model (``POST …/cicd``): schedule, triggers and
rollout strategy, validated by the policy loader's own rules and stored on the model.

The document::

    {"schedule": "0 2 * * 1",                        # cron (UTC); same as triggers.schedule
     "triggers": {"brier_increase": 0.1, "new_data": "s3://bucket/latest.csv"},
     "strategy": "canary"}                           # how a retrained version is promoted

``triggers`` takes the keys of the policy file's ``triggers`` section
(:mod:`mlflow_plugin.policy._loop`); the operator uses these settings instead of the
policy file's ``triggers`` for that model (docs/ARCHITECTURE.md, "Organisations").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from mlflow_plugin.errors import ConfigError
from mlflow_plugin.policy._loop import Triggers

__all__ = ["PIPELINE_KEYS", "PIPELINE_TAG", "PipelineSettings", "parse_pipeline"]

#: The registered-model tag that holds a model's pipeline settings (written by ``POST …/cicd``).
PIPELINE_TAG = "mlflow_plugin.pipeline"
PIPELINE_KEYS = ("schedule", "triggers", "strategy")
_STRATEGIES = ("all_at_once", "blue_green", "canary")  # mlflow_plugin.types.STRATEGIES


@dataclass(frozen=True)
class PipelineSettings:
    """Validated pipeline settings: ``triggers`` as the policy loader builds them."""

    triggers: Triggers
    strategy: str | None = None

    def to_json(self) -> str:
        """The stored form (a registered-model tag): canonical JSON that parses back equal."""
        doc: dict[str, Any] = {
            "triggers": {k: v for k, v in asdict(self.triggers).items() if v is not None}
        }
        if "min_history" in doc["triggers"]:
            doc["triggers"]["min_history"] = f"{doc['triggers']['min_history']:f}s"
        if self.strategy is not None:
            doc["strategy"] = self.strategy
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def parse_pipeline(doc: object, *, source: str = "pipeline settings") -> PipelineSettings:
    """Validate a pipeline document (a mapping, or its JSON text).

    Raises:
        ConfigError: names the key and the problem (``triggers.schedule: not a cron …``).
    """
    from mlflow_plugin.policy._policy import Policy

    if isinstance(doc, str):
        try:
            doc = json.loads(doc)
        except ValueError as exc:
            raise ConfigError(f"{source}: not JSON ({exc})") from None
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{source}: expected an object with {', '.join(PIPELINE_KEYS)}")
    unknown = sorted(str(k) for k in doc if k not in PIPELINE_KEYS)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)}; expected {', '.join(PIPELINE_KEYS)}"
        )
    triggers = doc.get("triggers") or {}
    if not isinstance(triggers, Mapping):
        raise ConfigError(f"{source}: triggers must be an object")
    triggers = dict(triggers)
    if doc.get("schedule") is not None:
        if triggers.get("schedule") not in (None, doc["schedule"]):
            raise ConfigError(f"{source}: schedule and triggers.schedule differ")
        triggers["schedule"] = doc["schedule"]
    strategy = doc.get("strategy")
    if strategy is not None and strategy not in _STRATEGIES:
        raise ConfigError(f"{source}: strategy {strategy!r} is not one of {', '.join(_STRATEGIES)}")
    base = Policy.default().to_dict()  # only the triggers section is the caller's
    policy = Policy.from_dict({**base, "triggers": triggers}, source=source)
    assert policy.triggers is not None
    return PipelineSettings(policy.triggers, strategy)
