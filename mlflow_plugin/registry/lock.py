"""The per-model promotion lock, held through the tracking server itself (see
docs/ARCHITECTURE.md, "The promotion lock").

:class:`ModelLock` is a registered model named :func:`lock_model_name` whose tags carry the
holder, a unique token, a lease expiry and the holder's intent. :class:`mlflow_plugin.registry._adapter.
Registry` hands it out (``Registry.lock``) and reports it (``Registry.lock_status``); the lock
talks to MLflow only through that registry's client and error mapping.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from mlflow_plugin._internal.holder import PID_NAMESPACE
from mlflow_plugin.errors import (
    LockLost,
    NotFound,
    PermissionDenied,
    PromotionConflict,
    RegistryError,
    RegistryUnavailable,
)
from mlflow_plugin.mlflow_io._client import client_errors, wrap_mlflow_errors
from mlflow_plugin.registry._lock_state import (
    _LOCK_EXPIRES,
    _LOCK_INTENT,
    _LOCK_MODEL,
    _LOCK_OWNER,
    _LOCK_TOKEN,
    _LockState,
    lock_model_name,
)
from mlflow_plugin.types import StaleLock

if TYPE_CHECKING:
    from mlflow_plugin.registry._adapter import Registry

__all__ = ["ModelLock", "StaleLock"]


def _is_transient(exc: RegistryError) -> bool:
    """MLflow store errors seen while many writers race (SQLite busy, PostgreSQL serialisation,
    a lock released between two calls): worth another try, not worth failing a promotion."""
    return not isinstance(exc, RegistryUnavailable)


class ModelLock:
    """Per-model promotion lock held through the tracking server itself.

    Creating a registered model is atomic in MLflow's stores (a second create of the same name
    fails with RESOURCE_ALREADY_EXISTS), so the lock is a registered model named
    :func:`lock_model_name` (``mlflow_plugin.lock.<digest of the name>``), tagged with its
    owner, a unique token, a lease expiry and the holder's intent.

    - While held, a heartbeat thread renews the lease every third of it, after checking that
      the lock still carries this holder's token; :meth:`check` (called right before the alias
      writes and before the event is committed) raises :class:`LockLost` when the token is gone
      or the lease could not be renewed in time.
    - *Deadline fence*: the holder knows (monotonic clock) when the acquisition or its last
      renewal that landed in time started; until that start + lease - margin no breaker may
      break the lock, so :meth:`check` costs no round trip there. Past the fence it reads the
      lock's token (see :meth:`check`).
    - A holder that crashed is detected when its lease ran out, or at once when it ran on this
      host and its process is gone. The lock is broken by renaming it to
      ``<lock>.stale.<token>`` — one winner per stale instance, since a second rename to the
      same name fails — and the renamed copy's token is compared with the one judged stale: a
      newer holder's lock renamed by a race is renamed back (or, if that fails, its holder finds
      out at its next :meth:`check`). ``stale`` tells the new holder what the dead one was
      doing, so the controller can complete the interrupted operation.

    What it cannot do: MLflow has no compare-and-set, so a holder that stalls between its last
    check and its write can still write after losing the lock. The ledger's hash chain reports
    the fork that results (docs/ARCHITECTURE.md, "The promotion lock").
    """

    def __init__(
        self,
        registry: Registry,
        name: str,
        *,
        intent: dict[str, str],
        lease: float,
        timeout: float,
        heartbeat: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.name = name
        self.lock_name = lock_model_name(name)
        self.intent = intent
        self.lease = lease
        self.timeout = timeout
        self.token = uuid.uuid4().hex
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{self.token[:8]}"
        if PID_NAMESPACE:
            self.owner += f":pidns{PID_NAMESPACE}"
        self.stale: list[StaleLock] = []
        self.held = False
        self.heartbeat = heartbeat
        self._clock = clock  # monotonic; injectable for tests of the fence
        self.margin = min(2.0, lease / 4)  # clock disagreement allowed between hosts
        self._valid_until = 0.0  # start of the last renewal that went through, + lease
        self._fence = 0.0  # start of the last renewal that landed in time, + lease - margin
        self._confirmed = 0.0  # monotonic time of the last remote confirmation of our token
        self._lost = ""
        self._broken: list[str] = []  # stale copies this process renamed aside (see release)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _tags(self) -> dict[str, str]:
        return {
            _LOCK_OWNER: self.owner,
            _LOCK_TOKEN: self.token,
            _LOCK_EXPIRES: f"{time.time() + self.lease:.3f}",
            _LOCK_INTENT: json.dumps(self.intent, sort_keys=True),
            _LOCK_MODEL: self.name,
        }

    def acquire(self) -> ModelLock:
        MlflowException = client_errors()  # noqa: N806 - MLflow's or our REST client's

        client = self.registry.client
        deadline = time.monotonic() + self.timeout
        delay = 0.05
        holder = ""
        while True:
            started = self._clock()
            try:
                with wrap_mlflow_errors(f"lock {self.name!r}", self.registry.uri):
                    try:
                        client.create_registered_model(
                            self.lock_name,
                            tags=self._tags(),
                            description=f"promotion lock of {self.name!r} (mlflow_plugin)",
                        )
                        return self._acquired(started)
                    except MlflowException as exc:
                        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                            raise
                holder = self._break_if_stale() or holder
            except NotFound:
                # MLflow's SQL store answers a create that collides with an existing lock by
                # reading that lock back; when its holder released it in between, the create
                # fails with RESOURCE_DOES_NOT_EXIST. The name is free now: try again.
                pass
            except RegistryError as exc:
                if not _is_transient(exc):
                    raise
                if self._is_ours():  # the create went through although its answer was an error
                    return self._acquired(started)
            if time.monotonic() >= deadline:
                self._remove_broken()
                raise PromotionConflict(
                    f"model {self.name!r} is locked by {holder or 'another process'}; "
                    f"gave up after {self.timeout:.0f}s"
                )
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.6, 1.0)

    def _acquired(self, started: float) -> ModelLock:
        self.held = True
        # The lock is ours from its creation on, with an expiry written after ``started``.
        self._valid_until = started + self.lease
        self._fence = started + self.lease - self.margin
        self.registry._held[(self.name, threading.get_ident())] = self
        if self.heartbeat:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._beat, name=f"lock-heartbeat-{self.name}", daemon=True
            )
            self._thread.start()
        return self

    def _token_now(self) -> str | None:
        """The token on the lock now: "" when there is no lock, None when it could not be read
        (a transient store error is not evidence that the lock was lost)."""
        try:
            info = self.registry.get_model(self.lock_name)
        except NotFound:
            return ""
        except RegistryError:
            return None
        return _LockState.from_tags(info.tags).token

    def _is_ours(self) -> bool:
        return self._token_now() == self.token

    def _beat(self) -> None:
        """Renew the lease every third of it while held (see :meth:`check`)."""
        while not self._stop.wait(self.lease / 3):
            started = self._clock()
            try:
                token = self._token_now()
                if token is None:
                    continue  # unknown, not lost: try again; check() refuses once the lease is over
                if token != self.token:
                    self._lost = "the lock was taken over (its lease ran out or it was broken)"
                    return
                expires = f"{time.time() + self.lease:.3f}"
                self.registry._do(
                    f"renew lock {self.name!r}",
                    self.registry.client.set_registered_model_tag,
                    self.lock_name,
                    _LOCK_EXPIRES,
                    expires,
                )
                self._renewed(started, self._clock())
            except (RegistryError, NotFound):
                continue  # try again; check() refuses once the lease is over

    def _renewed(self, started: float, answered: float) -> None:
        """A renewal that started at ``started`` (read our token, then wrote a new expiry)
        was answered at ``answered`` (monotonic seconds).

        It extends the fence only if it landed while the lease it renews was still in force
        (answered before the current fence): then no breaker can have broken the lock before
        the new expiry was written, and none will before that expiry (>= ``started`` + lease,
        by the writer's clock). A late renewal may have come after a breaker judged the lock
        stale: it keeps the lock usable (``_valid_until``) but :meth:`check` reads the token."""
        self._valid_until = max(self._valid_until, started + self.lease)
        if answered < self._fence:
            self._fence = max(self._fence, started + self.lease - self.margin)

    def fenced(self) -> bool:
        """True while no other writer may break the lock (inside the deadline fence)."""
        return self.held and not self._lost and self._clock() < self._fence

    def check(self) -> None:
        """Raise :class:`LockLost` unless this holder still owns the lock with lease to spare.

        Inside the deadline fence (see :meth:`_renewed`) no other writer may break the lock:
        no round trip. Past it, one read: the lock's token must still be ours, and the lease
        renewed recently enough that it cannot run out during the next write."""
        if not self.held:
            raise LockLost(f"lock on {self.name!r} is not held")
        margin = self.margin
        if self._lost:
            raise LockLost(f"lost the lock on {self.name!r}: {self._lost}; nothing written")
        if self._clock() < self._fence:
            return
        if self._clock() + margin > self._valid_until:
            raise LockLost(
                f"lost the lock on {self.name!r}: its lease ran out before the write "
                "(the process stalled); nothing written"
            )
        started = self._clock()
        token = self._token_now()
        for _ in range(3):  # a read that failed says nothing; the lease margin allows retries
            if token is not None or self._clock() + margin > self._valid_until:
                break
            time.sleep(0.2)
            started = self._clock()
            token = self._token_now()
        ours = token == self.token
        if ours:
            self._confirmed = started
        if not ours:
            self._lost = "another process holds it now"
            raise LockLost(
                f"lost the lock on {self.name!r}: another process holds it now; nothing written"
            )

    def annotate(self, **intent: str) -> None:
        """Add to the intent recorded on the lock (e.g. a rollback's computed target), so that
        whoever completes an interrupted operation knows what it was doing."""
        self.intent = {**self.intent, **intent}
        try:
            self.registry._do(
                f"annotate lock {self.name!r}",
                self.registry.client.set_registered_model_tag,
                self.lock_name,
                _LOCK_INTENT,
                json.dumps(self.intent, sort_keys=True),
            )
        except NotFound:
            self._lost = "the lock was broken"
            raise LockLost(
                f"lost the lock on {self.name!r} while writing (it was broken); "
                "`mlflow-plugin reconcile` records what happened"
            ) from None

    def _break_if_stale(self) -> str:
        """Break the current lock if its holder is dead; return the holder's name otherwise."""
        MlflowException = client_errors()  # noqa: N806 - MLflow's or our REST client's

        try:
            info = self.registry.get_model(self.lock_name)
        except NotFound:
            return ""  # released meanwhile
        state = _LockState.from_tags(info.tags)
        if not state.stale():
            return state.owner
        # Judge again on a fresh read, right before the rename: the holder seen a moment ago
        # may have released (and exited) since, and a newer holder's lock must not be touched.
        try:
            again = _LockState.from_tags(self.registry.get_model(self.lock_name).tags)
        except NotFound:
            return ""
        if again.token != state.token or not again.stale():
            return again.owner
        # One name per stale instance: two breakers of the same instance cannot both win.
        digest = hashlib.sha256(state.token.encode("utf-8")).hexdigest()[:32]
        stale_name = f"{self.lock_name}.stale.{digest}"
        client = self.registry.client
        try:
            with wrap_mlflow_errors(f"break lock {self.name!r}", self.registry.uri):
                client.rename_registered_model(self.lock_name, stale_name)
        except (NotFound, PermissionDenied):  # basic-auth: 403 for a lock that is gone
            return ""  # released or broken by somebody else meanwhile
        except RegistryError as exc:
            if isinstance(exc, RegistryUnavailable):
                raise
            return state.owner  # somebody else broke (or released) it first
        try:
            renamed = _LockState.from_tags(self.registry.get_model(stale_name).tags)
        except NotFound:
            return ""
        if renamed.token != state.token:
            # We renamed a lock taken after we looked: give it back untouched. If that fails
            # (a third process took the name meanwhile), its holder learns at its next check().
            try:
                with wrap_mlflow_errors(f"restore lock {self.name!r}", self.registry.uri):
                    client.rename_registered_model(stale_name, self.lock_name)
                return renamed.owner
            except (RegistryError, *MlflowException):  # type: ignore[misc]
                self._broken.append(stale_name)  # its holder learns at its next check()
            return renamed.owner
        self.stale.append(StaleLock(owner=state.owner, intent=state.intent, token=state.token))
        # The renamed copy stays until this process is done with the lock: while it exists, a
        # second breaker that judged the same instance stale cannot rename a newer lock onto
        # its name (the rename fails), so a live lock is never moved aside.
        self._broken.append(stale_name)
        return ""

    def _remove_broken(self) -> None:
        while self._broken:
            stale_name = self._broken.pop()
            with contextlib.suppress(NotFound, RegistryError):
                self.registry._do(
                    f"remove broken lock {self.name!r}",
                    self.registry.client.delete_registered_model,
                    stale_name,
                )

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.lease)
        self.registry._held.pop((self.name, threading.get_ident()), None)
        self._remove_broken()
        # Only our own lock is removed; one that was taken over belongs to its new holder. A
        # check() that confirmed the token moments ago (before the commit) spares a round trip.
        if self._lost:
            return
        now = self._clock()
        recent = now < self._fence or now - self._confirmed < min(1.0, self.lease / 10)
        if not recent and not self._is_ours():
            return
        with contextlib.suppress(NotFound):
            self.registry._do(
                f"unlock {self.name!r}",
                self.registry.client.delete_registered_model,
                self.lock_name,
            )

    def __enter__(self) -> ModelLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class _Reentered(ModelLock):
    """A nested ``lock()`` of a lock this thread already holds: no second acquisition."""

    def __init__(self, outer: ModelLock) -> None:  # noqa: D107 - shares the outer lock's state
        self.__dict__.update(outer.__dict__)
        self._outer = outer
        self.stale = []

    def acquire(self) -> ModelLock:
        return self

    def check(self) -> None:
        self._outer.check()

    def fenced(self) -> bool:
        return self._outer.fenced()

    def annotate(self, **intent: str) -> None:
        self._outer.annotate(**intent)

    def release(self) -> None:
        pass
