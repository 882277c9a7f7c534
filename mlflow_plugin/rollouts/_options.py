"""The options of a rollout as ``promote`` takes them (CLI, MLproject entry point and API):
steps, interval, keep-previous and watch, checked against the strategy, and their defaults.
"""

from __future__ import annotations

from typing import Any

from mlflow_plugin.errors import BadInput
from mlflow_plugin.rollouts._state import parse_steps

__all__ = [
    "DEFAULT_INTERVAL_S",
    "DEFAULT_KEEP_PREVIOUS_S",
    "DEFAULT_STEPS",
    "parse_seconds",
    "rollout_options",
]

DEFAULT_STEPS = (10.0, 25.0, 50.0, 100.0)
DEFAULT_INTERVAL_S = 300.0
DEFAULT_KEEP_PREVIOUS_S = 3600.0


def parse_seconds(option: str, text: str) -> float:
    """``30s``, ``5m``, ``1h``, ``2d`` or a bare number of seconds -> seconds (BadInput else)."""
    from mlflow_plugin.policy import parse_duration

    try:
        return parse_duration(text, default_unit="s")
    except ValueError as exc:
        raise BadInput(f"{option}: {exc}") from None


def rollout_options(
    strategy: str,
    steps: str | None,
    interval: str | None,
    keep_previous: str | None,
    watch: str | None,
) -> dict[str, Any]:
    """``promote``'s rollout options, checked against the strategy (one line, exit 2)."""
    wrong = [
        name
        for name, value, allowed in (
            ("--steps", steps, ("canary",)),
            ("--keep-previous", keep_previous, ("blue_green",)),
            ("--watch", watch, ("all_at_once",)),
        )
        if value is not None and strategy not in allowed
    ]
    if wrong:
        raise BadInput(f"{', '.join(wrong)} does not apply to --strategy {strategy}")
    if interval is not None and strategy == "all_at_once" and watch is None:
        raise BadInput("--interval applies to canary, blue_green or all_at_once with --watch")
    return {
        "steps": parse_steps(steps) if steps is not None else None,
        "interval_s": parse_seconds("--interval", interval) if interval is not None else None,
        "keep_previous_s": (
            parse_seconds("--keep-previous", keep_previous) if keep_previous is not None else None
        ),
        "watch_s": parse_seconds("--watch", watch) if watch is not None else None,
    }
