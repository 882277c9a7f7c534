"""In-memory registry and ledger with the interfaces of the real adapters (for unit tests)."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from mlflow_plugin.errors import LockLost, NotFound, PromotionConflict
from mlflow_plugin.ledger._chain import (
    HASH_TAG,
    PREV_HASH_TAG,
    SEQ_TAG,
    ChainEntry,
    ChainReport,
    event_hash,
)
from mlflow_plugin.ledger._chain import verify as verify_entries
from mlflow_plugin.ledger._event_tags import event_from, event_tags
from mlflow_plugin.types import (
    Event,
    ModelInfo,
    StaleLock,
    VersionInfo,
    check_alias,
    check_event_type,
    check_model_name,
    check_version,
)

__all__ = ["InMemoryLedger", "InMemoryRegistry"]


@dataclass
class _Held:
    token: str
    owner: str
    expires: float
    intent: dict[str, str]


class _MemoryLock:
    """The in-memory twin of :class:`mlflow_plugin.registry._adapter.ModelLock`: same lease, token,
    heartbeat, stale-breaking and :meth:`check` semantics, kept in the registry's dict."""

    def __init__(
        self,
        registry: InMemoryRegistry,
        name: str,
        intent: dict[str, str],
        lease: float,
        timeout: float,
        heartbeat: bool,
    ) -> None:
        self.registry, self.name, self.intent = registry, name, dict(intent)
        self.lease, self.timeout, self.heartbeat = lease, timeout, heartbeat
        self.token = uuid.uuid4().hex
        self.owner = f"memory:{threading.get_ident()}:{self.token[:8]}"
        self.stale: list[StaleLock] = []
        self.held = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> _MemoryLock:
        deadline = time.monotonic() + self.timeout
        cond = self.registry._cond
        with cond:
            while True:
                current = self.registry._locks.get(self.name)
                if current is not None and time.time() >= current.expires:
                    self.stale.append(StaleLock(current.owner, dict(current.intent), current.token))
                    current = None
                if current is None:
                    self.registry._locks[self.name] = _Held(
                        self.token, self.owner, time.time() + self.lease, dict(self.intent)
                    )
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PromotionConflict(
                        f"model {self.name!r} is locked by {current.owner}; "
                        f"gave up after {self.timeout:.0f}s"
                    )
                cond.wait(min(left, max(0.01, current.expires - time.time())))
        self.held = True
        self.registry._held[(self.name, threading.get_ident())] = self
        if self.heartbeat:
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()
        return self

    def _mine(self) -> _Held | None:
        current = self.registry._locks.get(self.name)
        return current if current is not None and current.token == self.token else None

    def _beat(self) -> None:
        while not self._stop.wait(self.lease / 3):
            with self.registry._cond:
                mine = self._mine()
                if mine is None:
                    return
                mine.expires = time.time() + self.lease

    def check(self) -> None:
        with self.registry._cond:
            mine = self._mine()
            if not self.held or mine is None or time.time() >= mine.expires:
                raise LockLost(f"lost the lock on {self.name!r}; nothing written")

    def annotate(self, **intent: str) -> None:
        self.intent.update(intent)
        with self.registry._cond:
            mine = self._mine()
            if mine is not None:
                mine.intent.update(intent)

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        self._stop.set()
        self.registry._held.pop((self.name, threading.get_ident()), None)
        with self.registry._cond:
            if self._mine() is not None:
                del self.registry._locks[self.name]
            self.registry._cond.notify_all()

    def __enter__(self) -> _MemoryLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class _MemoryReentered(_MemoryLock):
    def __init__(self, outer: _MemoryLock) -> None:  # noqa: D107 - shares the outer lock
        self.__dict__.update(outer.__dict__)
        self._outer = outer
        self.stale = []

    def acquire(self) -> _MemoryLock:
        return self

    def check(self) -> None:
        self._outer.check()

    def annotate(self, **intent: str) -> None:
        self._outer.annotate(**intent)

    def release(self) -> None:
        pass


