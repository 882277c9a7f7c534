"""Gates: pure metric functions, sanity checks, the gate policy and its report.

Never imports mlflow (an import-linter contract in ``setup.cfg`` checks it). The math is done by
well-kept libraries: lifelines (C-index), scikit-survival (IPCW Brier scores) and scikit-learn
(Brier, F1, precision, recall). ``*_score`` is higher-is-better, ``*_loss`` lower-is-better.

Every function validates its inputs first and raises :class:`ValueError` whose one-line message
starts with the argument's name; a metric that has no value on valid data raises
:class:`UndefinedMetric` (a :class:`ValueError`), which the policy reports as ``undefined``.
Thresholds are applied by :func:`mlflow_plugin.evaluation.evaluate_policy`.

The policy and report types load eagerly; the metric and sanity functions load on first use,
because scikit-learn, lifelines and scikit-survival take about two seconds to import and the
CLI, the controller and :mod:`mlflow_plugin.evaluation` only need the types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlflow_plugin._lazy import lazy_attributes
from mlflow_plugin.gates._interval import ChampionComparison
from mlflow_plugin.gates._loop_policy import (
    Alerts,
    PerformanceRules,
    RollbackIf,
    Triggers,
    parse_duration,
)
from mlflow_plugin.gates._policy import (
    CHAMPION_TEST_METHODS,
    GATE_DIRECTIONS,
    ChampionTest,
    GateSpec,
    Policy,
    SanityPolicy,
)
from mlflow_plugin.gates._report import GateReport, GateResult, GateStatus, SanityResult
from mlflow_plugin.gates._retention import (
    PROTECTED_ALIASES,
    KeepLast,
    MaxAge,
    MinMetric,
    RetentionPolicy,
    RetentionRule,
)
from mlflow_plugin.gates._rollout import Analysis, RolloutPolicy, Sample, judge
from mlflow_plugin.gates._scalar import UndefinedMetric

if TYPE_CHECKING:
    from mlflow_plugin.gates._censored import (
        AtHorizon,
        at_horizon,
        auto_horizon,
        check_horizon,
        horizon_range,
        km_event_share,
    )
    from mlflow_plugin.gates._classification import (
        brier_loss,
        f1_score,
        precision_score,
        recall_score,
    )
    from mlflow_plugin.gates._compare import concordance_contributions, paired_bootstrap
    from mlflow_plugin.gates._sanity import (
        check_finite,
        check_probability_range,
        check_probability_rows,
    )
    from mlflow_plugin.gates._survival import (
        c_index_score,
        integrated_brier_loss,
        survival_brier_loss,
    )

__all__ = [
    "Alerts",
    "Analysis",
    "AtHorizon",
    "CHAMPION_TEST_METHODS",
    "ChampionComparison",
    "ChampionTest",
    "GATE_DIRECTIONS",
    "GateReport",
    "GateResult",
    "GateSpec",
    "GateStatus",
    "KeepLast",
    "MaxAge",
    "MinMetric",
    "PROTECTED_ALIASES",
    "PerformanceRules",
    "Policy",
    "RetentionPolicy",
    "RetentionRule",
    "RollbackIf",
    "RolloutPolicy",
    "Sample",
    "SanityPolicy",
    "SanityResult",
    "Triggers",
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
    "judge",
    "km_event_share",
    "paired_bootstrap",
    "parse_duration",
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
