"""The light entities :class:`~mlflow_plugin.mlflow_io._rest.RestClient` returns: dataclasses with the
attribute names of MLflow's (``RegisteredModel``, ``ModelVersion``, ``Run``, ``Experiment``),
built from the REST answers' JSON. No ``mlflow`` import (see :mod:`mlflow_plugin.mlflow_io._rest`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class PagedList(list[Any]):
    """A page of results with the next page's ``token`` (None on the last page)."""

    def __init__(self, items: Iterable[Any], token: str | None) -> None:
        super().__init__(items)
        self.token = token or None


def _tags(raw: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    return {t["key"]: t.get("value", "") for t in raw or []}


@dataclass(frozen=True)
class RunTag:
    key: str
    value: str


@dataclass
class RegisteredModel:
    name: str
    aliases: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    creation_timestamp: int | None = None
    last_updated_timestamp: int | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RegisteredModel:
        return cls(
            name=d["name"],
            aliases={a["alias"]: str(a["version"]) for a in d.get("aliases", [])},
            tags=_tags(d.get("tags")),
            description=d.get("description"),
            creation_timestamp=_int(d.get("creation_timestamp")),
            last_updated_timestamp=_int(d.get("last_updated_timestamp")),
        )


@dataclass
class ModelVersion:
    name: str
    version: str
    current_stage: str = "None"
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    run_id: str | None = None
    source: str | None = None
    status: str | None = None
    creation_timestamp: int | None = None
    last_updated_timestamp: int | None = None
    description: str | None = None
    model_id: str | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ModelVersion:
        return cls(
            name=d["name"],
            version=str(d["version"]),
            current_stage=d.get("current_stage") or "None",
            tags=_tags(d.get("tags")),
            aliases=list(d.get("aliases", [])),
            run_id=d.get("run_id") or None,
            source=d.get("source") or None,
            status=d.get("status"),
            creation_timestamp=_int(d.get("creation_timestamp")),
            last_updated_timestamp=_int(d.get("last_updated_timestamp")),
            description=d.get("description"),
            model_id=d.get("model_id") or None,
        )


@dataclass
class RunInfo:
    run_id: str
    experiment_id: str
    status: str
    start_time: int | None
    end_time: int | None
    lifecycle_stage: str
    artifact_uri: str | None
    run_name: str | None
    user_id: str | None

    @property
    def run_uuid(self) -> str:
        return self.run_id


@dataclass
class RunData:
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Run:
    info: RunInfo
    data: RunData

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Run:
        i, data = d.get("info", {}), d.get("data", {})
        info = RunInfo(
            run_id=i.get("run_id") or i.get("run_uuid", ""),
            experiment_id=str(i.get("experiment_id", "")),
            status=i.get("status", ""),
            start_time=_int(i.get("start_time")),
            end_time=_int(i.get("end_time")),
            lifecycle_stage=i.get("lifecycle_stage", "active"),
            artifact_uri=i.get("artifact_uri"),
            run_name=i.get("run_name"),
            user_id=i.get("user_id"),
        )
        return cls(
            info,
            RunData(
                metrics={m["key"]: float(m.get("value", 0.0)) for m in data.get("metrics", [])},
                params=_tags(data.get("params")),
                tags=_tags(data.get("tags")),
            ),
        )


@dataclass
class Experiment:
    experiment_id: str
    name: str
    artifact_location: str | None = None
    lifecycle_stage: str = "active"
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Experiment:
        return cls(
            experiment_id=str(d["experiment_id"]),
            name=d.get("name", ""),
            artifact_location=d.get("artifact_location"),
            lifecycle_stage=d.get("lifecycle_stage", "active"),
            tags=_tags(d.get("tags")),
        )


def _int(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


def _kv(tags: Mapping[str, Any] | None) -> list[dict[str, str]]:
    return [{"key": k, "value": str(v)} for k, v in (tags or {}).items()]
