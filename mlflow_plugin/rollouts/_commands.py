"""``mlflow-plugin rollout status|pause|resume|abort|promote MODEL`` (Argo Rollouts' verbs) and
the rollout options of ``promote`` (``--steps``, ``--interval``, ``--keep-previous``,
``--watch``). See docs/ARCHITECTURE.md, "Rollouts"."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

__all__ = ["rollout"]


def _controller() -> Any:
    ctx = click.get_current_context()
    return ctx.find_root().obj.controller


@click.group()
def rollout() -> None:
    """Canary and blue-green rollouts: status, pause, resume, abort, promote."""


def _when(epoch: float) -> str:
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="seconds")


@rollout.command("status")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Only the JSON.")
def status(model: str, as_json: bool) -> None:
    """Print MODEL's rollout as JSON, then as a table (exit 0 with null when there is none)."""
    state = _controller().rollouts.status(model)
    click.echo(json.dumps(state, indent=2))
    if as_json or state is None:
        if state is None and not as_json:
            click.echo(f"{model}: no rollout in progress")
        return
    rows = [
        ("strategy", state["strategy"]),
        ("version", f"v{state['version']} (from v{state['from_version'] or '-'})"),
        ("phase", state["phase"]),
        ("weight", f"{state['weight']:g}%"),
        ("steps", ",".join(f"{s:g}" for s in state["steps"]) or "-"),
        ("step", str(state["step"])),
        ("interval", f"{state['interval_s']:g}s"),
        ("started", _when(state["started_at"])),
        ("step started", _when(state["step_started_at"])),
        ("watch until", _when(state["watch_until"])),
        (
            "previous",
            f"v{state['previous']} until {_when(state['keep_previous_until'])}"
            if state["previous"]
            else "-",
        ),
        ("failures", str(state["failures"])),
        ("inconclusive", str(state["inconclusive"])),
        ("reason", state["reason"] or "-"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key.ljust(width)}  {value}")


_REASON_HELP = "Why (recorded in the ledger)."
# pause and abort need a reason; promote's is optional.
_reason = click.option("--reason", required=True, help=_REASON_HELP)


@rollout.command("pause")
@click.argument("model")
@_reason
def pause(model: str, reason: str) -> None:
    """Stop MODEL's analysis steps (the traffic shares stay)."""
    click.echo(_controller().rollouts.pause(model, reason).message)


@rollout.command("resume")
@click.argument("model")
def resume(model: str) -> None:
    """Continue MODEL's paused rollout with a fresh analysis window."""
    click.echo(_controller().rollouts.resume(model).message)


@rollout.command("abort")
@click.argument("model")
@_reason
def abort(model: str, reason: str) -> None:
    """End MODEL's rollout: the new version gets no more traffic, the champion is untouched."""
    click.echo(_controller().rollouts.abort(model, reason).message)


@rollout.command("promote")
@click.argument("model")
@click.option("--reason", default="", help=_REASON_HELP)
def promote(model: str, reason: str) -> None:
    """Skip the remaining steps: cut over (canary), switch (blue-green) or end the watch now."""
    click.echo(_controller().rollouts.promote(model, reason).message)
