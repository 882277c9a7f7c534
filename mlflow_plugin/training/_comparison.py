"""Candidate against champion in ``validate``: the champion's metrics on the evaluation rows it
never saw, candidate minus champion there with a paired-bootstrap interval, and its table in
the report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mlflow_plugin.training._data import SurvivalData
from mlflow_plugin.training._scoring import Scored, _Censoring
from mlflow_plugin.training._tracking import CLOCK

if TYPE_CHECKING:
    from mlflow_plugin.policy import Policy

#: Fewer evaluation rows the champion never saw than this: the comparison is undefined.
MIN_UNSEEN_ROWS = 20


def _compare(
    candidate: Scored,
    champion: Scored,
    data: SurvivalData,
    unseen: np.ndarray,
    censoring: _Censoring,
    policy: Policy,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The champion's metrics on the unseen rows and candidate minus champion there."""
    from mlflow_plugin import metrics

    keys = ("c_index", "brier")
    if len(unseen) < MIN_UNSEEN_ROWS:
        why = (
            f"only {len(unseen)} evaluation rows were not in the champion's training data "
            f"(at least {MIN_UNSEEN_ROWS} are needed)"
        )
        return {}, {k: metrics.UndefinedMetric(f"{k}_vs_champion", why) for k in keys}
    assert candidate.risk is not None and champion.risk is not None
    d, e = data.durations[unseen], data.events[unseen]
    champion_metrics: dict[str, Any] = {}
    try:
        champion_metrics["c_index"] = metrics.c_index_score(d, e, champion.risk[unseen])
    except ValueError as exc:
        champion_metrics["c_index"] = metrics.UndefinedMetric("c_index", str(exc))
    terms: tuple[np.ndarray, np.ndarray] | None = None
    brier_why = ""
    h = candidate.horizon
    if h is not None and candidate.p_event is not None and champion.p_event is not None:
        try:
            at = metrics.at_horizon(
                d, e, h, train_durations=censoring.durations, train_events=censoring.events
            )
            terms = (
                at.brier_terms(candidate.p_event[unseen]),
                at.brier_terms(champion.p_event[unseen]),
            )
            champion_metrics["brier"] = float(np.mean(terms[1]))
        except ValueError as exc:
            brier_why = getattr(exc, "reason", str(exc))
    test = policy.champion_test
    with CLOCK("gates"):
        comparisons: dict[str, Any] = dict(
            metrics.paired_bootstrap(
                d,
                e,
                candidate.risk[unseen],
                champion.risk[unseen],
                candidate_brier_terms=None if terms is None else terms[0],
                champion_brier_terms=None if terms is None else terms[1],
                confidence=test.confidence,
                resamples=test.resamples,
                seed=test.seed,
            )
        )
    if terms is None:
        comparisons["brier"] = metrics.UndefinedMetric(
            "brier_vs_champion", brier_why or "the Brier score has no value on these rows"
        )
    return champion_metrics, comparisons


def _comparison_markdown(comparisons: dict[str, Any], policy: Policy, notes: list[str]) -> str:
    """The candidate-minus-champion table under the gate table."""
    if not comparisons and not notes:
        return ""
    test = policy.champion_test
    lines = []
    if comparisons:
        rule = test.method.replace("_", "-") + (
            f", margin {test.margin:g}" if test.method != "point" else ""
        )
        lines += [
            f"**Candidate − champion** (paired bootstrap, {test.resamples} resamples, "
            f"seed {test.seed}; champion test: {rule})",
            "",
            "| metric | Δ | CI low | CI high | rows |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, c in comparisons.items():
            if hasattr(c, "delta"):
                lines.append(
                    f"| {name} | {c.delta:+.4f} | {c.ci_low:+.4f} | {c.ci_high:+.4f} | {c.n_rows} |"
                )
            else:
                lines.append(f"| {name} | undefined: {c.reason} | | | |")
    lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines)
