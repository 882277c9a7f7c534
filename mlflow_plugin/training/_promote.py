"""The ``promote`` and ``rollback`` steps: the controller, inside a tagged step run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlflow_plugin.errors import GateFailed
from mlflow_plugin.settings import TAG_PREFIX
from mlflow_plugin.training._tracking import CLOCK, VERSION_TAG, set_tags, step_run

if TYPE_CHECKING:
    from mlflow_plugin.controller import Controller

__all__ = ["OUTCOME_TAG", "StepOutcome", "promote_in_run", "run_promote", "run_rollback"]

OUTCOME_TAG = TAG_PREFIX + "outcome"
# A canary or blue-green promotion starts a rollout that the operator finishes.
_OUTCOMES = {"deployment": "promoted", "rollout_started": "rollout_started"}


@dataclass(frozen=True)
class StepOutcome:
    """What a promote/rollback step did.

    Attributes:
        outcome: ``promoted``, ``rollout_started`` (canary, blue-green), ``unchanged``
            (already champion), ``rejected`` or ``rolled_back``.
        message: one line for a person.
        event_run: the ledger run of the event written, if any.
    """

    outcome: str
    message: str
    event_run: str = ""


def _controller(tracking_uri: str | None) -> Controller:
    from mlflow_plugin.controller import Controller

    return Controller.from_uri(tracking_uri)


def run_promote(
    model: str,
    version: str | None,
    strategy: str,
    *,
    tracking_uri: str | None = None,
    **rollout: Any,
) -> StepOutcome:
    """``mlflow run -e promote`` (``rollout``: the rollout options of
    :meth:`~mlflow_plugin.controller.Controller.promote`).

    Raises:
        GateFailed: a gate of the version did not pass (a ``rejected`` event was written).
    """
    controller = _controller(tracking_uri)
    with step_run("promote", model):
        return promote_in_run(controller, model, version, strategy, **rollout)


def promote_in_run(
    controller: Controller,
    model: str,
    version: str | None,
    strategy: str,
    *,
    reason: str = "",
    **rollout: Any,
) -> StepOutcome:
    """Promote in the active run and tag it with the outcome.

    Raises:
        GateFailed: as :meth:`mlflow_plugin.controller.Controller.promote`, after tagging.
    """
    with CLOCK("registry"):
        try:
            result = controller.promote(model, version, strategy=strategy, reason=reason, **rollout)
        except GateFailed as exc:
            set_tags(
                {
                    OUTCOME_TAG: "rejected",
                    TAG_PREFIX + "reason": exc.message,
                    VERSION_TAG: version or "",
                }
            )
            print(f"promote {model}: rejected: {exc.message}")
            raise
    event = result.event
    outcome = "unchanged" if event is None else _OUTCOMES.get(event.event_type, "promoted")
    set_tags(
        {
            OUTCOME_TAG: outcome,
            TAG_PREFIX + "reason": result.message,
            TAG_PREFIX + "strategy": strategy,
            VERSION_TAG: event.version if event else (version or ""),
            TAG_PREFIX + "from_version": event.from_version if event else None,
            TAG_PREFIX + "event_run": event.run_id if event else None,
        }
    )
    print(f"promote {model}: {result.message}")
    return StepOutcome(outcome, result.message, event.run_id if event else "")


def run_rollback(
    model: str,
    reason: str,
    to_version: str | None = None,
    *,
    force: bool = False,
    tracking_uri: str | None = None,
) -> StepOutcome:
    """``mlflow run -e rollback``: champion back to the last known good version (or
    ``to_version``), recorded in the ledger with ``reason``."""
    controller = _controller(tracking_uri)
    with step_run("rollback", model):
        with CLOCK("registry"):
            result = controller.rollback(model, reason=reason, to_version=to_version, force=force)
        event = result.event
        assert event is not None
        set_tags(
            {
                OUTCOME_TAG: "rolled_back",
                TAG_PREFIX + "reason": reason,
                VERSION_TAG: event.version,
                TAG_PREFIX + "from_version": event.from_version,
                TAG_PREFIX + "event_run": event.run_id,
            }
        )
        print(result.message)
        return StepOutcome("rolled_back", result.message, event.run_id)
