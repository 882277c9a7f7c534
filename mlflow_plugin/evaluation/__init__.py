"""Applying a gate policy to metric values, with MLflow's own ``MetricThreshold`` semantics.

Importing the package is cheap: each member's module is imported on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlflow_plugin._internal.lazy import lazy_attributes

if TYPE_CHECKING:
    from mlflow_plugin.evaluation._evaluate import (
        MetricValue,
        evaluate_policy,
    )

__all__ = [
    "MetricValue",
    "evaluate_policy",
]

_LAZY = {
    "MetricValue": "_evaluate",
    "evaluate_policy": "_evaluate",
}

# PEP 562: the members' modules are imported on first use.
__getattr__, __dir__ = lazy_attributes(
    globals(), {name: f"{__name__}.{module}" for name, module in _LAZY.items()}, __all__
)
