"""Apply a gate policy to metric values, with MLflow's own threshold semantics.

A thin layer above :mod:`mlflow_plugin.metrics` (which never imports mlflow): every comparison is
made by :func:`mlflow.validate_evaluation_results` with :class:`mlflow.models.MetricThreshold`,
one gate at a time, so a gate passes exactly when MLflow's model validation would accept it.
mlflow is imported inside :func:`evaluate_policy` (it takes seconds), so importing this module
stays cheap.
"""

from __future__ import annotations

import contextlib
import logging
import math
import numbers
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlflow_plugin.metrics import (
    ChampionComparison,
    GateReport,
    GateResult,
    GateStatus,
    SanityResult,
    UndefinedMetric,
)
from mlflow_plugin.policy import ChampionTest, GateSpec, Policy

if TYPE_CHECKING:
    from mlflow.models import MetricThreshold

__all__ = ["MetricValue", "evaluate_policy"]

#: What a metric mapping may hold: a number, ``None`` (not computed) or the
#: :class:`~mlflow_plugin.metrics.UndefinedMetric` a gate function raised.
MetricValue = float | int | None | UndefinedMetric


def evaluate_policy(
    policy: Policy,
    candidate_metrics: Mapping[str, MetricValue],
    champion_metrics: Mapping[str, MetricValue] | None = None,
    *,
    sanity: Sequence[SanityResult] = (),
    comparisons: Mapping[str, ChampionComparison | UndefinedMetric] | None = None,
) -> GateReport:
    """Evaluate every gate of ``policy`` on the candidate's metrics.

    Semantics, per gate (``t`` the threshold, ``c`` the champion's value, ``d`` the
    ``min_delta_vs_champion``):

    - **Absolute threshold, strict by default.** Higher-is-better passes when ``value > t``,
      lower-is-better when ``value < t``; ``value == t`` **fails** (DESIGN: "C-index > 0.5",
      "Brier < 0.3": a constant risk score, C-index exactly 0.5, must not pass).
      MLflow's ``MetricThreshold(threshold=...)`` is inclusive (``>=``/``<=``); the two are
      reconciled by handing MLflow the next double beyond ``t`` (:func:`math.nextafter`), for
      which ``value >= nextafter(t, +inf)`` holds exactly when ``value > t``. With
      ``inclusive: true`` the gate uses MLflow's inclusive comparison unchanged.
    - **Against the champion, inclusive** (DESIGN: "≥ champion − 0.0"): the candidate passes
      when ``value >= c + d`` (higher-is-better) or ``value <= c - d`` (lower-is-better), so
      equalling the champion passes with the default ``d = 0.0``, and a negative ``d``
      tolerates that much degradation. This is MLflow's ``min_absolute_change`` inequality
      (``candidate >= baseline + change``); MLflow only accepts a positive change, so ``d <= 0``
      is given to it as the inclusive threshold ``c + d`` (``c - d``), which is the same test.
      ``min_relative_change_vs_champion`` is MLflow's ``min_relative_change`` verbatim.
    - **Undefined never passes.** A metric that is missing, ``None``, NaN, infinite or an
      :class:`~mlflow_plugin.metrics.UndefinedMetric` makes the gate ``undefined``. When the gate
      compares with the champion and ``champion_metrics`` is given but lacks a finite value,
      the gate is ``undefined`` too (MLflow fails such a comparison as "missing baseline"),
      unless the absolute threshold already failed. With ``champion_metrics=None`` (no champion
      yet) only the absolute threshold applies.
    - **Above the trivial baseline** (``above_baseline: true``): the candidate must also beat
      ``candidate_metrics["<name>_baseline"]`` (what predicting everyone positive, or the
      event share for everyone, gets), strictly; a missing baseline makes the gate undefined.
    - **The champion test** (``policy.champion_test``) uses ``comparisons[name]``, candidate
      minus champion on rows the champion never saw with its paired-bootstrap interval
      ``[lo, hi]``. ``point`` decides on the point values as above and reports the interval;
      ``non_inferiority`` passes when the interval's worse end is no worse than ``-margin``
      (``lo >= -margin``, ``hi <= margin`` for a loss); ``superiority`` when it is better than
      ``+margin`` (``lo > margin``, ``hi < -margin``). An :class:`UndefinedMetric` there (too
      few unseen rows) makes a gate that compares with the champion undefined.
    - The report passes when every gate, including each ``sanity`` result, passed.

    Args:
        policy: the validated policy.
        candidate_metrics: metric name to value for the candidate; extra names are ignored.
        champion_metrics: the same for the current champion, or ``None`` when there is none.
        sanity: results of :func:`~mlflow_plugin.metrics.check_finite` and
            :func:`~mlflow_plugin.metrics.check_probability_rows`, appended as report rows.
        comparisons: metric name to candidate-minus-champion with its interval (or why it is
            undefined), from :func:`~mlflow_plugin.metrics.paired_bootstrap`.

    Returns:
        One :class:`~mlflow_plugin.metrics.GateResult` per policy gate (policy order), then one
        per sanity result.

    Raises:
        ValueError: an argument is of the wrong kind, or a metric value is not a number,
            ``None`` or :class:`~mlflow_plugin.metrics.UndefinedMetric` (message names it).
    """
    if not isinstance(policy, Policy):
        raise ValueError(f"policy: expected a Policy, got {type(policy).__name__}")
    candidate = _metrics("candidate_metrics", candidate_metrics)
    champion = None if champion_metrics is None else _metrics("champion_metrics", champion_metrics)
    for i, result in enumerate(sanity):
        if not isinstance(result, SanityResult):
            raise ValueError(f"sanity[{i}]: expected a SanityResult, got {type(result).__name__}")
    compared = dict(comparisons or {})
    for key, value in compared.items():
        if not isinstance(value, ChampionComparison | UndefinedMetric):
            kind = type(value).__name__
            raise ValueError(f"comparisons.{key}: expected a ChampionComparison, got {kind}")
    with _quiet_mlflow_validation():
        rows = [
            _evaluate_gate(spec, candidate, champion, compared.get(spec.name), policy.champion_test)
            for spec in policy.gates
        ]
    rows += [_sanity_row(result) for result in sanity]
    return GateReport(tuple(rows))


