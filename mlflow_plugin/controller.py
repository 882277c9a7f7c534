"""The promotion controller: promote, reject, roll back, reconcile, and the fallback config.

The ``champion`` alias is the single source of truth for what serves. Stages are mirrored from
the aliases for tools that still read them. Every change is written to the ledger as one event
run. Every write to a model happens under that model's promotion lock, so concurrent promoters
produce one chain of deployment events.

The controller depends on two narrow interfaces, :class:`mlflow_plugin.registry.Registry` and
:class:`mlflow_plugin.ledger.Ledger`; :mod:`mlflow_plugin.testing` ships in-memory versions of
both for unit tests.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mlflow_plugin._concurrency import parallel as _parallel
from mlflow_plugin._errors import BadInput, GateFailed, NotFound
from mlflow_plugin._settings import TAG_PREFIX, actor, stage_mirror_enabled
from mlflow_plugin._types import (
    CHALLENGER,
    CHAMPION,
    FALLBACK,
    Event,
    ModelInfo,
    VersionInfo,
    check_event_type,
    check_model_name,
    check_strategy,
    check_version,
)

__all__ = [
    "FALLBACK_ENABLED_TAG",
    "FALLBACK_PINNED_TAG",
    "GATE_TAGS",
    "Controller",
    "LedgerLike",
    "Outcome",
    "RegistryLike",
    "last_known_good",
]

GATE_TAGS = (TAG_PREFIX + "validation", TAG_PREFIX + "backtest")
GATE_REPORT_TAG = TAG_PREFIX + "gate_report"
FALLBACK_ENABLED_TAG = TAG_PREFIX + "fallback_enabled"
FALLBACK_PINNED_TAG = TAG_PREFIX + "fallback_pinned"
REGISTRY_UI = "registry-ui"
_CHAMPION_EVENTS = ("deployment", "rollback")


class LockLike(Protocol):
    stale: list[Any]

    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: object) -> None: ...


class RegistryLike(Protocol):
    uri: str

    def get_model(self, name: str) -> ModelInfo: ...
    def get_version(self, name: str, version: str | int) -> VersionInfo: ...
    def list_versions(self, name: str) -> list[VersionInfo]: ...
    def set_alias(self, name: str, alias: str, version: str) -> None: ...
    def delete_alias(self, name: str, alias: str) -> None: ...
    def set_stage(self, name: str, version: str, stage: str) -> None: ...
    def set_model_tag(self, name: str, key: str, value: str) -> None: ...
    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None: ...
    def lock(self, name: str, *, intent: dict[str, str] | None = None) -> Any: ...


class PreparedLike(Protocol):
    def commit(self) -> Event: ...
    def abandon(self) -> None: ...


class LedgerLike(Protocol):
    def record(self, event_type: str, model: str, **fields: Any) -> Event: ...
    def prepare(self, event_type: str, model: str, **fields: Any) -> PreparedLike: ...

    def events(
        self, model: str | None = None, event_type: str | None = None,
        since_ms: int | None = None, *, event_types: Iterable[str] | None = None,
    ) -> list[Event]: ...  # fmt: skip


def _failpoint(name: str) -> None:
    """Die here if ``$MLFLOW_PLUGIN_FAILPOINT`` names this point (crash tests only)."""
    if os.environ.get("MLFLOW_PLUGIN_FAILPOINT") == name:
        os._exit(137)


def last_known_good(events: list[Event], current: str | None) -> str | None:
    """The champion before ``current``, skipping versions that were rolled back from.

    ``events`` are the model's deployment and rollback events, oldest first.
    """
    rolled_back_from = {e.from_version for e in events if e.event_type == "rollback"}
    for event in reversed(events):
        if event.event_type not in _CHAMPION_EVENTS:
            continue
        candidate = event.from_version
        if candidate and candidate != current and candidate not in rolled_back_from:
            return candidate
    return None


def _gate_failures(version: VersionInfo) -> list[str]:
    failed = []
    for tag in GATE_TAGS:
        state = version.tags.get(tag)
        short = tag.removeprefix(TAG_PREFIX)
        if state != "passed":
            failed.append(f"{short}={state or 'missing'}")
    return failed


@dataclass(frozen=True)
class Outcome:
    """What a controller call did: the event it wrote (None when nothing had to change)."""

    event: Event | None
    message: str


class IntegrityHook(Protocol):
    """Checks a version's artifacts before an alias points at it (see
    :class:`mlflow_plugin.integrity.VersionVerifier`): returns tags for the event, raises
    :class:`~mlflow_plugin.IntegrityError` to refuse."""

    def __call__(self, model: str, version: str, *, force: bool = False) -> dict[str, str]: ...


def _no_integrity_check(model: str, version: str, *, force: bool = False) -> dict[str, str]:
    return {}


class Controller:
    """Promotion, rollback and reconciliation for models in one registry.

    Args:
        registry: the registry adapter (or :class:`mlflow_plugin.testing.InMemoryRegistry`).
        ledger: where events are written (or :class:`mlflow_plugin.testing.InMemoryLedger`).
        stage_mirror: mirror aliases to stages; default ``$MLFLOW_PLUGIN_STAGE_MIRROR`` (true).
        integrity: verifies a version's artifacts before ``promote``/``rollback`` moves the
            champion to it (:meth:`from_uri` wires the SHA-256 check; default: none).
    """

    def __init__(
        self, registry: RegistryLike, ledger: LedgerLike, *, stage_mirror: bool | None = None,
        integrity: IntegrityHook | None = None,
    ) -> None:  # fmt: skip
        self.registry = registry
        self.ledger = ledger
        self.stage_mirror = stage_mirror_enabled() if stage_mirror is None else stage_mirror
        self.integrity: IntegrityHook = integrity or _no_integrity_check

    @classmethod
    def from_uri(cls, tracking_uri: str | None = None) -> Controller:
        from mlflow_plugin.integrity import VersionVerifier
        from mlflow_plugin.ledger import Ledger
        from mlflow_plugin.registry import Registry

        registry = Registry(tracking_uri)
        return cls(registry, Ledger(registry.uri), integrity=VersionVerifier(registry))

    # -- reading -------------------------------------------------------------------------
    def champion_events(self, model: str) -> list[Event]:
        return self.ledger.events(model, event_types=_CHAMPION_EVENTS)

    def last_known_good(self, model: str) -> str | None:
        current = self.registry.get_model(model).aliases.get(CHAMPION)
        return last_known_good(self.champion_events(model), current)

    def status(self, model: str) -> dict[str, Any]:
        """Champion, challenger, fallback, stages and the last event, as a JSON-ready dict."""
        info = self.registry.get_model(check_model_name(model))
        versions = self.registry.list_versions(model)
        stages: dict[str, list[str]] = {"Production": [], "Staging": [], "Archived": [], "None": []}
        for v in versions:
            stages.setdefault(v.stage, []).append(v.version)
        events = self.ledger.events(model)
        return {
            "model": model,
            "champion": info.aliases.get(CHAMPION),
            "challenger": info.aliases.get(CHALLENGER),
            "fallback": info.aliases.get(FALLBACK),
            "fallback_enabled": info.tags.get(FALLBACK_ENABLED_TAG, "false") == "true",
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
            "last_event": events[-1].as_dict() if events else None,
        }

    # -- promotion -----------------------------------------------------------------------
    def promote(
        self,
        model: str,
        version: str | int | None = None,
        *,
        strategy: str = "all_at_once",
        force: bool = False,
        reason: str = "",
    ) -> Outcome:
        """Make ``version`` (default: the challenger) champion if its gates passed.

        Raises:
            GateFailed: a gate tag is not ``passed`` (a ``rejected`` event was written).
            BadInput: unknown model/version, no challenger, ``force`` without a reason.
        """
        check_model_name(model)
        check_strategy(strategy)
        if force and not reason.strip():
            raise BadInput("--force needs a --reason")
        info = self.registry.get_model(model)
        if version is None:
            if CHALLENGER not in info.aliases:
                raise BadInput(f"{model!r} has no {CHALLENGER!r} version; pass --version")
            version = info.aliases[CHALLENGER]
        target = self.registry.get_version(model, check_version(version))
        failed = _gate_failures(target)
        if failed and not force:
            self.ledger.record(
                "rejected", model, version=target.version,
                from_version=info.aliases.get(CHAMPION, ""),
                message=f"promotion refused: {', '.join(failed)}",
                strategy=strategy, extra={"failed_gates": ",".join(failed)},
            )  # fmt: skip
            raise GateFailed(
                f"{model} version {target.version} not promoted: gates {', '.join(failed)}",
                failed,
            )
        intent = {"op": "promote", "version": target.version, "actor": actor()}
        with self.registry.lock(model, intent=intent) as lock:
            self._record_stale(model, lock)
            info, versions = _parallel(
                lambda: self.registry.get_model(model), lambda: self._versions(model)
            )
            current = info.aliases.get(CHAMPION)
            if current == target.version:
                return Outcome(None, f"{model} version {target.version} is already champion")
            extra = {"gate_report": target.tags.get(GATE_REPORT_TAG, "")}
            if force:
                extra.update(forced="true", forced_gates=",".join(failed))
            extra.update(self.integrity(model, target.version, force=force))
            alias_writes = [lambda: self.registry.set_alias(model, CHAMPION, target.version)]
            if current and info.tags.get(FALLBACK_PINNED_TAG) != "true":
                alias_writes.append(lambda: self.registry.set_alias(model, FALLBACK, current))
            if info.aliases.get(CHALLENGER) == target.version:
                alias_writes.append(lambda: self.registry.delete_alias(model, CHALLENGER))
            event = self._apply(
                alias_writes,
                self._mirror_writes(model, versions, target.version, info.aliases.get(CHALLENGER)),
                lambda: self.ledger.prepare(
                    "deployment", model, version=target.version, from_version=current or "",
                    message=reason or f"promoted version {target.version}", strategy=strategy,
                    extra={k: v for k, v in extra.items() if v},
                ),
                op="promote",
            )  # fmt: skip
        return Outcome(event, f"{model} version {target.version} is champion (was {current or 'none'})")

    def set_challenger(self, model: str, version: str | int) -> None:
        """Point ``challenger`` at ``version`` (a candidate under evaluation), mirrored as
        ``Staging``; the previous challenger leaves ``Staging``."""
        v = check_version(version)
        with self.registry.lock(model, intent={"op": "set_challenger", "version": v, "actor": actor()}) as lock:  # fmt: skip
            self._record_stale(model, lock)
            info, versions = _parallel(
                lambda: self.registry.get_model(model), lambda: self._versions(model)
            )
            if v not in versions:
                raise NotFound(f"{model!r} has no version {v}")
            self.registry.set_alias(model, CHALLENGER, v)
            _parallel(*self._mirror_writes(model, versions, info.aliases.get(CHAMPION), v))

    def reject(self, model: str, version: str, failed: list[str], message: str = "") -> Event:
        """Record that ``version`` was refused by the gates ``failed``. The champion is
        untouched; the version stops being the challenger (and leaves ``Staging``)."""
        v = check_version(version)
        with self.registry.lock(model, intent={"op": "reject", "version": v, "actor": actor()}) as lock:  # fmt: skip
            self._record_stale(model, lock)
            info, versions = _parallel(
                lambda: self.registry.get_model(model), lambda: self._versions(model)
            )
            champion = info.aliases.get(CHAMPION)
            if info.aliases.get(CHALLENGER) == v:
                self.registry.delete_alias(model, CHALLENGER)
                if v in versions and versions[v].stage == "Staging" and self.stage_mirror:
                    self.registry.set_stage(model, v, "None")
            return self.ledger.record(
                "rejected", model, version=v, from_version=champion or "",
                message=message or f"rejected: {', '.join(failed)}",
                extra={"failed_gates": ",".join(failed)},
            )  # fmt: skip

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
        """
        check_model_name(model)
        if not reason or not reason.strip():
            raise BadInput("rollback needs a non-empty --reason")
        wanted = check_version(to_version, what="--to-version") if to_version is not None else None
        intent = {"op": "rollback", "version": wanted or "", "actor": actor()}
        with self.registry.lock(model, intent=intent) as lock:
            self._record_stale(model, lock)
            # One round trip for everything the decision needs.
            info, history, versions = _parallel(
                lambda: self.registry.get_model(model),
                lambda: self.champion_events(model),
                lambda: self._versions(model),
            )
            current = info.aliases.get(CHAMPION)
            if current is None:
                raise BadInput(f"{model!r} has no champion to roll back from")
            target_version = wanted or last_known_good(history, current)
            if target_version is None:
                raise BadInput(f"{model!r} has no earlier champion to roll back to")
            if target_version == current:
                raise BadInput(f"version {current} is already champion of {model!r}")
            if target_version not in versions:
                raise NotFound(f"{model!r} has no version {target_version}")
            target = versions[target_version]
            failed = _gate_failures(target)
            if failed and not force:
                raise GateFailed(
                    f"rollback target {model} version {target.version} failed its gates "
                    f"({', '.join(failed)}); use --force to roll back anyway",
                    failed,
                )
            alias_writes = [lambda: self.registry.set_alias(model, CHAMPION, target.version)]
            if info.tags.get(FALLBACK_PINNED_TAG) != "true":
                # The version we left is bad: the fallback becomes the next good one, if any.
                rolled = Event("rollback", model, version=target.version, from_version=current)
                nxt = last_known_good([*history, rolled], target.version)
                if nxt:
                    alias_writes.append(lambda: self.registry.set_alias(model, FALLBACK, nxt))
                elif FALLBACK in info.aliases:
                    alias_writes.append(lambda: self.registry.delete_alias(model, FALLBACK))
            extra = {"forced": "true", "forced_gates": ",".join(failed)} if force and failed else {}
            extra.update(self.integrity(model, target.version, force=force))
            event = self._apply(
                alias_writes,
                self._mirror_writes(model, versions, target.version, info.aliases.get(CHALLENGER)),
                lambda: self.ledger.prepare(
                    "rollback", model, version=target.version, from_version=current,
                    message=reason, extra=extra,
                ),
                op="rollback",
            )  # fmt: skip
        return Outcome(event, f"{model} rolled back: champion {current} -> {target.version}")

    # -- fallback configuration ----------------------------------------------------------
    def fallback_enable(self, model: str, version: str | int | None = None) -> Outcome:
        check_model_name(model)
        with self.registry.lock(model, intent={"op": "fallback_enable", "actor": actor()}) as lock:
            self._record_stale(model, lock)
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
            self.registry.set_alias(model, FALLBACK, chosen)
            self.registry.set_model_tag(model, FALLBACK_ENABLED_TAG, "true")
            self.registry.set_model_tag(model, FALLBACK_PINNED_TAG, pinned)
            event = self.ledger.record(
                "config_change", model, version=chosen,
                from_version=info.aliases.get(CHAMPION, ""),
                message=f"fallback enabled: version {chosen}" + (" (pinned)" if pinned == "true" else ""),
                extra={"setting": "fallback_enabled", "value": "true"},
            )  # fmt: skip
        return Outcome(event, f"fallback for {model}: version {chosen}, enabled")

    def fallback_disable(self, model: str) -> Outcome:
        check_model_name(model)
        with self.registry.lock(model, intent={"op": "fallback_disable", "actor": actor()}) as lock:
            self._record_stale(model, lock)
            info = self.registry.get_model(model)
            self.registry.set_model_tag(model, FALLBACK_ENABLED_TAG, "false")
            event = self.ledger.record(
                "config_change", model, version=info.aliases.get(FALLBACK, ""),
                from_version=info.aliases.get(CHAMPION, ""), message="fallback disabled",
                extra={"setting": "fallback_enabled", "value": "false"},
            )  # fmt: skip
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
            event_type, model, version=str(version),
            from_version=self.registry.get_model(model).aliases.get(CHAMPION, ""),
            message=message, extra={"manual": "true"},
        )  # fmt: skip

    def reconcile(self, model: str) -> list[Event]:
        """Record changes made outside the controller and repair the stage mirror.

        - an interrupted promote/rollback (its lock left behind) -> an ``error`` event;
        - the champion alias moved in the registry UI -> a ``deployment`` event by ``registry-ui``;
        - stages that no longer follow the aliases -> repaired, one ``config_change`` event.
        """
        check_model_name(model)
        written: list[Event] = []
        with self.registry.lock(model, intent={"op": "reconcile", "actor": actor()}) as lock:
            written += self._record_stale(model, lock)
            info = self.registry.get_model(model)
            champion = info.aliases.get(CHAMPION)
            recorded = self._recorded_champion(model)
            interrupted = {s.intent.get("version") for s in getattr(lock, "stale", [])}
            if champion != recorded:
                if champion is None:
                    written.append(self.ledger.record(
                        "config_change", model, version="", from_version=recorded or "",
                        message="champion alias removed outside the controller",
                        who=REGISTRY_UI, extra={"champion_removed": "true"},
                    ))  # fmt: skip
                else:
                    outside = champion not in interrupted
                    written.append(self.ledger.record(
                        "deployment", model, version=champion, from_version=recorded or "",
                        message=(
                            "champion alias moved outside the controller" if outside
                            else "completed by reconcile after an interrupted attempt"
                        ),
                        who=REGISTRY_UI if outside else None,
                        strategy="all_at_once", extra={"reconciled": "true"},
                    ))  # fmt: skip
            if self.stage_mirror:
                # No champion means nothing serves: no version stays in Production.
                changes = self._mirror(model, champion, info.aliases.get(CHALLENGER))
                if changes:
                    caused_by_us = bool(getattr(lock, "stale", []))
                    written.append(self.ledger.record(
                        "config_change", model, version=champion or "", from_version=champion or "",
                        message="stage mirror repaired: " + ", ".join(changes),
                        who=None if caused_by_us else REGISTRY_UI,
                        extra={"setting": "stage_mirror"},
                    ))  # fmt: skip
        return written

    # -- internals -----------------------------------------------------------------------
    def _record_stale(self, model: str, lock: Any) -> list[Event]:
        """An ``error`` event for each dead holder whose lock we had to break."""
        out = []
        for stale in getattr(lock, "stale", []):
            intent = stale.intent
            out.append(self.ledger.record(
                "error", model, version=intent.get("version", ""),
                message=(
                    f"interrupted {intent.get('op', 'operation')} by {intent.get('actor', '?')} "
                    f"({stale.owner}); lock broken and state reconciled"
                ),
                extra={"interrupted_op": intent.get("op", "")},
            ))  # fmt: skip
        if hasattr(lock, "stale"):
            lock.stale.clear()
        return out

    def _apply(
        self,
        alias_writes: Sequence[Callable[[], object]],
        stage_writes: Sequence[Callable[[], object]],
        prepare: Callable[[], PreparedLike],
        *,
        op: str,
    ) -> Event:
        """Write a champion change and its event in as few round trips as is safe.

        The aliases (the source of truth) and the event's run are written concurrently; the
        stage mirror follows; the run becomes an event only when everything else succeeded. A
        process killed in between leaves its lock behind, and the next holder or ``reconcile``
        records the interrupted attempt.
        """
        prepared: PreparedLike | None = None
        try:
            _, prepared = _parallel(lambda: _parallel(*alias_writes), prepare)
            _failpoint(f"{op}.after_alias")
            _parallel(*stage_writes)
            _failpoint(f"{op}.after_mirror")
            return prepared.commit()
        except BaseException:
            if prepared is not None:
                prepared.abandon()
            raise

    def _recorded_champion(self, model: str) -> str | None:
        """The champion as the ledger last recorded it (None: never set, or removed)."""
        events = self.ledger.events(model, event_types=(*_CHAMPION_EVENTS, "config_change"))
        for event in reversed(events):
            if event.event_type in _CHAMPION_EVENTS:
                return event.version
            if event.extra.get(TAG_PREFIX + "champion_removed") == "true":
                return None
        return None

    def _versions(self, model: str) -> dict[str, VersionInfo]:
        return {v.version: v for v in self.registry.list_versions(model)}

    def _mirror_plan(
        self, versions: dict[str, VersionInfo], champion: str | None, challenger: str | None
    ) -> list[tuple[str, str, str]]:
        """Stage changes ``(version, from, to)`` that make stages follow the aliases."""
        if not self.stage_mirror:
            return []
        if challenger == champion:
            challenger = None
        plan = []
        for v in versions.values():
            if v.version == champion:
                want = "Production"
            elif v.version == challenger:
                want = "Staging"
            elif v.stage == "Production":
                want = "Archived"
            elif v.stage == "Staging":
                want = "None"
            else:
                continue
            if v.stage != want:
                plan.append((v.version, v.stage, want))
        return plan

    def _mirror_writes(
        self, model: str, versions: dict[str, VersionInfo], champion: str | None,
        challenger: str | None,
    ) -> list[Callable[[], object]]:  # fmt: skip
        return [
            functools.partial(self.registry.set_stage, model, version, want)
            for version, _, want in self._mirror_plan(versions, champion, challenger)
        ]

    def _mirror(self, model: str, champion: str | None, challenger: str | None) -> list[str]:
        """Make stages follow aliases now; return the changes (``"v3 Production->Archived"``)."""
        plan = self._mirror_plan(self._versions(model), champion, challenger)
        _parallel(*(functools.partial(self.registry.set_stage, model, v, want) for v, _, want in plan))
        return [f"v{v} {old}->{want}" for v, old, want in plan]


