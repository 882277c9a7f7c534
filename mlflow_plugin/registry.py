"""The registry adapter: the only module that talks to ``MlflowClient`` for the model registry.

It turns MLflow's entities into :mod:`mlflow_plugin._types` values and MLflow's exceptions into
ours (at this edge only), bounds the HTTP client's retries so that a dead tracking server is
reported within seconds instead of after MLflow's minute of back-off, and provides the per-model
promotion lock that works across processes and hosts through the tracking server itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from mlflow_plugin._client import (
    configure_http_defaults,
    make_client,
    resolve_tracking_uri,
    wrap_mlflow_errors,
)
from mlflow_plugin._errors import (
    BadInput,
    NotFound,
    PromotionConflict,
    RegistryError,
    RegistryUnavailable,
)
from mlflow_plugin._settings import TAG_PREFIX
from mlflow_plugin._types import (
    ModelInfo,
    VersionInfo,
    check_alias,
    check_model_name,
    check_version,
)

__all__ = ["LOCK_PREFIX", "ModelLock", "Registry", "StaleLock"]

T = TypeVar("T")

LOCK_PREFIX = "mlflow_plugin.lock."
_LOCK_OWNER = TAG_PREFIX + "lock_owner"
_LOCK_EXPIRES = TAG_PREFIX + "lock_expires"
_LOCK_INTENT = TAG_PREFIX + "lock_intent"


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
    """

    def __init__(self, tracking_uri: str | None = None) -> None:
        configure_http_defaults()
        self.uri = resolve_tracking_uri(tracking_uri)
        self.client = make_client(self.uri, self.uri)

    def _do(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with wrap_mlflow_errors(what, self.uri):
            return fn(*args, **kwargs)

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

    def ensure_model(self, name: str, description: str | None = None) -> None:
        check_model_name(name)
        from mlflow.exceptions import MlflowException

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
                name, source, run_id=run_id, tags=tags or {}, model_id=model_id,
            )  # fmt: skip

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
        return str(self._do(
            f"{name!r} version {v}", self.client.get_model_version_download_uri, name, v
        ))  # fmt: skip

    def list_versions(self, name: str) -> list[VersionInfo]:
        """Every version of ``name``, oldest first (aliases are not filled in here)."""
        check_model_name(name)
        escaped = name.replace("'", "\\'")
        out: list[VersionInfo] = []
        token = None
        while True:
            page = self._do(
                f"versions of {name!r}",
                self.client.search_model_versions,
                f"name = '{escaped}'", max_results=1000, page_token=token,
            )  # fmt: skip
            out.extend(_version_info(mv) for mv in page)
            token = page.token
            if not token:
                break
        return sorted(out, key=lambda v: v.number)

    def versions_with_source(self, source: str) -> list[VersionInfo]:
        """Versions of any model registered from ``source`` (to tell shared artifacts)."""
        escaped = source.replace("'", "\\'")
        page = self._do(
            "versions by source", self.client.search_model_versions,
            f"source_path = '{escaped}'", max_results=1000,
        )  # fmt: skip
        return [_version_info(mv) for mv in page]

    def delete_version(self, name: str, version: str) -> None:
        """Delete one version (its artifacts stay where they are; see ``retention``)."""
        with contextlib.suppress(NotFound):
            self._do(
                f"delete {name!r} version {version}",
                self.client.delete_model_version, name, check_version(version),
            )  # fmt: skip

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self._do(
            f"tag {name!r} version {version}",
            self.client.set_model_version_tag, name, version, key, value,
        )  # fmt: skip

    def set_stage(self, name: str, version: str, stage: str) -> None:
        # Stages are deprecated in MLflow; the mirror exists on purpose, so its own calls must
        # not show users the FutureWarning.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self._do(
                f"stage of {name!r} version {version}",
                self.client.transition_model_version_stage,
                name, version, stage, archive_existing_versions=False,
            )  # fmt: skip

    # -- aliases -------------------------------------------------------------------------
    def set_alias(self, name: str, alias: str, version: str) -> None:
        check_alias(alias)
        self._do(
            f"set alias {alias!r} of {name!r}",
            self.client.set_registered_model_alias, name, alias, check_version(version),
        )  # fmt: skip

    def delete_alias(self, name: str, alias: str) -> None:
        with contextlib.suppress(NotFound):
            self._do(
                f"delete alias {alias!r} of {name!r}",
                self.client.delete_registered_model_alias, name, alias,
            )  # fmt: skip

    def alias_version(self, name: str, alias: str) -> str | None:
        """The version ``alias`` points at, or None (one cheap call; used by serving)."""
        try:
            mv = self._do(
                f"alias {alias!r} of {name!r}",
                self.client.get_model_version_by_alias, name, alias,
            )  # fmt: skip
        except (NotFound, BadInput):
            return None
        return str(mv.version)

    # -- lock ----------------------------------------------------------------------------
    def lock(
        self, name: str, *, intent: dict[str, str] | None = None, lease: float | None = None,
        timeout: float = 60.0,
    ) -> ModelLock:  # fmt: skip
        """A promotion lock on ``name`` (see :class:`ModelLock`)."""
        if lease is None:
            lease = float(os.environ.get("MLFLOW_PLUGIN_LOCK_LEASE", "30"))
        return ModelLock(self, name, intent=intent or {}, lease=lease, timeout=timeout)


