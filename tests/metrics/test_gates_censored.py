"""IPCW outcomes at a horizon, the horizon rules, the concordance contributions and the
paired bootstrap, against scikit-survival and lifelines on their own public data sets."""

from __future__ import annotations

import numpy as np
import pytest
from lifelines.datasets import load_dd, load_kidney_transplant, load_rossi
from lifelines.utils import concordance_index
from sksurv.datasets import load_gbsg2, load_whas500
from sksurv.metrics import brier_score, concordance_index_censored
from sksurv.util import Surv

from mlflow_plugin import metrics
from mlflow_plugin.metrics._compare import _pair_matrices, paired_bootstrap


def _kidney():
    k = load_kidney_transplant()
    return k["time"].to_numpy(float), k["death"].to_numpy(bool), k


def _sksurv_sets():
    out = []
    for loader, event, time in ((load_whas500, "fstat", "lenfol"), (load_gbsg2, "cens", "time")):
        X, y = loader()
        out.append((loader.__name__, y[time].astype(float), y[event].astype(bool), X))
    return out


class TestIPCWBrier:
    def test_equals_scikit_survival_on_kidney_transplant_folds(self):
        """Four random folds of kidney_transplant, censoring from the other rows: the IPCW
        Brier of at_horizon equals sksurv.metrics.brier_score to 1e-6."""
        t, e, _ = _kidney()
        rng = np.random.default_rng(0)
        folds = np.array_split(rng.permutation(len(t)), 4)
        horizon = 1000.0
        for test in folds:
            train = np.setdiff1d(np.arange(len(t)), test)
            p = rng.random(len(test))
            at = metrics.at_horizon(
                t[test], e[test], horizon, train_durations=t[train], train_events=e[train]
            )
            _, ref = brier_score(
                Surv.from_arrays(e[train], t[train]),
                Surv.from_arrays(e[test], t[test]),
                1 - p,
                horizon,
            )
            assert at.brier(p) == pytest.approx(float(ref[0]), abs=1e-6)

    def test_censored_before_the_horizon_is_never_a_negative(self):
        t = np.array([1.0, 2.0, 3.0, 5.0, 6.0, 7.0])
        e = np.array([1, 0, 1, 0, 1, 0], bool)
        at = metrics.at_horizon(t, e, 4.0, train_durations=t, train_events=e)
        assert at.labels.tolist() == [1, -1, 1, 0, 0, 0]
        assert at.weights[1] == 0 and at.n_censored == 1 and at.n_used == 5
        # predicting "event" for the censored row changes no count
        a = at.classification(np.array([1, 0, 1, 0, 0, 0]))
        b = at.classification(np.array([1, 1, 1, 0, 0, 0]))
        assert a == b and a["precision"] == 1.0

    def test_kidney_event_share_is_kaplan_meiers_not_the_kept_rows(self):
        """The issue's numbers: the kept rows' event share is far above Kaplan-Meier's; the
        IPCW share is close to it."""
        t, e, _ = _kidney()
        horizon = float(np.quantile(t, 0.9))
        at = metrics.at_horizon(t, e, horizon, train_durations=t, train_events=e)
        kept = at.labels >= 0
        naive = at.labels[kept].mean()
        assert naive > 2 * at.km_event_share
        assert at.event_share() == pytest.approx(at.km_event_share, abs=0.03)

    def test_all_positive_predictor_is_the_baseline(self):
        """An all-positive model gets exactly the trivial baseline (rossi: F1 = 2π/(1+π))."""
        r = load_rossi()
        t, e = r["week"].to_numpy(float), r["arrest"].to_numpy(bool)
        at = metrics.at_horizon(t, e, 40.0, train_durations=t, train_events=e)
        got = at.classification(np.ones(len(t)))
        base = at.baselines()
        pi = at.event_share()
        assert got["f1"] == pytest.approx(base["f1"]) == pytest.approx(2 * pi / (1 + pi))
        assert got["precision"] == pytest.approx(base["precision"])


class TestUndefined:
    def test_horizon_at_or_beyond_follow_up(self):
        """rossi's follow-up ends at 52: horizon 60 (and 52) are undefined, never a pass."""
        r = load_rossi()
        t, e = r["week"].to_numpy(float), r["arrest"].to_numpy(bool)
        for h in (52.0, 60.0):
            with pytest.raises(metrics.UndefinedMetric, match="beyond the end of these rows"):
                metrics.at_horizon(t, e, h, train_durations=t, train_events=e)

    def test_every_training_row_censored(self):
        t = np.array([1.0, 2, 3])
        with pytest.raises(metrics.UndefinedMetric, match="every training row is censored"):
            metrics.at_horizon(
                t, np.array([1, 0, 0], bool), 2.0, train_durations=t, train_events=np.zeros(3, bool)
            )

    def test_horizon_beyond_the_training_follow_up(self):
        t = np.array([1.0, 2, 3, 10, 12])
        e = np.array([1, 1, 0, 1, 0], bool)
        with pytest.raises(metrics.UndefinedMetric, match="training rows"):
            metrics.at_horizon(t, e, 8.0, train_durations=t[:3], train_events=e[:3])

    def test_single_class_is_undefined(self):
        t = np.array([5.0, 6, 7, 8])
        e = np.zeros(4, bool)
        at = metrics.at_horizon(t, e, 2.0, train_durations=t, train_events=np.ones(4, bool))
        out = at.classification(np.array([1, 0, 1, 0]))
        assert all(isinstance(v, metrics.UndefinedMetric) for v in out.values())
        assert "one class" in out["f1"].reason
        assert all(
            isinstance(at.baselines()[k], metrics.UndefinedMetric) for k in ("f1", "precision")
        )

    def test_no_predicted_positive_is_undefined_precision(self):
        t = np.array([1.0, 2, 7, 8])
        e = np.array([1, 1, 0, 1], bool)
        at = metrics.at_horizon(t, e, 5.0, train_durations=t, train_events=e)
        out = at.classification(np.zeros(4))
        assert isinstance(out["precision"], metrics.UndefinedMetric)
        assert out["recall"] == 0.0


