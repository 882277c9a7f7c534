"""Metrics: pure statistics of the gates (never imports mlflow).

Survival (Harrell's C from lifelines, IPCW Brier scores from scikit-survival), binary
classification (scikit-learn), the candidate-minus-champion comparison with its interval, the
sanity checks on raw predictions, and the gate report (one row per gate, a verdict).

``*_score`` is higher-is-better, ``*_loss`` lower-is-better; a metric that cannot be estimated
raises :class:`UndefinedMetric` (a gate outcome ``undefined`` that never passes). The modules
with scientific dependencies are imported on first use, so importing the package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlflow_plugin._internal.lazy import lazy_attributes
from mlflow_plugin.metrics._interval import ChampionComparison
from mlflow_plugin.metrics._report import GateReport, GateResult, GateStatus, SanityResult
from mlflow_plugin.metrics._scalar import UndefinedMetric

if TYPE_CHECKING:
    from mlflow_plugin.metrics._censored import (
        AtHorizon,
        at_horizon,
        auto_horizon,
        check_horizon,
        horizon_range,
        km_event_share,
    )
    from mlflow_plugin.metrics._classification import (
        brier_loss,
        f1_score,
        precision_score,
        recall_score,
    )
    from mlflow_plugin.metrics._compare import concordance_contributions, paired_bootstrap
    from mlflow_plugin.metrics._sanity import (
        check_finite,
        check_probability_range,
        check_probability_rows,
    )
    from mlflow_plugin.metrics._survival import (
        c_index_score,
        integrated_brier_loss,
        survival_brier_loss,
    )

__all__ = [
    "AtHorizon",
    "ChampionComparison",
    "GateReport",
    "GateResult",
    "GateStatus",
    "SanityResult",
    "UndefinedMetric",
    "at_horizon",
    "auto_horizon",
    "brier_loss",
    "c_index_score",
    "check_finite",
    "check_horizon",
    "check_probability_range",
    "check_probability_rows",
    "concordance_contributions",
    "f1_score",
    "horizon_range",
    "integrated_brier_loss",
    "km_event_share",
    "paired_bootstrap",
    "precision_score",
    "recall_score",
    "survival_brier_loss",
]

_LAZY = {
    "AtHorizon": "_censored",
    "at_horizon": "_censored",
    "auto_horizon": "_censored",
    "check_horizon": "_censored",
    "horizon_range": "_censored",
    "km_event_share": "_censored",
    "concordance_contributions": "_compare",
    "paired_bootstrap": "_compare",
    "brier_loss": "_classification",
    "f1_score": "_classification",
    "precision_score": "_classification",
    "recall_score": "_classification",
    "check_finite": "_sanity",
    "check_probability_range": "_sanity",
    "check_probability_rows": "_sanity",
    "c_index_score": "_survival",
    "integrated_brier_loss": "_survival",
    "survival_brier_loss": "_survival",
}


# PEP 562: the members' modules are imported on first use.
__getattr__, __dir__ = lazy_attributes(
    globals(), {name: f"{__name__}.{module}" for name, module in _LAZY.items()}, __all__
)
