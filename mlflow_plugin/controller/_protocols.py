"""The narrow interfaces the controller needs from a registry, its lock and a ledger.

:class:`mlflow_plugin.registry._adapter.Registry` and :class:`mlflow_plugin.ledger._ledger.Ledger` implement
them against a tracking server; :mod:`mlflow_plugin.testing` ships in-memory versions that
honour the same contract (leases, tokens, the hash chain).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from mlflow_plugin.ledger._chain import ChainReport
from mlflow_plugin.types import Event, ModelInfo, VersionInfo

__all__ = ["IntegrityHook", "LedgerLike", "LockLike", "PreparedLike", "RegistryLike"]


class LockLike(Protocol):
    """A held promotion lock: ``stale`` lists the dead holders it replaced."""

    stale: list[Any]
    intent: dict[str, str]

    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: object) -> None: ...
    def check(self) -> None: ...
    def annotate(self, **intent: str) -> None: ...


class RegistryLike(Protocol):
    uri: str

    def get_model(self, name: str) -> ModelInfo: ...
    def get_version(self, name: str, version: str | int) -> VersionInfo: ...
    def list_versions(self, name: str) -> list[VersionInfo]: ...
    def set_alias(self, name: str, alias: str, version: str) -> None: ...
    def delete_alias(self, name: str, alias: str) -> None: ...
    def set_stage(self, name: str, version: str, stage: str) -> None: ...
    def set_model_tag(self, name: str, key: str, value: str) -> None: ...
    def delete_model_tag(self, name: str, key: str) -> None: ...
    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None: ...
    def lock(self, name: str, *, intent: dict[str, str] | None = None) -> Any: ...
    def lock_status(self, name: str) -> dict[str, Any] | None: ...


class PreparedLike(Protocol):
    def commit(self) -> Event: ...
    def abandon(self) -> None: ...


class LedgerLike(Protocol):
    lock: Any

    def record(self, event_type: str, model: str, **fields: Any) -> Event: ...
    def prepare(self, event_type: str, model: str, **fields: Any) -> PreparedLike: ...
    def verify_chain(self, model: str) -> ChainReport: ...
    def history(self, model: str) -> tuple[list[Event], ChainReport]: ...
    def end_prepared(self, model: str) -> list[str]: ...

    def events(
        self,
        model: str | None = None,
        event_type: str | None = None,
        since_ms: int | None = None,
        *,
        event_types: Iterable[str] | None = None,
    ) -> list[Event]: ...


class IntegrityHook(Protocol):
    """Checks a version's artifacts before an alias points at it (see
    :class:`mlflow_plugin.integrity._manifest.VersionVerifier`): returns tags for the event, raises
    :class:`~mlflow_plugin.IntegrityError` to refuse. ``version_info`` and ``model_tags``: the
    version and the model's tags as the caller already read them under the lock (not read
    again)."""

    def __call__(
        self,
        model: str,
        version: str,
        *,
        force: bool = False,
        version_info: VersionInfo | None = None,
        model_tags: Mapping[str, str] | None = None,
    ) -> dict[str, str]: ...
