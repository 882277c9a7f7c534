"""The registry adapter: the only module that talks to ``MlflowClient`` for the model registry.

It turns MLflow's entities into :mod:`mlflow_plugin.types` values and MLflow's exceptions into
ours (at this edge only), bounds the HTTP client's retries so that a dead tracking server is
reported within seconds instead of after MLflow's minute of back-off, and hands out the per-model
promotion lock (:mod:`mlflow_plugin.registry.lock`) that works across processes and hosts through
the tracking server itself.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from mlflow_plugin.errors import BadInput, NotFound, PermissionDenied
from mlflow_plugin.mlflow_io._client import (
    client_errors,
    configure_http_defaults,
    make_client,
    resolve_tracking_uri,
    wrap_mlflow_errors,
)
from mlflow_plugin.mlflow_io._workspace import Scope
from mlflow_plugin.registry._lock_state import (
    LOCK_PREFIX,
    _lock_vanished,
    lock_lease,
    lock_model_name,
    lock_status,
)
from mlflow_plugin.registry.lock import ModelLock, StaleLock, _Reentered
from mlflow_plugin.settings import lock_timeout
from mlflow_plugin.types import (
    ModelInfo,
    VersionInfo,
    check_alias,
    check_model_name,
    check_version,
)

__all__ = [
    "LOCK_PREFIX",
    "ModelLock",
    "Registry",
    "StaleLock",
    "lock_lease",
    "lock_model_name",
    "wrap_mlflow_errors",
]

T = TypeVar("T")
#: The tag :meth:`Registry.check_may_change` deletes: never set, so deleting it changes nothing.
_PERMISSION_PROBE_TAG = "mlflow_plugin.permission_check"


def _version_info(mv: Any) -> VersionInfo:
    return VersionInfo(
        name=mv.name,
        version=str(mv.version),
        stage=mv.current_stage or "None",
        tags=dict(mv.tags or {}),
        run_id=mv.run_id or None,
        source=mv.source or None,
        created_ms=int(mv.creation_timestamp or 0),
    )


class Registry:
    """Registry operations on one tracking/registry server.

    Args:
        tracking_uri: tracking (and registry) URI; default MLflow's resolution of
            ``MLFLOW_TRACKING_URI``.
        scope: workspace and credentials bound to every request (the REST API's callers);
            default the process's (``MLFLOW_WORKSPACE``, ``MLFLOW_TRACKING_USERNAME``).
        client: the client to use (``make_client(..., rest=True)`` for the controller
            commands); default ``make_client``'s ``MlflowClient``.
    """

    def __init__(
        self, tracking_uri: str | None = None, *, scope: Scope | None = None, client: Any = None
    ) -> None:
        configure_http_defaults()
        self.uri = resolve_tracking_uri(tracking_uri)
        self.scope = scope
        self.client = client if client is not None else make_client(self.uri, self.uri, scope=scope)
        self._held: dict[tuple[str, int], ModelLock] = {}

    def _do(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            with wrap_mlflow_errors(what, self.uri):
                return fn(*args, **kwargs)
        except PermissionDenied as exc:
            if args and isinstance(args[0], str) and _lock_vanished(args[0], exc):
                raise NotFound(f"{what}: the lock is gone") from exc
            raise

    # -- models --------------------------------------------------------------------------
    def get_model(self, name: str) -> ModelInfo:
        check_model_name(name)
        try:
            rm = self._do(f"model {name!r}", self.client.get_registered_model, name)
        except NotFound:
            raise NotFound(f"registered model {name!r} does not exist") from None
        return ModelInfo(
            name=rm.name,
            aliases={a: str(v) for a, v in (rm.aliases or {}).items()},
            tags=dict(rm.tags or {}),
        )

    def list_models(self) -> list[ModelInfo]:
        """Every registered model of the workspace (the promotion locks left out), by name."""
        out: list[ModelInfo] = []
        token = None
        while True:
            page = self._do(
                "registered models",
                self.client.search_registered_models,
                max_results=1000,
                page_token=token,
            )
            out.extend(
                ModelInfo(
                    name=rm.name,
                    aliases={a: str(v) for a, v in (rm.aliases or {}).items()},
                    tags=dict(rm.tags or {}),
                )
                for rm in page
                if not rm.name.startswith(LOCK_PREFIX)
            )
            token = page.token
            if not token:
                return sorted(out, key=lambda m: m.name)

    def version_metrics(self, name: str, version: str | int) -> dict[str, float]:
        """The metrics of the run that logged the version ({} when it has none)."""
        info = self.get_version(name, version)
        if not info.run_id:
            return {}
        run = self._do(f"run of {name!r} version {info.version}", self.client.get_run, info.run_id)
        return {k: float(v) for k, v in sorted(run.data.metrics.items())}

    def ensure_model(self, name: str, description: str | None = None) -> None:
        check_model_name(name)
        MlflowException = client_errors()  # noqa: N806 - MLflow's or our REST client's

        with wrap_mlflow_errors(f"create model {name!r}", self.uri):
            try:
                self.client.create_registered_model(name, description=description)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        self._do(f"tag model {name!r}", self.client.set_registered_model_tag, name, key, value)

    def delete_model_tag(self, name: str, key: str) -> None:
        with contextlib.suppress(NotFound):
            self._do(f"untag model {name!r}", self.client.delete_registered_model_tag, name, key)

    def check_may_change(self, name: str) -> None:
        """MLflow's permission check for changing ``name``, without changing it: it deletes a
        tag no one sets (a write MLflow authorises like the others, and a no-op).

        Raises:
            PermissionDenied: the caller may read the model but not change it.
            NotFound: no such model.
        """
        self._do(
            f"change model {name!r}",
            self.client.delete_registered_model_tag,
            name,
            _PERMISSION_PROBE_TAG,
        )

    # -- versions ------------------------------------------------------------------------
    def register_version(
        self, name: str, source: str, run_id: str | None, tags: dict[str, str] | None = None
    ) -> VersionInfo:
        """Register ``source`` (e.g. the ``models:/<model_id>`` URI ``log_model`` returned)."""
        check_model_name(name)
        # MLflow 3 logged models are registered from ``models:/<model_id>`` with the id given
        # separately, as ``mlflow.register_model`` does.
        rest = source.removeprefix("models:/") if source.startswith("models:/") else ""
        model_id = rest if rest.startswith("m-") and "/" not in rest and "@" not in rest else None

        def create() -> Any:
            return self._do(
                f"register a version of {name!r}",
                self.client.create_model_version,
                name,
                source,
                run_id=run_id,
                tags=tags or {},
                model_id=model_id,
            )

        try:  # the model usually exists: create it only when it does not (one call fewer)
            mv = create()
        except NotFound:
            self.ensure_model(name)
            mv = create()
        return _version_info(mv)

    def get_version(self, name: str, version: str | int) -> VersionInfo:
        v = check_version(version)
        try:
            mv = self._do(f"{name!r} version {v}", self.client.get_model_version, name, v)
        except NotFound:
            self.get_model(name)  # a missing model gets its own message
            raise NotFound(f"{name!r} has no version {v}") from None
        return _version_info(mv)

    def artifact_uri(self, name: str, version: str | int) -> str:
        """Where the version's files are (e.g. ``mlflow-artifacts:/1/models/m-…/artifacts``)."""
        v = check_version(version)
        return str(
            self._do(f"{name!r} version {v}", self.client.get_model_version_download_uri, name, v)
        )

    def list_versions(self, name: str) -> list[VersionInfo]:
        """Every version of ``name``, oldest first (aliases are not filled in here)."""
        check_model_name(name)
        # MLflow's filter parser has no escape inside quoted strings: quote with the quote
        # character the name does not contain; a name with both is matched after the search.
        if "'" not in name:
            query = f"name = '{name}'"
        elif '"' not in name:
            query = f'name = "{name}"'
        else:
            query = ""
        out: list[VersionInfo] = []
        token = None
        while True:
            page = self._do(
                f"versions of {name!r}",
                self.client.search_model_versions,
                query,
                max_results=1000 if query else 10000,
                page_token=token,
            )
            out.extend(_version_info(mv) for mv in page if mv.name == name)
            token = page.token
            if not token:
                break
        return sorted(out, key=lambda v: v.number)

    def versions_with_source(self, source: str) -> list[VersionInfo]:
        """Versions of any model registered from ``source`` (to tell shared artifacts)."""
        escaped = source.replace("'", "\\'")
        page = self._do(
            "versions by source",
            self.client.search_model_versions,
            f"source_path = '{escaped}'",
            max_results=1000,
        )
        return [_version_info(mv) for mv in page]

    def delete_version(self, name: str, version: str) -> None:
        """Delete one version (its artifacts stay where they are; see ``retention``)."""
        with contextlib.suppress(NotFound):
            self._do(
                f"delete {name!r} version {version}",
                self.client.delete_model_version,
                name,
                check_version(version),
            )

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self._do(
            f"tag {name!r} version {version}",
            self.client.set_model_version_tag,
            name,
            version,
            key,
            value,
        )

    def set_stage(self, name: str, version: str, stage: str) -> None:
        # Stages are deprecated in MLflow; the mirror exists on purpose, so its own calls must
        # not show users the FutureWarning.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self._do(
                f"stage of {name!r} version {version}",
                self.client.transition_model_version_stage,
                name,
                version,
                stage,
                archive_existing_versions=False,
            )

    # -- aliases -------------------------------------------------------------------------
    def set_alias(self, name: str, alias: str, version: str) -> None:
        check_alias(alias)
        self._do(
            f"set alias {alias!r} of {name!r}",
            self.client.set_registered_model_alias,
            name,
            alias,
            check_version(version),
        )

    def delete_alias(self, name: str, alias: str) -> None:
        with contextlib.suppress(NotFound):
            self._do(
                f"delete alias {alias!r} of {name!r}",
                self.client.delete_registered_model_alias,
                name,
                alias,
            )

    def alias_version(self, name: str, alias: str) -> str | None:
        """The version ``alias`` points at, or None (one cheap call; used by serving)."""
        mv = self._by_alias(name, alias)
        return None if mv is None else str(mv.version)

    def version_by_alias(self, name: str, alias: str) -> VersionInfo | None:
        """The version record ``alias`` points at, or None: one call where ``get_model`` +
        ``get_version`` make two (validate's champion)."""
        check_alias(alias)
        mv = self._by_alias(name, alias)
        return None if mv is None else _version_info(mv)

    def _by_alias(self, name: str, alias: str) -> Any:
        """MLflow's model version ``alias`` points at, or None (no such model or alias)."""
        try:
            return self._do(
                f"alias {alias!r} of {name!r}",
                self.client.get_model_version_by_alias,
                name,
                alias,
            )
        except (NotFound, BadInput):
            return None

    # -- lock ----------------------------------------------------------------------------
    def lock(
        self,
        name: str,
        *,
        intent: dict[str, str] | None = None,
        lease: float | None = None,
        timeout: float | None = None,
        heartbeat: bool = True,
    ) -> ModelLock:
        """A promotion lock on ``name`` (see :class:`mlflow_plugin.registry.lock.ModelLock`).

        Re-entrant: inside a ``with`` block of a lock this thread holds on ``name`` (through
        this registry), another ``lock(name)`` returns that same lock, already held.
        """
        held = self._held.get((name, threading.get_ident()))
        if held is not None and held.held:
            return _Reentered(held)
        if lease is None:
            lease = lock_lease()
        if timeout is None:
            timeout = lock_timeout()
        return ModelLock(
            self, name, intent=intent or {}, lease=lease, timeout=timeout, heartbeat=heartbeat
        )

    def lock_status(self, name: str) -> dict[str, Any] | None:
        """The lock left or held on ``name``: None when there is none, else its ``holder``,
        ``token``, ``intent``, ``lease_expires`` (epoch seconds), ``stale`` (lease over or
        holder process gone) and ``leftovers`` (names of half-broken lock copies, if any)."""
        return lock_status(self, name)
