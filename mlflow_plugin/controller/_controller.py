"""The :class:`Controller`: every write to a model happens under that model's promotion lock,
so concurrent promoters produce one chain of events.

The ``champion`` alias is the single source of truth for what serves. Stages are mirrored from
the aliases for tools that still read them. Every change is written to the ledger as one event
run, appended to the model's hash chain. See docs/ARCHITECTURE.md ("The controller", "The
promotion lock").
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from mlflow_plugin._internal.concurrency import parallel as _parallel
from mlflow_plugin._internal.failpoint import failpoint as _failpoint
from mlflow_plugin.controller import _promotion, _recovery, _rollback
from mlflow_plugin.controller._history import (
    CHAMPION_EVENTS,
    GATE_TAGS,
    last_known_good,
    recorded_champion,
)
from mlflow_plugin.controller._mirror import mirror_plan
from mlflow_plugin.controller._protocols import (
    IntegrityHook,
    LedgerLike,
    LockLike,
    PreparedLike,
    RegistryLike,
)
from mlflow_plugin.errors import BadInput
from mlflow_plugin.ledger._chain import ChainReport
from mlflow_plugin.mlflow_io._workspace import Scope
from mlflow_plugin.rollouts._rollouts import Rollouts
from mlflow_plugin.settings import actor, stage_mirror_enabled
from mlflow_plugin.types import (
    CHALLENGER,
    CHAMPION,
    ENFORCE_GATES_TAG,
    FALLBACK,
    FALLBACK_ENABLED_TAG,
    FALLBACK_PINNED_TAG,
    GATES_BYPASSED_TAG,
    Event,
    Outcome,
    VersionInfo,
    check_event_type,
    check_model_name,
    check_version,
)

__all__ = [
    "ENFORCE_GATES_TAG",
    "FALLBACK_ENABLED_TAG",
    "FALLBACK_PINNED_TAG",
    "GATES_BYPASSED_TAG",
    "Controller",
    "Outcome",
]


def _no_integrity_check(model: str, version: str, **_: Any) -> dict[str, str]:
    return {}


class Controller:
    """Promotion, rollback and reconciliation for models in one registry.

    Args:
        registry: the registry adapter (or :class:`mlflow_plugin.testing.InMemoryRegistry`).
        ledger: where events are written (or :class:`mlflow_plugin.testing.InMemoryLedger`);
            its appends are serialised by ``registry``'s model lock (re-entrant).
        stage_mirror: mirror aliases to stages; default ``$MLFLOW_PLUGIN_STAGE_MIRROR`` (true).
        integrity: verifies a version's artifacts before ``promote``/``rollback`` moves the
            champion to it (:meth:`from_uri` wires the SHA-256 check; default: none).
    """

    def __init__(
        self,
        registry: RegistryLike,
        ledger: LedgerLike,
        *,
        stage_mirror: bool | None = None,
        integrity: IntegrityHook | None = None,
    ) -> None:
        self.registry = registry
        self.ledger = ledger
        self.stage_mirror = stage_mirror_enabled() if stage_mirror is None else stage_mirror
        self.integrity: IntegrityHook = integrity or _no_integrity_check
        if getattr(ledger, "lock", None) is None:
            ledger.lock = self._append_lock

    @functools.cached_property
    def rollouts(self) -> Rollouts:
        """Canary, blue-green and the post-promotion watch (see :mod:`._rollout`)."""
        return Rollouts(self)

    def _append_lock(self, model: str) -> Any:
        return self.registry.lock(model, intent={"op": "record", "actor": actor()})

    @classmethod
    def from_uri(
        cls, tracking_uri: str | None = None, *, scope: Scope | None = None, rest: bool = False
    ) -> Controller:
        """The controller of the server at ``tracking_uri``; ``scope`` binds a workspace and
        credentials to every request it makes (see :class:`mlflow_plugin.mlflow_io._workspace.Scope`).

        ``rest``: registry and ledger share one client, a :class:`mlflow_plugin.mlflow_io._rest.RestClient`
        when the server is ``http(s)`` and ``$MLFLOW_PLUGIN_REST_CLIENT`` is not ``off`` (the
        CLI's controller commands: no ``import mlflow``), else MLflow's."""
        from mlflow_plugin.integrity._manifest import VersionVerifier
        from mlflow_plugin.ledger._ledger import Ledger
        from mlflow_plugin.mlflow_io._client import make_client, resolve_tracking_uri
        from mlflow_plugin.registry._adapter import Registry

        client = None
        if rest:
            uri = resolve_tracking_uri(tracking_uri)
            client = make_client(uri, uri, scope=scope, rest=True)
        registry = Registry(tracking_uri, scope=scope, client=client)
        ledger = Ledger(registry.uri, scope=scope, client=client)
        return cls(registry, ledger, integrity=VersionVerifier(registry))

    # -- reading -------------------------------------------------------------------------
    def champion_events(self, model: str) -> list[Event]:
        return self.ledger.events(model, event_types=CHAMPION_EVENTS)

    def last_known_good(self, model: str) -> str | None:
        current = self.registry.get_model(model).aliases.get(CHAMPION)
        return last_known_good(self.champion_events(model), current)

    def verify_ledger(self, model: str) -> ChainReport:
        """Check ``model``'s hash chain (see :meth:`mlflow_plugin.ledger._ledger.Ledger.verify_chain`)."""
        self.registry.get_model(check_model_name(model))
        return self.ledger.verify_chain(model)

    def migrate_ledger(self, model: str, *, dry_run: bool = False, force: bool = False) -> Any:
        """Seal ``model``'s events written before the hash chain into it (``verify-ledger
        --migrate``; see :meth:`mlflow_plugin.ledger._ledger.Ledger.migrate`), under the model's lock."""
        self.registry.get_model(check_model_name(model))
        migrate = getattr(self.ledger, "migrate", None)
        if migrate is None:
            raise BadInput("this ledger has no events from before the chain to migrate")
        if dry_run:
            return migrate(model, dry_run=True, force=force)
        with self.registry.lock(model, intent={"op": "migrate_ledger", "actor": actor()}) as lock:
            self._recover(model, lock)
            return migrate(model, force=force)

    def status(self, model: str) -> dict[str, Any]:
        """Champion, challenger, fallback, stages, the last event and the ledger chain's state,
        as a JSON-ready dict."""
        info = self.registry.get_model(check_model_name(model))
        versions, chain, events = _parallel(
            lambda: self.registry.list_versions(model),
            lambda: self.ledger.verify_chain(model),
            lambda: self.ledger.events(model),
        )
        stages: dict[str, list[str]] = {"Production": [], "Staging": [], "Archived": [], "None": []}
        for v in versions:
            stages.setdefault(v.stage, []).append(v.version)
        return {
            "model": model,
            "champion": info.aliases.get(CHAMPION),
            "challenger": info.aliases.get(CHALLENGER),
            "fallback": info.aliases.get(FALLBACK),
            "fallback_enabled": info.tags.get(FALLBACK_ENABLED_TAG, "false") == "true",
            "enforce_gates": info.tags.get(ENFORCE_GATES_TAG, "false") == "true",
            "aliases": dict(sorted(info.aliases.items())),
            "stages": stages,
            "versions": [
                {
                    "version": v.version,
                    "stage": v.stage,
                    "validation": v.tags.get(GATE_TAGS[0], ""),
                    "backtest": v.tags.get(GATE_TAGS[1], ""),
                }
                for v in versions
            ],
            "rollout": self.rollouts.status(model, info),
            "last_event": events[-1].as_dict() if events else None,
            "ledger": {"ok": chain.ok, "events": chain.events, "problems": chain.problems},
        }

    # -- promotion and rollback (the bodies are in :mod:`._promotion` and :mod:`._rollback`) -
    def promote(
        self,
        model: str,
        version: str | int | None = None,
        *,
        strategy: str = "all_at_once",
        force: bool = False,
        reason: str = "",
        steps: tuple[float, ...] | None = None,
        interval_s: float | None = None,
        keep_previous_s: float | None = None,
        watch_s: float | None = None,
        rollout_id: str = "",
    ) -> Outcome:
        """Make ``version`` (default: the challenger) champion if its gates passed.

        ``canary`` and ``blue_green`` start a rollout instead (``steps``, ``interval_s``,
        ``keep_previous_s``), ``all_at_once`` with ``watch_s`` promotes and then watches (see
        :mod:`mlflow_plugin.rollouts`); plain ``all_at_once`` switches at once. A rollout in
        progress refuses any promotion but its own cutover (``rollout_id``).

        Raises:
            GateFailed: a gate tag is not ``passed`` (a ``rejected`` event was written).
            BadInput: unknown model/version/strategy, no challenger, ``force`` without a
                reason.
            LockLost: the lock was lost before the alias writes (nothing was written).
        """
        return _promotion.promote(
            self,
            model,
            version,
            strategy=strategy,
            force=force,
            reason=reason,
            steps=steps,
            interval_s=interval_s,
            keep_previous_s=keep_previous_s,
            watch_s=watch_s,
            rollout_id=rollout_id,
        )

    def set_challenger(self, model: str, version: str | int) -> None:
        """Point ``challenger`` at ``version`` (a candidate under evaluation), mirrored as
        ``Staging``; the previous challenger leaves ``Staging``."""
        _promotion.set_challenger(self, model, version)

    def reject(self, model: str, version: str, failed: list[str], message: str = "") -> Event:
        """Record that ``version`` was refused by the gates ``failed``. The champion is
        untouched; the version stops being the challenger (and leaves ``Staging``)."""
        return _promotion.reject(self, model, version, failed, message)

    def rollback(
        self,
        model: str,
        *,
        reason: str,
        to_version: str | int | None = None,
        force: bool = False,
    ) -> Outcome:
        """Move ``champion`` back to the last known good version (or ``to_version``).

        Raises:
            BadInput: empty reason, no champion, no earlier champion, unknown version.
            GateFailed: the target failed its gates and ``force`` is not set.
            LockLost: the lock was lost before the alias writes (nothing was written).
        """
        return _rollback.rollback(self, model, reason=reason, to_version=to_version, force=force)

    # -- fallback configuration ----------------------------------------------------------
    def fallback_enable(self, model: str, version: str | int | None = None) -> Outcome:
        check_model_name(model)
        with self.registry.lock(model, intent={"op": "fallback_enable", "actor": actor()}) as lock:
            self._recover(model, lock)
            info = self.registry.get_model(model)
            if version is None:
                chosen = last_known_good(self.champion_events(model), info.aliases.get(CHAMPION))
                chosen = chosen or info.aliases.get(FALLBACK)
                if chosen is None:
                    raise BadInput(f"{model!r} has no previous champion; pass --version")
                pinned = "false"
            else:
                chosen = check_version(version)
                pinned = "true"
            self.registry.get_version(model, chosen)
            lock.check()
            self.registry.set_alias(model, FALLBACK, chosen)
            self.registry.set_model_tag(model, FALLBACK_ENABLED_TAG, "true")
            self.registry.set_model_tag(model, FALLBACK_PINNED_TAG, pinned)
            event = self.ledger.record(
                "config_change",
                model,
                version=chosen,
                from_version=info.aliases.get(CHAMPION, ""),
                message=f"fallback enabled: version {chosen}"
                + (" (pinned)" if pinned == "true" else ""),
                extra={"setting": "fallback_enabled", "value": "true"},
            )
        return Outcome(event, f"fallback for {model}: version {chosen}, enabled")

    def fallback_disable(self, model: str) -> Outcome:
        check_model_name(model)
        with self.registry.lock(model, intent={"op": "fallback_disable", "actor": actor()}) as lock:
            self._recover(model, lock)
            info = self.registry.get_model(model)
            lock.check()
            self.registry.set_model_tag(model, FALLBACK_ENABLED_TAG, "false")
            event = self.ledger.record(
                "config_change",
                model,
                version=info.aliases.get(FALLBACK, ""),
                from_version=info.aliases.get(CHAMPION, ""),
                message="fallback disabled",
                extra={"setting": "fallback_enabled", "value": "false"},
            )
        return Outcome(event, f"fallback for {model}: disabled")

    def fallback_status(self, model: str) -> dict[str, Any]:
        info = self.registry.get_model(check_model_name(model))
        return {
            "model": model,
            "enabled": info.tags.get(FALLBACK_ENABLED_TAG, "false") == "true",
            "version": info.aliases.get(FALLBACK),
            "pinned": info.tags.get(FALLBACK_PINNED_TAG, "false") == "true",
            "champion": info.aliases.get(CHAMPION),
        }

    # -- manual entries and reconciliation -----------------------------------------------
    def log_event(self, event_type: str, model: str, version: str | int, message: str) -> Event:
        check_event_type(event_type)
        self.registry.get_version(check_model_name(model), check_version(version))
        if not message.strip():
            raise BadInput("--message must not be empty")
        return self.ledger.record(
            event_type,
            model,
            version=str(version),
            from_version=self.registry.get_model(model).aliases.get(CHAMPION, ""),
            message=message,
            extra={"manual": "true"},
        )

    def reconcile(self, model: str, *, enforce: bool | None = None) -> list[Event]:
        """Record changes made outside the controller and repair the stage mirror.

        - an interrupted operation (its lock left behind) is completed as what it was;
        - the champion alias moved in the registry UI -> a ``deployment`` event by
          ``registry-ui``, tagged ``mlflow_plugin.gates_bypassed`` when the new champion had
          not passed its gates; with ``enforce`` (default: the model tag
          ``mlflow_plugin.enforce_gates=true``) the alias goes back to the last recorded
          champion and a ``rollback`` event says why;
        - stages that no longer follow the aliases -> repaired, one ``config_change`` event.
        """
        check_model_name(model)
        with self.registry.lock(model, intent={"op": "reconcile", "actor": actor()}) as lock:
            return _recovery.reconcile(self, model, lock, enforce)

    # -- internals -----------------------------------------------------------------------
    def _recover(self, model: str, lock: LockLike) -> list[Event]:
        """Complete what dead holders whose lock we broke were doing (before our own work)."""
        return _recovery.complete_interrupted(self, model, lock)

    def _switch(
        self,
        lock: LockLike,
        model: str,
        versions: dict[str, VersionInfo],
        info: Any,
        champion: str,
        alias_writes: Sequence[Callable[[], object]],
        event_type: str,
        *,
        op: str,
        force: bool = False,
        **event: Any,
    ) -> Event:
        """Move the champion to ``champion`` (``alias_writes``), the stage mirror after it (the
        challenger stays), and write the ``event_type`` event with ``event``'s fields, in as
        few round trips as is safe.

        First the artifact-digest check (:attr:`integrity`, ``force`` to go on past a
        mismatch) on the version and model tags read under the lock; its tags join the
        event's ``extra``.

        The caller checked the lock in the same round trip as its reads; after the digest check
        the lock is checked once more, right before the writes. The aliases (the
        source of truth) and the event's run are written concurrently; the stage mirror and a
        second ownership check follow; the run becomes an event only when everything else
        succeeded and the lock is still ours. A process killed in between leaves its lock
        behind, and the next holder or ``reconcile`` completes the interrupted operation.
        """
        checked = self.integrity(
            model, champion, force=force, version_info=versions[champion], model_tags=info.tags
        )
        event["extra"] = {**event.get("extra", {}), **{k: v for k, v in checked.items() if v}}
        stage_writes = self._mirror_writes(model, versions, champion, info.aliases.get(CHALLENGER))
        # The fence: the lock is checked again after the slow work (the digest check downloads
        # and hashes the artifacts), as the last thing before the first alias write. A holder
        # that stalled past its lease is refused here by its own monotonic clock, without a
        # round trip (docs/ARCHITECTURE.md, "The promotion lock").
        _failpoint(f"{op}.before_alias")
        lock.check()
        prepared: PreparedLike | None = None
        try:
            _, prepared = _parallel(
                lambda: _parallel(*alias_writes),
                lambda: self.ledger.prepare(event_type, model, version=champion, **event),
            )
            _failpoint(f"{op}.after_alias")
            _parallel(*stage_writes, lock.check)
            _failpoint(f"{op}.after_mirror")
            return prepared.commit()
        except BaseException:
            if prepared is not None:
                prepared.abandon()
            raise

    def _recorded_champion(self, model: str) -> str | None:
        """The champion as the ledger last recorded it (None: never set, or removed)."""
        return recorded_champion(
            self.ledger.events(model, event_types=(*CHAMPION_EVENTS, "config_change"))
        )

    def _versions(self, model: str) -> dict[str, VersionInfo]:
        return {v.version: v for v in self.registry.list_versions(model)}

    def _mirror_writes(
        self,
        model: str,
        versions: dict[str, VersionInfo],
        champion: str | None,
        challenger: str | None,
    ) -> list[Callable[[], object]]:
        if not self.stage_mirror:
            return []
        return [
            functools.partial(self.registry.set_stage, model, version, want)
            for version, _, want in mirror_plan(versions, champion, challenger)
        ]

    def _mirror(self, model: str, champion: str | None, challenger: str | None) -> list[str]:
        """Make stages follow aliases now; return the changes (``"v3 Production->Archived"``)."""
        if not self.stage_mirror:
            return []
        plan = mirror_plan(self._versions(model), champion, challenger)
        _parallel(
            *(functools.partial(self.registry.set_stage, model, v, want) for v, _, want in plan)
        )
        return [f"v{v} {old}->{want}" for v, old, want in plan]
