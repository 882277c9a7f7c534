"""Candidate minus champion on the same rows, with a paired-bootstrap interval.

Harrell's C is a ratio of two U-statistics: ``C = N / D``, ``N`` the concordant admissible
pairs (ties in risk count one half) and ``D`` the admissible pairs (the earlier time has an
event; a censored row tied with an event counts as later, as in lifelines and
scikit-survival). :func:`concordance_contributions` computes, in ``O(n log n)`` (a Fenwick tree
compiled by numba), each row's share of ``N`` and ``D``: how many concordant and admissible
pairs it belongs to. Their sums are ``2N`` and ``2D``, so ``N / D`` is lifelines' C-index.

The paired bootstrap resamples rows with replacement, the same rows for both models. On up to
:data:`EXACT_MAX_ROWS` rows it recomputes both C-indices on every resample exactly
(``k' H k`` with the pair matrices). Beyond, it uses the first-order (Hajek) expansion of the
resampled U-statistics, ``N* = N + sum_i (k_i - 1) a_i`` and likewise ``D*`` (``k`` the
multinomial resample counts), which differs from the exact resample by ``O(1/n)`` and whose spread is
the U-statistic variance of Kang et al. (2015), "Comparing correlated C indices with
right-censored survival outcome: a one-shot nonparametric approach" (R package compareC).
The IPCW Brier difference is a mean of per-row terms (weights from the training rows are held
fixed), so its bootstrap is exact at every size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mlflow_plugin.metrics._checks import (
    UndefinedMetric,
    as_durations,
    as_events,
    as_number,
    as_scores,
    same_length,
)
from mlflow_plugin.metrics._interval import ChampionComparison

__all__ = [
    "EXACT_MAX_ROWS",
    "concordance_contributions",
    "paired_bootstrap",
]

#: Up to this many rows the bootstrap recomputes the C-indices exactly on every resample.
EXACT_MAX_ROWS = 1000
_CHUNK = 25


def _kernel() -> Any:
    """The numba-compiled sweep (compiled on first use, cached on disk)."""
    global _SWEEP
    if _SWEEP is None:
        import numba

        @numba.njit(cache=True)  # type: ignore[misc]
        def sweep(
            order: NDArray[np.int64],
            times: NDArray[np.float64],
            events: NDArray[np.bool_],
            ranks: NDArray[np.int64],
            n_ranks: int,
        ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
            n = order.shape[0]
            conc = np.zeros(n)
            adm = np.zeros(n)
            # Pass 1, times descending: an event as the earlier member of its pairs. The tree
            # holds every row followed longer, and censored rows tied with it.
            tree = np.zeros(n_ranks + 1, dtype=np.int64)
            inserted = 0
            g = n - 1
            while g >= 0:
                start = g
                while start > 0 and times[order[start - 1]] == times[order[g]]:
                    start -= 1
                for p in range(start, g + 1):  # censored rows of the group first
                    i = order[p]
                    if not events[i]:
                        k = ranks[i] + 1
                        while k <= n_ranks:
                            tree[k] += 1
                            k += k & (-k)
                        inserted += 1
                for p in range(start, g + 1):
                    i = order[p]
                    if events[i]:
                        less = 0
                        k = ranks[i]
                        while k > 0:
                            less += tree[k]
                            k -= k & (-k)
                        le = 0
                        k = ranks[i] + 1
                        while k > 0:
                            le += tree[k]
                            k -= k & (-k)
                        conc[i] += less + 0.5 * (le - less)
                        adm[i] += inserted
                for p in range(start, g + 1):
                    i = order[p]
                    if events[i]:
                        k = ranks[i] + 1
                        while k <= n_ranks:
                            tree[k] += 1
                            k += k & (-k)
                        inserted += 1
                g = start - 1
            # Pass 2, times ascending: every row as the later member. The tree holds the events
            # before it (and, for a censored row, the events tied with it).
            tree[:] = 0
            inserted = 0
            g = 0
            while g < n:
                end = g
                while end + 1 < n and times[order[end + 1]] == times[order[g]]:
                    end += 1
                for step in range(3):
                    for p in range(g, end + 1):
                        i = order[p]
                        if step == 1:
                            if events[i]:
                                k = ranks[i] + 1
                                while k <= n_ranks:
                                    tree[k] += 1
                                    k += k & (-k)
                                inserted += 1
                        elif (step == 0) == bool(events[i]):
                            le = 0
                            k = ranks[i] + 1
                            while k > 0:
                                le += tree[k]
                                k -= k & (-k)
                            less = 0
                            k = ranks[i]
                            while k > 0:
                                less += tree[k]
                                k -= k & (-k)
                            conc[i] += (inserted - le) + 0.5 * (le - less)
                            adm[i] += inserted
                g = end + 1
            return conc, adm

        _SWEEP = sweep
    return _SWEEP


_SWEEP: Any = None


def _checked(
    durations: ArrayLike, events: ArrayLike, risk: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.float64]]:
    times = as_durations("durations", durations)
    observed = as_events("events", events)
    scores = as_scores("risk", risk)
    same_length(durations=times, events=observed, risk=scores)
    return times, observed, scores


def concordance_contributions(
    durations: ArrayLike, events: ArrayLike, risk: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per row: the concordant and the admissible pairs it belongs to (either member).

    ``conc.sum() / adm.sum()`` is Harrell's C (lifelines' ``concordance_index(T, -risk, E)``).
    """
    times, observed, scores = _checked(durations, events, risk)
    order = np.argsort(times, kind="stable").astype(np.int64)
    _, ranks = np.unique(scores, return_inverse=True)
    ranks = ranks.astype(np.int64).reshape(-1)
    conc, adm = _kernel()(order, times, observed, ranks, int(ranks.max()) + 1)
    return np.asarray(conc), np.asarray(adm)