class InMemoryRegistry:
    """Registered models, versions, aliases, stages and tags kept in dicts."""

    def __init__(self) -> None:
        self.uri = "memory://"
        self._models: dict[str, ModelInfo] = {}
        self._versions: dict[str, dict[str, VersionInfo]] = {}
        self._locks: dict[str, _Held] = {}
        self._held: dict[tuple[str, int], _MemoryLock] = {}
        self._cond = threading.Condition()
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
        v = VersionInfo(
            name, number, "None", dict(tags or {}), run_id, source, int(time.time() * 1000)
        )
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
        return [
            replace(v, tags=dict(v.tags))
            for _, v in sorted(self._versions[name].items(), key=lambda kv: int(kv[0]))
        ]

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

    def version_by_alias(self, name: str, alias: str) -> VersionInfo | None:
        version = self._model(name).aliases.get(alias)
        return None if version is None else self.get_version(name, version)

    def lock(
        self,
        name: str,
        *,
        intent: dict[str, str] | None = None,
        lease: float | None = None,
        timeout: float = 10.0,
        heartbeat: bool = True,
    ) -> _MemoryLock:
        self._model(name)
        held = self._held.get((name, threading.get_ident()))
        if held is not None and held.held:
            return _MemoryReentered(held)
        return _MemoryLock(self, name, intent or {}, lease or 30.0, timeout, heartbeat)

    def lock_status(self, name: str) -> dict[str, Any] | None:
        self._model(name)
        with self._cond:
            held = self._locks.get(name)
            if held is None:
                return None
            return {
                "model": name,
                "lock_model": f"memory:{name}",
                "holder": held.owner,
                "token": held.token,
                "intent": dict(held.intent),
                "lease_expires": held.expires,
                "expires": held.expires,
                "stale": time.time() >= held.expires,
                "leftovers": [],
            }


class InMemoryLedger:
    """Events appended to a list, hash-chained per model like the real ledger (``.events()``
    filters like the real ledger; ``.verify_chain()`` checks the chain)."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._tags: dict[str, dict[str, str]] = {}
        self._ids = itertools.count(1)
        self._clock = itertools.count(int(time.time() * 1000))
        self.lock: Any = None

    def record(self, event_type: str, model: str, **fields: Any) -> Event:
        with self.lock(model) if self.lock is not None else contextlib.nullcontext():
            return self._append(event_type, model, **fields)

    def _append(self, event_type: str, model: str, **fields: Any) -> Event:
        """``fields`` as :meth:`mlflow_plugin.ledger._ledger.Ledger.record` takes them."""
        tags = event_tags(event_type, model, **fields)
        head = self.verify_chain(model)
        run_id, ts = f"mem-{next(self._ids)}", next(self._clock)
        tags[SEQ_TAG] = str(head.head_seq + 1)
        tags[PREV_HASH_TAG] = head.head_hash
        tags[HASH_TAG] = event_hash(run_id, ts, tags)
        event = event_from(run_id, ts, tags)
        self._events.append(event)
        self._tags[run_id] = tags
        return event

    def prepare(
        self, event_type: str, model: str, *, head: ChainReport | None = None, **fields: Any
    ) -> _PreparedMemoryEvent:
        check_event_type(event_type)  # the head is read again at commit (no round trip here)
        return _PreparedMemoryEvent(self, event_type, model, fields)

    def history(self, model: str) -> tuple[list[Event], ChainReport]:
        return self.events(model), self.verify_chain(model)

    def events(
        self,
        model: str | None = None,
        event_type: str | None = None,
        since_ms: int | None = None,
        *,
        event_types: Iterable[str] | None = None,
    ) -> list[Event]:
        wanted = set(event_types) if event_types is not None else None
        return [
            e
            for e in self._events
            if (model is None or e.model == model)
            and (event_type is None or e.event_type == event_type)
            and (since_ms is None or e.timestamp_ms >= since_ms)
            and (wanted is None or e.event_type in wanted)
        ]

    def verify_chain(self, model: str) -> ChainReport:
        entries = [
            ChainEntry(e.run_id, e.timestamp_ms, self._tags[e.run_id])
            for e in self._events
            if e.model == model
        ]
        return verify_entries(model, entries)

    def end_prepared(self, model: str) -> list[str]:
        return []


class _PreparedMemoryEvent:
    def __init__(
        self, ledger: InMemoryLedger, event_type: str, model: str, fields: dict[str, Any]
    ) -> None:
        self.ledger, self.event_type, self.model, self.fields = ledger, event_type, model, fields

    def commit(self) -> Event:
        return self.ledger._append(self.event_type, self.model, **self.fields)

    def abandon(self) -> None:
        pass