@dataclass
class StaleLock:
    """A lock whose holder died: who held it and what it was doing."""

    owner: str
    intent: dict[str, str]


class ModelLock:
    """Per-model promotion lock held through the tracking server itself.

    Creating a registered model is atomic in MLflow's stores (a second create of the same name
    fails with RESOURCE_ALREADY_EXISTS), so the lock is a registered model named
    ``mlflow_plugin.lock.<model>``, tagged with its owner, a lease expiry and the holder's intent.
    A holder that crashed is detected when its lease ran out, or at once when it ran on this host
    and its process is gone; the lock is then broken by renaming it (atomic, one winner) and
    deleting the renamed copy. ``stale`` tells the new holder what the dead one was doing, so the
    controller can record the interrupted attempt.
    """

    def __init__(
        self, registry: Registry, name: str, *, intent: dict[str, str], lease: float,
        timeout: float,
    ) -> None:  # fmt: skip
        self.registry = registry
        self.name = name
        self.lock_name = LOCK_PREFIX + name
        self.intent = intent
        self.lease = lease
        self.timeout = timeout
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stale: list[StaleLock] = []
        self.held = False

    def _tags(self) -> dict[str, str]:
        return {
            _LOCK_OWNER: self.owner,
            _LOCK_EXPIRES: f"{time.time() + self.lease:.3f}",
            _LOCK_INTENT: json.dumps(self.intent, sort_keys=True),
        }

    def acquire(self) -> ModelLock:
        from mlflow.exceptions import MlflowException

        client = self.registry.client
        deadline = time.monotonic() + self.timeout
        delay = 0.05
        holder = ""
        while True:
            try:
                with wrap_mlflow_errors(f"lock {self.name!r}", self.registry.uri):
                    try:
                        client.create_registered_model(self.lock_name, tags=self._tags())
                        self.held = True
                        return self
                    except MlflowException as exc:
                        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                            raise
            except RegistryUnavailable:
                raise
            holder = self._break_if_stale() or holder
            if time.monotonic() >= deadline:
                raise PromotionConflict(
                    f"model {self.name!r} is locked by {holder or 'another process'}; "
                    f"gave up after {self.timeout:.0f}s"
                )
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.6, 1.0)

    def _break_if_stale(self) -> str:
        """Break the current lock if its holder is dead; return the holder's name otherwise."""
        try:
            info = self.registry.get_model(self.lock_name)
        except NotFound:
            return ""  # released meanwhile
        owner = info.tags.get(_LOCK_OWNER, "")
        try:
            expires = float(info.tags.get(_LOCK_EXPIRES, "0"))
        except ValueError:
            expires = 0.0
        if time.time() < expires and not _dead_local_process(owner):
            return owner
        stale_name = f"{self.lock_name}.stale.{uuid.uuid4().hex[:8]}"
        from mlflow.exceptions import MlflowException

        try:
            with wrap_mlflow_errors(f"break lock {self.name!r}", self.registry.uri):
                self.registry.client.rename_registered_model(self.lock_name, stale_name)
        except (NotFound, RegistryError, MlflowException):
            return owner  # somebody else broke (or released) it first
        renamed = self.registry.get_model(stale_name)
        if renamed.tags.get(_LOCK_OWNER) != owner:
            # We renamed a lock taken after we looked: give it back untouched.
            with contextlib.suppress(RegistryError):
                self.registry.client.rename_registered_model(stale_name, self.lock_name)
            return renamed.tags.get(_LOCK_OWNER, "")
        try:
            intent = json.loads(renamed.tags.get(_LOCK_INTENT, "{}"))
        except ValueError:
            intent = {}
        self.stale.append(StaleLock(owner=owner, intent=intent))
        with contextlib.suppress(RegistryError):
            self.registry.client.delete_registered_model(stale_name)
        return ""

    def release(self) -> None:
        if self.held:
            self.held = False
            with contextlib.suppress(NotFound):
                self.registry._do(
                    f"unlock {self.name!r}", self.registry.client.delete_registered_model,
                    self.lock_name,
                )  # fmt: skip

    def __enter__(self) -> ModelLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _dead_local_process(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
