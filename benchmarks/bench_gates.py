"""Benchmark: overhead of the gates over calling the libraries directly (not a test).

On synthetic survival and classification data (1,000,000 rows by default), each gate is timed
against the direct library call a user would otherwise write, interleaved in one process
(ours, direct, direct, ours, ...: the order alternates so neither side profits from warm
caches), and the medians are compared. The target is ours / direct <= 1.10. Then the wall time
of the whole gate set (every metric, both sanity checks and the policy evaluation) is printed.

Then the champion comparison (:func:`mlflow_plugin.metrics.paired_bootstrap`: candidate minus
champion C-index and IPCW Brier with a 200-resample paired-bootstrap interval) on 1e5 and 1e6
rows (``--compare-rows``), timed against one plain C-index of the same rows (lifelines'
``concordance_index``) in the same run. Target: <= 3x one C-index, never > 60 s on 1e6 rows.

Run: ``.venv/bin/python benchmarks/bench_gates.py [--rows N] [--repeats R]``.
lifelines' ``concordance_index`` takes seconds per million rows, hence its own repeat count.
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from lifelines.utils import concordance_index
from sklearn import metrics as skm
from sksurv.metrics import brier_score
from sksurv.util import Surv

from mlflow_plugin import metrics as gates
from mlflow_plugin.evaluation._evaluate import evaluate_policy
from mlflow_plugin.metrics._checks import (
    as_durations,
    as_events,
    as_labels,
    as_probabilities,
    as_scores,
)
from mlflow_plugin.metrics._survival import _check_within_follow_up, _survival_data
from mlflow_plugin.policy import Policy

TARGET = 1.10
COMPARE_TARGET = 3.0
COMPARE_LIMIT_S = 60.0
T = TypeVar("T")


@dataclass(frozen=True)
class Data:
    durations: np.ndarray
    events: np.ndarray
    risk: np.ndarray
    survival: np.ndarray
    horizon: float
    y_true: np.ndarray
    y_prob: np.ndarray


def make_data(rows: int, seed: int = 0) -> Data:
    """Exponential event times driven by a risk score, exponential censoring."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=rows)
    event_time = rng.exponential(np.exp(-risk))
    censor_time = rng.exponential(2.0, size=rows)
    durations = np.minimum(event_time, censor_time)
    horizon = float(np.median(durations))
    y_true = rng.integers(0, 2, rows)
    return Data(
        durations=durations,
        events=event_time <= censor_time,
        risk=risk,
        survival=np.exp(-np.exp(risk) * horizon),
        horizon=horizon,
        y_true=y_true,
        y_prob=np.clip(0.35 * y_true + 0.65 * rng.random(rows), 0.0, 1.0),
    )


