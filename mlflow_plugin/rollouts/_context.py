"""``RolloutContext``: one rollout operation under the model's lock, passed as one value.

Like Argo Rollouts' ``rolloutContext``, it carries what every step of an operation reads (the
operations object, the model, the lock held, the registered model and the rollout state read
under that lock) and the steps every transition shares: announce on the lock, write tags, end
the rollout. The state machine (:mod:`._state_machine`) and the repairs (:mod:`._repair`) take
it instead of six values.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from mlflow_plugin.types import CHAMPION, Event, ModelInfo

if TYPE_CHECKING:
    from mlflow_plugin.controller._protocols import LedgerLike, LockLike
    from mlflow_plugin.rollouts._rollouts import Rollouts
    from mlflow_plugin.rollouts._state import RolloutState

__all__ = ["RolloutContext"]


@dataclass(frozen=True)
class RolloutContext:
    """A rollout operation of ``model`` under ``lock``, on the ``info`` and ``state`` read under it.

    Attributes:
        ro: the controller's rollout operations (registry writes, the ledger, the controller).
        model: the registered model's name.
        lock: the model's promotion lock, held.
        info: the registered model (aliases, tags) read under the lock.
        state: the rollout in progress, read from ``info``'s tags.
    """

    ro: Rollouts
    model: str
    lock: LockLike
    info: ModelInfo
    state: RolloutState

    @property
    def champion(self) -> str:
        """The version ``champion`` names ("" when none)."""
        return self.info.aliases.get(CHAMPION, "")

    @property
    def ledger(self) -> LedgerLike:
        return self.ro.ledger

    def intend(self, event: str, expect: str, reason: str) -> None:
        """Announce on the lock what is about to be written, so that whoever breaks the lock
        of a killed holder can tell whether it went through (:mod:`._repair`)."""
        self.lock.annotate(
            event=event,
            expect=expect,
            rollout_id=self.state.rollout_id,
            version=self.state.version,
            strategy=self.state.strategy,
            reason=reason[:500],
        )

    def set(self, **changes: Any) -> None:
        """A transition that writes only the tags of ``changes`` (after a last lock check)."""
        self.lock.check()
        self.ro.write(self.model, replace(self.state, **changes), only=tuple(changes))

    def finish(
        self, event_type: str, message: str, *, extra: dict[str, str] | None = None
    ) -> Event:
        """End the rollout (aliases and tags removed) and record ``event_type``."""
        self.intend(event_type, "ended", message)
        self.lock.check()
        self.ro.clear(self.model, self.info)
        fields = dict(extra or {})
        fields["rollout_id"] = self.state.rollout_id
        if event_type == "rollout_aborted":
            fields["rollback"] = "true"
        return self.ledger.record(
            event_type,
            self.model,
            version=self.state.version,
            from_version=self.champion,
            message=message[:1000],
            strategy=self.state.strategy,
            extra=fields,
        )