def _metrics(name: str, metrics: object) -> dict[str, float | str]:
    """Each value as a finite float, or as the reason why it is undefined (a ``str``)."""
    if not isinstance(metrics, Mapping):
        kind = type(metrics).__name__
        raise ValueError(f"{name}: expected a mapping of metric name to value, got {kind}")
    out: dict[str, float | str] = {}
    for key, value in metrics.items():
        if value is None:
            out[key] = "not computed"
        elif isinstance(value, UndefinedMetric):
            out[key] = value.reason
        elif isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{name}.{key}: expected a number, got {type(value).__name__}")
        elif math.isnan(value):
            out[key] = "value is NaN"
        elif not math.isfinite(value):
            out[key] = f"value is {float(value)}"
        else:
            out[key] = float(value)
    return out


@contextlib.contextmanager
def _quiet_mlflow_validation() -> Iterator[None]:
    """Silence MLflow's two INFO lines per call ("Validating ...", "Model validation passed!");
    we call it once per gate and report the outcome ourselves. Warnings still show."""
    logger = logging.getLogger("mlflow.models.evaluation.validation")
    previous = logger.level
    logger.setLevel(max(previous, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(previous)


def _passes(
    name: str, threshold: MetricThreshold, value: float, baseline: float | None = None
) -> bool:
    """Whether MLflow's model validation accepts ``value`` under ``threshold``."""
    from mlflow.models.evaluation import EvaluationResult
    from mlflow.models.evaluation.validation import (
        ModelValidationFailedException,
        validate_evaluation_results,
    )

    candidate = EvaluationResult(metrics={name: value}, artifacts={})
    base = None if baseline is None else EvaluationResult(metrics={name: baseline}, artifacts={})
    try:
        validate_evaluation_results({name: threshold}, candidate, base)
    except ModelValidationFailedException:
        return False
    return True


def _absolute_threshold(spec: GateSpec) -> MetricThreshold:
    from mlflow.models import MetricThreshold

    bound = spec.threshold
    if not spec.inclusive:  # strict: the next double beyond t turns MLflow's >= into >
        bound = math.nextafter(bound, math.inf if spec.higher_is_better else -math.inf)
    return MetricThreshold(threshold=bound, greater_is_better=spec.higher_is_better)


def _champion_threshold(spec: GateSpec, champion: float) -> tuple[MetricThreshold, float]:
    """MLflow's threshold against the champion, and the value the candidate must reach."""
    from mlflow.models import MetricThreshold

    sign = 1.0 if spec.higher_is_better else -1.0
    kwargs: dict[str, Any] = {"greater_is_better": spec.higher_is_better}
    bounds = []
    delta = spec.min_delta_vs_champion
    if delta is not None:
        if delta > 0:
            kwargs["min_absolute_change"] = delta
        else:  # MLflow refuses a change <= 0; c + d as an inclusive threshold is the same test
            kwargs["threshold"] = champion + sign * delta
        bounds.append(champion + sign * delta)
    relative = spec.min_relative_change_vs_champion
    if relative is not None:
        kwargs["min_relative_change"] = float(relative)
        # MLflow: relative to |c|; against a zero champion, strictly better by 1e-10.
        step = relative * abs(champion) if champion != 0 else 1e-10
        bounds.append(champion + sign * step)
    need = max(bounds) if spec.higher_is_better else min(bounds)
    return MetricThreshold(**kwargs), need


#: Relative margin a metric must clear above (or below) its trivial baseline.
_BASELINE_RTOL = 1e-9


def _baseline(
    spec: GateSpec, value: float, candidate: Mapping[str, float | str]
) -> tuple[GateStatus, str]:
    """PASSED with a phrase when ``value`` beats the trivial predictor's, else why not."""
    from mlflow.models import MetricThreshold

    base = candidate.get(f"{spec.name}_baseline", "no baseline value was computed")
    if isinstance(base, str):
        return GateStatus.UNDEFINED, f"cannot compare with the trivial baseline: {base}"
    op = ">" if spec.higher_is_better else "<"
    # Strictly better, by more than rounding: the all-positive predictor's F1 and precision
    # (scikit-learn's weighted sums) differ from the closed-form baseline by a few ULPs.
    tolerance = _BASELINE_RTOL * max(1.0, abs(base))
    bound = base + tolerance if spec.higher_is_better else base - tolerance
    threshold = MetricThreshold(threshold=bound, greater_is_better=spec.higher_is_better)
    if _passes(spec.name, threshold, value):
        return GateStatus.PASSED, f"{op} trivial baseline {base:.4g}"
    return GateStatus.FAILED, f"{value:.6g} is not {op} the trivial baseline {base:.4g}"


def _interval_rule(
    spec: GateSpec, comparison: ChampionComparison, test: ChampionTest
) -> tuple[bool, str]:
    """The non-inferiority / superiority decision on the interval's worse end (via MLflow)."""
    from mlflow.models import MetricThreshold

    higher = spec.higher_is_better
    worse_end = comparison.ci_low if higher else comparison.ci_high
    sign = 1.0 if higher else -1.0
    bound = sign * (-test.margin if test.method == "non_inferiority" else test.margin)
    if test.method == "superiority":  # strictly better than the margin
        bound = math.nextafter(bound, math.inf if higher else -math.inf)
    ok = _passes(spec.name, MetricThreshold(threshold=bound, greater_is_better=higher), worse_end)
    end = "lower" if higher else "upper"
    op = ">=" if higher else "<="
    shown = sign * (-test.margin if test.method == "non_inferiority" else test.margin)
    rule = f"{test.method.replace('_', '-')}: interval {end} end {worse_end:+.4g}"
    if test.method == "superiority":
        op = op[0]
    return ok, f"{rule} {'' if ok else 'not '}{op} {shown:+.4g}"


def _evaluate_gate(
    spec: GateSpec,
    candidate: Mapping[str, float | str],
    champion: Mapping[str, float | str] | None,
    comparison: ChampionComparison | UndefinedMetric | None = None,
    test: ChampionTest | None = None,
) -> GateResult:
    name, op = spec.name, spec.comparator
    champion_value = None if champion is None else champion.get(name, "missing")
    known_champion = champion_value if isinstance(champion_value, float) else None
    row: dict[str, Any] = {
        "name": name,
        "threshold": spec.threshold,
        "comparator": op,
        "champion_value": known_champion,
    }
    value = candidate.get(name, "missing")
    if isinstance(value, str):
        return GateResult(status=GateStatus.UNDEFINED, value=None, reason=value, **row)
    row["value"] = value
    if not _passes(name, _absolute_threshold(spec), value):
        reason = f"{value:.6g} is not {op} {spec.threshold:g}"
        return GateResult(status=GateStatus.FAILED, reason=reason, **row)
    reason = f"{value:.6g} {op} {spec.threshold:g}"
    if spec.above_baseline:
        status, phrase = _baseline(spec, value, candidate)
        if status is not GateStatus.PASSED:
            return GateResult(status=status, reason=phrase, **row)
        reason = f"{reason}, {phrase}"
    if not spec.compares_with_champion:
        return GateResult(status=GateStatus.PASSED, reason=reason, **row)
    if champion_value is None and comparison is None:
        return GateResult(status=GateStatus.PASSED, reason=f"{reason}; no champion yet", **row)
    if isinstance(comparison, UndefinedMetric):
        reason = f"{reason}; cannot compare with the champion: {comparison.reason}"
        return GateResult(status=GateStatus.UNDEFINED, reason=reason, **row)
    test = test or ChampionTest()
    interval = "" if comparison is None else f" [{comparison.describe()}]"
    if test.method != "point":
        if comparison is None:
            reason = f"{reason}; cannot compare with the champion: no interval was computed"
            return GateResult(status=GateStatus.UNDEFINED, reason=reason, **row)
        ok, rule = _interval_rule(spec, comparison, test)
        status = GateStatus.PASSED if ok else GateStatus.FAILED
        text = f"{reason} and {rule}" if ok else rule
        return GateResult(status=status, reason=text + interval, **row)
    if comparison is not None and spec.min_delta_vs_champion is not None:
        # Point rule on the rows both were scored on: candidate - champion >= d (<= -d).
        from mlflow.models import MetricThreshold

        higher = spec.higher_is_better
        bound = (1.0 if higher else -1.0) * spec.min_delta_vs_champion
        ok = _passes(
            name, MetricThreshold(threshold=bound, greater_is_better=higher), comparison.delta
        )
        rule = (
            f"candidate - champion {comparison.delta:+.4g} {'>=' if higher else '<='} {bound:+.4g}"
        )
        if not ok:
            rule = f"candidate - champion {comparison.delta:+.4g} is not {'>=' if higher else '<='} {bound:+.4g}"
        status = GateStatus.PASSED if ok else GateStatus.FAILED
        text = f"{reason} and {rule}" if ok else rule
        return GateResult(status=status, reason=text + interval, **row)
    if known_champion is None:
        reason = f"{reason}; cannot compare with the champion: {champion_value}"
        return GateResult(status=GateStatus.UNDEFINED, reason=reason, **row)
    threshold, need = _champion_threshold(spec, known_champion)
    versus = f"{'>=' if spec.higher_is_better else '<='} {need:.6g} (champion {known_champion:.6g})"
    if _passes(name, threshold, value, known_champion):
        status, reason = GateStatus.PASSED, f"{reason} and {versus}"
    else:
        status, reason = GateStatus.FAILED, f"{value:.6g} is not {versus}"
    return GateResult(status=status, champion_bound=need, reason=reason + interval, **row)


def _sanity_row(result: SanityResult) -> GateResult:
    return GateResult(
        name=result.name,
        status=GateStatus.PASSED if result.passed else GateStatus.FAILED,
        value=float(result.n_bad),
        threshold=0.0,
        comparator="==",
        reason=result.detail,
    )