def timed(fn: Callable[[], T]) -> tuple[float, float, T]:
    """``(wall seconds, CPU seconds of this process, result)``."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, value


def compare(
    name: str,
    ours: Callable[[], float],
    direct: Callable[[], float],
    checks: Callable[[], object],
    repeats: int,
) -> float:
    """Interleaved medians of ours and direct, plus the cost of our input checks alone.

    Prints one line and returns the CPU-time ratio. CPU time is the primary figure because it
    is far less sensitive to other processes competing for the cores than wall time is.
    """
    wall: dict[str, list[float]] = {"ours": [], "direct": []}
    cpu: dict[str, list[float]] = {"ours": [], "direct": []}
    values: dict[str, float] = {}
    for i in range(repeats):
        order = [("ours", ours), ("direct", direct)]
        for side, fn in order if i % 2 == 0 else order[::-1]:
            seconds, cpu_seconds, values[side] = timed(fn)
            wall[side].append(seconds)
            cpu[side].append(cpu_seconds)
    ours_value, direct_value = values["ours"], values["direct"]
    assert math.isclose(ours_value, direct_value, rel_tol=1e-12), (name, ours_value, direct_value)
    med = {
        k: {side: statistics.median(v[side]) for side in v}
        for k, v in (("wall", wall), ("cpu", cpu))
    }
    ratio_cpu = med["cpu"]["ours"] / med["cpu"]["direct"]
    ratio_wall = med["wall"]["ours"] / med["wall"]["direct"]
    # The deterministic part of the overhead: our checks alone, best of several runs.
    check_s = min(timed(checks)[1] for _ in range(max(repeats, 5)))
    share = check_s / med["cpu"]["direct"]
    verdict = "ok" if ratio_cpu <= TARGET else "OVER TARGET"
    print(
        f"{name:<15} {med['cpu']['ours']:>8.3f} {med['cpu']['direct']:>8.3f} {ratio_cpu:>6.3f}"
        f" {ratio_wall:>6.3f} {check_s * 1e3:>8.2f} {share:>7.2%}  {verdict}  (n={repeats})"
    )
    return ratio_cpu


def gate_set(data: Data, policy: Policy) -> gates.GateReport:
    """Every gate on the data, as the validate/backtest steps would run them."""
    survival_args = {"train_durations": data.durations, "train_events": data.events}
    metrics = {
        "c_index": gates.c_index_score(data.durations, data.events, data.risk),
        "brier": gates.survival_brier_loss(
            data.durations, data.events, data.survival, data.horizon, **survival_args
        ),
        "f1": gates.f1_score(data.y_true, data.y_prob),
        "precision": gates.precision_score(data.y_true, data.y_prob),
        "recall": gates.recall_score(data.y_true, data.y_prob),
    }
    probs = np.column_stack([1.0 - data.y_prob, data.y_prob])
    sanity = [
        gates.check_finite(data.risk),
        gates.check_probability_rows(probs, atol=policy.sanity.probability_atol),
    ]
    return evaluate_policy(policy, metrics, sanity=sanity)


def bench_comparison(rows: int) -> tuple[float, float]:
    """Wall seconds of the champion comparison and of one lifelines C-index on ``rows`` rows;
    prints one line."""
    data = make_data(rows, seed=1)
    rng = np.random.default_rng(2)
    champion_risk = data.risk + rng.normal(size=rows)
    at = gates.at_horizon(
        data.durations,
        data.events,
        data.horizon,
        train_durations=data.durations,
        train_events=data.events,
    )
    p_candidate = 1.0 - data.survival
    p_champion = np.clip(p_candidate + rng.normal(0, 0.05, rows), 0, 1)
    # numba compiles the concordance sweep on first use (then caches it): not part of the timing
    gates.concordance_contributions(data.durations[:100], data.events[:100], data.risk[:100])
    one_c, _, _ = timed(lambda: concordance_index(data.durations, -data.risk, data.events))
    cmp_s, _, out = timed(
        lambda: gates.paired_bootstrap(
            data.durations,
            data.events,
            data.risk,
            champion_risk,
            candidate_brier_terms=at.brier_terms(p_candidate),
            champion_brier_terms=at.brier_terms(p_champion),
            resamples=200,
        )
    )
    c = out["c_index"]
    ratio = cmp_s / one_c
    ok = ratio <= COMPARE_TARGET and cmp_s <= COMPARE_LIMIT_S
    print(
        f"champion comparison on {rows:>9,} rows: {cmp_s:6.2f} s wall vs one C-index "
        f"{one_c:6.2f} s = {ratio:4.2f}x  {'ok' if ok else 'OVER TARGET'}  "
        f"(ΔC {c.delta:+.4f} [{c.ci_low:+.4f}, {c.ci_high:+.4f}], {c.method})"
    )
    return cmp_s, one_c


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7, help="for Brier and F1")
    parser.add_argument("--c-index-repeats", type=int, default=3)
    parser.add_argument(
        "--compare-rows",
        type=int,
        nargs="*",
        default=[100_000, 1_000_000],
        help="row counts of the champion-comparison benchmark",
    )
    parser.add_argument(
        "--only-compare", action="store_true", help="run only the champion comparison"
    )
    args = parser.parse_args(argv)
    if args.only_compare:
        for rows in args.compare_rows:
            bench_comparison(rows)
        return 0

    data = make_data(args.rows)
    import mlflow  # noqa: F401  (evaluate_policy imports it on first use: keep it out of timings)

    print(f"gates overhead on {args.rows:,} rows; medians of interleaved runs, target <= {TARGET}")
    print(
        f"{'metric':<15} {'ours s':>8} {'direct s':>8} {'ratio':>6} {'wall':>6}"
        f" {'checks ms':>8} {'share':>7}"
    )
    print("  (ours/direct CPU s = process CPU seconds; ratio = CPU ratio; wall = wall-clock ratio;")
    print("   checks = our input validation alone; share = checks / direct CPU time)")

    def survival_checks() -> None:
        _survival_data(data.durations, data.events, data.durations, data.events)
        as_probabilities("survival_at_horizon", data.survival)
        _check_within_follow_up("horizon", np.array([data.horizon]), data.durations)

    def survival_direct() -> float:
        y = Surv.from_arrays(data.events, data.durations)
        return float(brier_score(y, y, data.survival, data.horizon)[1][0])

    ratios = {
        "f1": compare(
            "f1",
            lambda: gates.f1_score(data.y_true, data.y_prob),
            lambda: skm.f1_score(data.y_true, (data.y_prob >= 0.5).astype(int), zero_division=0.0),
            lambda: (as_labels("y_true", data.y_true), as_probabilities("y_prob", data.y_prob)),
            args.repeats,
        ),
        "survival_brier": compare(
            "survival_brier",
            lambda: gates.survival_brier_loss(
                data.durations,
                data.events,
                data.survival,
                data.horizon,
                train_durations=data.durations,
                train_events=data.events,
            ),
            survival_direct,
            survival_checks,
            args.repeats,
        ),
        "c_index": compare(
            "c_index",
            lambda: gates.c_index_score(data.durations, data.events, data.risk),
            lambda: concordance_index(data.durations, -data.risk, data.events),
            lambda: (
                as_durations("durations", data.durations),
                as_events("events", data.events),
                as_scores("risk", data.risk),
            ),
            args.c_index_repeats,
        ),
    }

    policy = Policy.default()
    seconds, _, report = timed(lambda: gate_set(data, policy))
    print(
        f"whole gate set (c_index, survival brier, f1, precision, recall, 2 sanity checks, "
        f"policy): {seconds:.2f} s wall; report passed={report.passed}"
    )
    worst = max(ratios, key=ratios.__getitem__)
    print(f"worst CPU ratio: {worst} {ratios[worst]:.3f} (target <= {TARGET})")
    print(f"champion comparison (target <= {COMPARE_TARGET}x one C-index, <= {COMPARE_LIMIT_S} s):")
    for rows in args.compare_rows:
        bench_comparison(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