class TestHorizon:
    def test_auto_horizon_lies_inside_every_set(self):
        """dd ordered by start_year: the latest fifth of the rows is followed for a few years
        only; the automatic horizon lies inside their follow-up."""
        dd = load_dd().sort_values("start_year", kind="stable")
        d = dd["duration"].to_numpy(float)
        holdout = d[-len(d) // 5 :]
        h = metrics.auto_horizon(d[: -len(d) // 5], [holdout])
        assert 0 < h < holdout.max()
        assert h <= np.quantile(holdout, 0.9)

    def test_explicit_horizon_outside_names_the_range(self):
        with pytest.raises(ValueError, match=r"choose a value in \(0, 5\)"):
            metrics.check_horizon(9.0, [np.array([1.0, 5.0]), np.array([2.0, 8.0])])
        assert metrics.check_horizon(4.0, [np.array([1.0, 5.0])]) == 4.0


DATASETS = ["rossi", "kidney", "whas500", "gbsg2"]


def _dataset(name: str):
    if name == "rossi":
        r = load_rossi()
        X = r.drop(columns=["week", "arrest"])
        return r["week"].to_numpy(float), r["arrest"].to_numpy(bool), X
    if name == "kidney":
        t, e, k = _kidney()
        return t, e, k.drop(columns=["time", "death"])
    for label, t, e, X in _sksurv_sets():
        if name in label:
            return t, e, X
    raise KeyError(name)


class TestConcordance:
    @pytest.mark.parametrize("name", DATASETS)
    def test_contributions_sum_to_lifelines_and_sksurv(self, name):
        t, e, X = _dataset(name)
        rng = np.random.default_rng(1)
        numeric = X.select_dtypes("number").to_numpy(float)
        risk = numeric @ rng.normal(size=numeric.shape[1])
        risk = np.round(risk, 1)  # ties in risk count one half
        conc, adm = metrics.concordance_contributions(t, e, risk)
        c = conc.sum() / adm.sum()
        assert c == pytest.approx(concordance_index(t, -risk, e), abs=1e-12)
        assert c == pytest.approx(concordance_index_censored(e, t, risk)[0], abs=1e-12)

    def test_contributions_are_the_pair_matrix_margins(self):
        rng = np.random.default_rng(2)
        t = rng.integers(1, 15, 200).astype(float)  # many ties in time
        e = rng.random(200) < 0.6
        r = rng.integers(0, 6, 200).astype(float)  # many ties in risk
        conc, adm = metrics.concordance_contributions(t, e, r)
        A, (H,) = _pair_matrices(t, e, [r])
        np.testing.assert_allclose(conc, H.sum(0) + H.sum(1))
        np.testing.assert_allclose(adm, A.sum(0) + A.sum(1))


class TestPairedBootstrap:
    def test_same_model_has_a_zero_interval(self):
        t, e, X = _dataset("rossi")
        risk = X["prio"].to_numpy(float)
        out = paired_bootstrap(t, e, risk, risk)
        c = out["c_index"]
        assert (c.delta, c.ci_low, c.ci_high) == (0.0, 0.0, 0.0)

    def test_first_order_matches_the_exact_bootstrap(self, monkeypatch):
        """On whas500 the first-order (Hajek) paired bootstrap and the exact paired bootstrap
        give the same point difference and about the same interval."""
        import mlflow_plugin.metrics._compare as cmp

        t, e, X = _dataset("whas500")
        a = X["age"].to_numpy(float)
        b = X["bmi"].to_numpy(float) * -1
        exact = paired_bootstrap(t, e, a, b, resamples=400, seed=1)["c_index"]
        monkeypatch.setattr(cmp, "EXACT_MAX_ROWS", 10)
        approx = paired_bootstrap(t, e, a, b, resamples=400, seed=1)["c_index"]
        assert exact.method.startswith("exact") and approx.method.startswith("first-order")
        assert approx.delta == pytest.approx(exact.delta, abs=1e-12)
        width_exact, width_approx = exact.ci_high - exact.ci_low, approx.ci_high - approx.ci_low
        assert width_approx == pytest.approx(width_exact, rel=0.2)
        ref = concordance_index(t, -a, e) - concordance_index(t, -b, e)
        assert exact.delta == pytest.approx(ref, abs=1e-12)

    def test_brier_difference_and_interval(self):
        t, e, _ = _kidney()
        at = metrics.at_horizon(t, e, 1000.0, train_durations=t, train_events=e)
        p1 = np.full(len(t), at.km_event_share)
        p2 = np.full(len(t), 0.5)
        b1, b2 = at.brier_terms(p1), at.brier_terms(p2)
        out = paired_bootstrap(
            t, e, p1, p2, candidate_brier_terms=b1, champion_brier_terms=b2, seed=3
        )
        c = out["brier"]
        assert c.delta == pytest.approx(at.brier(p1) - at.brier(p2))
        assert c.ci_low <= c.delta <= c.ci_high < 0  # the prevalence beats a coin clearly

    def test_no_admissible_pair_is_undefined(self):
        t = np.array([1.0, 2, 3])
        e = np.zeros(3, bool)
        out = paired_bootstrap(t, e, np.array([1.0, 2, 3]), np.array([3.0, 2, 1]))
        assert isinstance(out["c_index"], metrics.UndefinedMetric)