def _pair_matrices(
    times: NDArray[np.float64], observed: NDArray[np.bool_], risks: list[NDArray[np.float64]]
) -> tuple[NDArray[np.float64], list[NDArray[np.float64]]]:
    """Admissible-pair matrix ``A[i, j]`` (i earlier, with an event) and, per risk vector, the
    concordance matrix (1 concordant, 0.5 tied risk)."""
    earlier = (times[:, None] < times[None, :]) | (
        (times[:, None] == times[None, :]) & ~observed[None, :]
    )
    adm = (earlier & observed[:, None]).astype(float)
    concs = []
    for r in risks:
        c = (r[:, None] > r[None, :]).astype(float) + 0.5 * (r[:, None] == r[None, :])
        concs.append(adm * c)
    return adm, concs


def _interval(samples: NDArray[np.float64], confidence: float) -> tuple[float, float]:
    alpha = 1.0 - confidence
    lo, hi = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def paired_bootstrap(
    durations: ArrayLike,
    events: ArrayLike,
    candidate_risk: ArrayLike,
    champion_risk: ArrayLike,
    *,
    candidate_brier_terms: ArrayLike | None = None,
    champion_brier_terms: ArrayLike | None = None,
    confidence: float = 0.95,
    resamples: int = 200,
    seed: int = 0,
) -> dict[str, ChampionComparison | UndefinedMetric]:
    """``c_index`` (and ``brier`` when the per-row IPCW terms are given): candidate minus
    champion on the same rows, with a percentile paired-bootstrap interval.

    Returns:
        metric -> :class:`ChampionComparison`, or :class:`UndefinedMetric` when the difference
        cannot be estimated (no admissible pair).

    Raises:
        ValueError: bad input, named.
    """
    times, observed, r1 = _checked(durations, events, candidate_risk)
    r2 = as_scores("champion_risk", champion_risk)
    same_length(durations=times, champion_risk=r2)
    level = as_number("confidence", confidence, lo=0.5, hi=0.999)
    b = int(as_number("resamples", resamples, lo=20, hi=100000))
    n = len(times)
    rng = np.random.default_rng(seed)
    out: dict[str, ChampionComparison | UndefinedMetric] = {}
    brier: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None
    if candidate_brier_terms is not None and champion_brier_terms is not None:
        b1 = as_scores("candidate_brier_terms", candidate_brier_terms)
        b2 = as_scores("champion_brier_terms", champion_brier_terms)
        same_length(durations=times, candidate_brier_terms=b1, champion_brier_terms=b2)
        brier = (b1, b2)
    exact = n <= EXACT_MAX_ROWS
    c_samples = np.empty(b)
    b_samples = np.empty(b)
    if exact:
        adm, (h1, h2) = _pair_matrices(times, observed, [r1, r2])
        d0 = float(adm.sum())
        if d0 == 0:
            c_samples[:] = np.nan
        for start in range(0, b, _CHUNK):
            stop = min(b, start + _CHUNK)
            k = np.stack(
                [np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(start, stop)]
            ).astype(float)
            if d0 > 0:
                d = ((k @ adm) * k).sum(axis=1)  # k' A k per resample, by BLAS
                n1 = ((k @ h1) * k).sum(axis=1)
                n2 = ((k @ h2) * k).sum(axis=1)
                with np.errstate(invalid="ignore", divide="ignore"):
                    c_samples[start:stop] = (n1 - n2) / d
            if brier is not None:
                b_samples[start:stop] = k @ (brier[0] - brier[1]) / k.sum(axis=1)
        point_c = float((h1.sum() - h2.sum()) / d0) if d0 > 0 else float("nan")
        method = "exact paired bootstrap"
    else:
        conc1, adm1 = concordance_contributions(times, observed, r1)
        conc2, _ = concordance_contributions(times, observed, r2)
        n1, n2, d0 = conc1.sum() / 2, conc2.sum() / 2, adm1.sum() / 2
        point_c = float((n1 - n2) / d0) if d0 > 0 else float("nan")
        columns = [conc1, conc2, adm1, np.ones(n)]
        if brier is not None:
            columns.append(brier[0] - brier[1])
        v = np.column_stack(columns)
        totals = v.sum(axis=0)
        s = np.empty((b, v.shape[1]))
        for j in range(b):  # multinomial resample counts k; s = sum_i (k_i - 1) v_i
            k = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
            s[j] = k @ v - totals
        with np.errstate(invalid="ignore", divide="ignore"):
            c_samples[:] = (n1 + s[:, 0]) / (d0 + s[:, 2]) - (n2 + s[:, 1]) / (d0 + s[:, 2])
        if brier is not None:
            b_samples[:] = (totals[4] + s[:, 4]) / (n + s[:, 3])
        method = "first-order paired bootstrap"
    if d0 > 0 and np.isfinite(c_samples).sum() >= b // 2:
        lo, hi = _interval(c_samples[np.isfinite(c_samples)], level)
        out["c_index"] = ChampionComparison("c_index", point_c, lo, hi, level, b, n, method)
    else:
        out["c_index"] = UndefinedMetric(
            "c_index_vs_champion", "no admissible pair among the rows both models are scored on"
        )
    if brier is not None:
        point_b = float(np.mean(brier[0] - brier[1]))
        lo, hi = _interval(b_samples, level)
        out["brier"] = ChampionComparison("brier", point_b, lo, hi, level, b, n, method)
    return out
