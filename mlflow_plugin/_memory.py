"""In-memory registry and ledger with the interfaces of the real adapters (for unit tests)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from mlflow_plugin._errors import NotFound, PromotionConflict
from mlflow_plugin._settings import TAG_PREFIX, actor
from mlflow_plugin._types import (
    Event,
    ModelInfo,
    VersionInfo,
    check_alias,
    check_event_type,
    check_model_name,
    check_version,
)

__all__ = ["InMemoryLedger", "InMemoryRegistry"]


class _MemoryLock:
    def __init__(self, registry: InMemoryRegistry, name: str, intent: dict[str, str]) -> None:
        self.registry, self.name, self.intent = registry, name, intent
        self.stale: list[Any] = []

    def __enter__(self) -> _MemoryLock:
        lock = self.registry._locks.setdefault(self.name, threading.Lock())
        if not lock.acquire(timeout=10):
            raise PromotionConflict(f"model {self.name!r} is locked")
        return self

    def __exit__(self, *exc: object) -> None:
        self.registry._locks[self.name].release()


class InMemoryRegistry:
    """Registered models, versions, aliases, stages and tags kept in dicts."""

    def __init__(self) -> None:
        self.uri = "memory://"
        self._models: dict[str, ModelInfo] = {}
        self._versions: dict[str, dict[str, VersionInfo]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self.calls: list[str] = []

    def _model(self, name: str) -> ModelInfo:
        check_model_name(name)
        if name not in self._models:
            raise NotFound(f"registered model {name!r} does not exist")
        return self._models[name]

    def get_model(self, name: str) -> ModelInfo:
        self.calls.append("get_model")
        m = self._model(name)
        return ModelInfo(m.name, dict(m.aliases), dict(m.tags))

    def ensure_model(self, name: str, description: str | None = None) -> None:
        check_model_name(name)
        self._models.setdefault(name, ModelInfo(name))
        self._versions.setdefault(name, {})

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        self._model(name).tags[key] = value

    def delete_model_tag(self, name: str, key: str) -> None:
        self._model(name).tags.pop(key, None)

    def register_version(
        self, name: str, source: str, run_id: str | None, tags: dict[str, str] | None = None
    ) -> VersionInfo:
        self.ensure_model(name)
        number = str(len(self._versions[name]) + 1)
        v = VersionInfo(name, number, "None", dict(tags or {}), run_id, source, int(time.time() * 1000))
        self._versions[name][number] = v
        return v

    def get_version(self, name: str, version: str | int) -> VersionInfo:
        v = check_version(version)
        self._model(name)
        if v not in self._versions[name]:
            raise NotFound(f"{name!r} has no version {v}")
        found = self._versions[name][v]
        return replace(found, tags=dict(found.tags))

    def list_versions(self, name: str) -> list[VersionInfo]:
        self._model(name)
        return [replace(v, tags=dict(v.tags)) for _, v in sorted(
            self._versions[name].items(), key=lambda kv: int(kv[0]))]  # fmt: skip

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self.get_version(name, version)
        self._versions[name][version].tags[key] = value

    def set_stage(self, name: str, version: str, stage: str) -> None:
        found = self.get_version(name, version)
        self._versions[name][found.version] = replace(found, stage=stage)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        check_alias(alias)
        self.get_version(name, version)
        self._model(name).aliases[alias] = check_version(version)

    def delete_alias(self, name: str, alias: str) -> None:
        self._model(name).aliases.pop(alias, None)

    def alias_version(self, name: str, alias: str) -> str | None:
        return self._model(name).aliases.get(alias)

    def lock(self, name: str, *, intent: dict[str, str] | None = None, **_: Any) -> _MemoryLock:
        self._model(name)
        return _MemoryLock(self, name, intent or {})


class InMemoryLedger:
    """Events appended to a list (``.events()`` filters like the real ledger)."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._ids = itertools.count(1)
        self._clock = itertools.count(int(time.time() * 1000))

    def record(
        self, event_type: str, model: str, *, version: str = "", from_version: str | None = "",
        message: str = "", strategy: str = "", who: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> Event:  # fmt: skip
        check_event_type(event_type)
        extra_tags = {
            (k if k.startswith(TAG_PREFIX) else TAG_PREFIX + k): str(v)
            for k, v in (extra or {}).items()
        }
        if event_type == "rollback":
            extra_tags[TAG_PREFIX + "rollback"] = "true"
        event = Event(
            event_type, model, str(version or ""), str(from_version or ""), who or actor(),
            message, strategy, next(self._clock), f"mem-{next(self._ids)}", extra_tags,
        )  # fmt: skip
        self._events.append(event)
        return event

    def prepare(self, event_type: str, model: str, **fields: Any) -> _PreparedMemoryEvent:
        check_event_type(event_type)
        return _PreparedMemoryEvent(self, event_type, model, fields)

    def events(
        self, model: str | None = None, event_type: str | None = None,
        since_ms: int | None = None, *, event_types: Iterable[str] | None = None,
    ) -> list[Event]:  # fmt: skip
        wanted = set(event_types) if event_types is not None else None
        return [
            e for e in self._events
            if (model is None or e.model == model)
            and (event_type is None or e.event_type == event_type)
            and (since_ms is None or e.timestamp_ms >= since_ms)
            and (wanted is None or e.event_type in wanted)
        ]  # fmt: skip


class _PreparedMemoryEvent:
    def __init__(
        self, ledger: InMemoryLedger, event_type: str, model: str, fields: dict[str, Any]
    ) -> None:
        self.ledger, self.event_type, self.model, self.fields = ledger, event_type, model, fields

    def commit(self) -> Event:
        return self.ledger.record(self.event_type, self.model, **self.fields)

    def abandon(self) -> None:
        pass
