"""Rollouts: canary, blue-green and the post-promotion watch, in one place.

- :mod:`._state`: a rollout's state as registry tags (shared by the operator and ``serve``);
- :mod:`._rollouts`: :class:`Rollouts`, the controller's rollout operations under the lock;
- :mod:`._context`: :class:`RolloutContext`, one operation under the lock, passed as one value;
- :mod:`._state_machine`: what pause, resume, abort, promote and a verdict do;
- :mod:`._analysis`: the statistics of a rollout analysis (pure);
- :mod:`._samples`: both sides of an analysis, read from the prediction log;
- :mod:`._options`, :mod:`._repair`: ``promote``'s rollout options; rollouts left half-done;
- :mod:`._commands`: ``mlflow-plugin rollout status|pause|resume|abort|promote``.

Importing the package is cheap: each member's module is imported on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlflow_plugin._internal.lazy import lazy_attributes

if TYPE_CHECKING:
    from mlflow_plugin.rollouts._analysis import (
        VERDICTS,
        Analysis,
        Sample,
        judge,
        latency_test,
        rate_test,
    )
    from mlflow_plugin.rollouts._options import (
        parse_seconds,
        rollout_options,
    )
    from mlflow_plugin.rollouts._rollouts import (
        DEFAULT_INTERVAL_S,
        DEFAULT_KEEP_PREVIOUS_S,
        DEFAULT_STEPS,
        Rollouts,
        alias_of,
        check_no_rollout,
    )
    from mlflow_plugin.rollouts._samples import (
        route_sample,
    )
    from mlflow_plugin.rollouts._state import (
        CANARY,
        PREVIEW,
        ROLLOUT_PHASES,
        ROLLOUT_PREFIX,
        ROLLOUT_TAGS,
        RolloutState,
        canary_bucket,
        parse_steps,
        routes_to_canary,
    )

__all__ = [
    "Analysis",
    "CANARY",
    "DEFAULT_INTERVAL_S",
    "DEFAULT_KEEP_PREVIOUS_S",
    "DEFAULT_STEPS",
    "PREVIEW",
    "ROLLOUT_PHASES",
    "ROLLOUT_PREFIX",
    "ROLLOUT_TAGS",
    "RolloutState",
    "Rollouts",
    "Sample",
    "VERDICTS",
    "alias_of",
    "canary_bucket",
    "check_no_rollout",
    "judge",
    "latency_test",
    "parse_seconds",
    "parse_steps",
    "rate_test",
    "rollout_options",
    "route_sample",
    "routes_to_canary",
]

_LAZY = {
    "CANARY": "_state",
    "PREVIEW": "_state",
    "ROLLOUT_PHASES": "_state",
    "ROLLOUT_PREFIX": "_state",
    "ROLLOUT_TAGS": "_state",
    "RolloutState": "_state",
    "canary_bucket": "_state",
    "parse_steps": "_state",
    "routes_to_canary": "_state",
    "DEFAULT_INTERVAL_S": "_rollouts",
    "DEFAULT_KEEP_PREVIOUS_S": "_rollouts",
    "DEFAULT_STEPS": "_rollouts",
    "Rollouts": "_rollouts",
    "alias_of": "_rollouts",
    "check_no_rollout": "_rollouts",
    "VERDICTS": "_analysis",
    "Analysis": "_analysis",
    "Sample": "_analysis",
    "judge": "_analysis",
    "latency_test": "_analysis",
    "rate_test": "_analysis",
    "parse_seconds": "_options",
    "rollout_options": "_options",
    "route_sample": "_samples",
}

# PEP 562: the members' modules are imported on first use.
__getattr__, __dir__ = lazy_attributes(
    globals(), {name: f"{__name__}.{module}" for name, module in _LAZY.items()}, __all__
)
