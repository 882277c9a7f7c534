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
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import ValidationError, model_validator

from mlflow_plugin._internal.validation import config_error
from mlflow_plugin.errors import ConfigError
from mlflow_plugin.policy._loop import Triggers, TriggersSection
from mlflow_plugin.policy._validation import Section, problem

__all__ = ["PIPELINE_TAG", "PipelineSettings", "parse_pipeline"]

#: The registered-model tag that holds a model's pipeline settings (written by ``POST …/cicd``).
PIPELINE_TAG = "mlflow_plugin.pipeline"


class _PipelineDocument(Section):
    schedule: str | None = None
    """Cron (UTC): ``triggers.schedule``, where it is validated."""
    triggers: TriggersSection = TriggersSection()
    strategy: Literal["all_at_once", "blue_green", "canary"] | None = None  # types.STRATEGIES
    """How a retrained version is promoted."""

    @model_validator(mode="before")
    @classmethod
    def _schedule_is_a_trigger(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("schedule") is None:
            return data
        triggers = data.get("triggers") or {}
        if not isinstance(triggers, dict):
            return data  # pydantic reports the type
        if triggers.get("schedule") not in (None, data["schedule"]):
            raise problem("differs from triggers.schedule", "schedule")
        return {**data, "schedule": None, "triggers": {**triggers, "schedule": data["schedule"]}}


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
    if isinstance(doc, str):
        try:
            doc = json.loads(doc)
        except ValueError as exc:
            raise ConfigError(f"{source}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        fields = ", ".join(_PipelineDocument.model_fields)
        raise ConfigError(f"{source}: expected an object with {fields}")
    try:
        document = _PipelineDocument.model_validate(doc)
    except ValidationError as exc:
        raise config_error(exc, source, root=source) from None
    return PipelineSettings(document.triggers.triggers(), document.strategy)
