"""Statistics of churnops.validate checked against independent references: scipy, sklearn and textbook numbers."""
import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from churnops import validate as V
from churnops import metrics


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(42)
    n = 1500
    y = rng.binomial(1, 0.3, n)
    s = y + rng.normal(0, 1, n)
    p_a = 1 / (1 + np.exp(-(2 * s - 1)))
    p_b = 1 / (1 + np.exp(-(s + rng.normal(0, 1.2, n) - 0.5)))
    return y, p_a, p_b


def test_weighted_metrics_match_sklearn_with_bootstrap_counts(pair):
    y, p, _ = pair
    p = p.round(2)  # ties
    w = np.bincount(np.random.default_rng(0).integers(0, len(y), len(y)), minlength=len(y)).astype(float)
    got = metrics.weighted_metrics(y, p, 0.4, w)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p, sample_weight=w), abs=1e-12)
    assert got["pr_auc"] == pytest.approx(skm.average_precision_score(y, p, sample_weight=w), abs=1e-12)
    assert got["brier"] == pytest.approx(skm.brier_score_loss(y, p, sample_weight=w), abs=1e-12)
    assert got["f1"] == pytest.approx(skm.f1_score(y, p >= 0.4, sample_weight=w), abs=1e-12)


def test_weighted_metrics_agree_with_training_metrics(pair):
    from churnops import train
    y, p, _ = pair
    ref = metrics.classification_metrics(y, p, 0.37)
    got = metrics.weighted_metrics(y, p, 0.37)
    for k in ["accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "log_loss", "brier", "precision_at_recall_80"]:
        assert got[k] == pytest.approx(ref[k], abs=1e-9), k


def test_paired_bootstrap_matches_scipy_bootstrap(pair):
    """For accuracy the difference is a mean of per-row differences: scipy's paired percentile bootstrap is a reference."""
    y, p_a, p_b = pair
    t_a, t_b = 0.5, 0.45
    ours = V.paired_bootstrap(y, p_a, p_b, t_a, t_b, n_resamples=4000, seed=1, metrics=["accuracy", "brier"])
    d_acc = ((p_a >= t_a) == y).astype(float) - ((p_b >= t_b) == y).astype(float)
    d_brier = (p_a - y) ** 2 - (p_b - y) ** 2
    for metric, d in [("accuracy", d_acc), ("brier", d_brier)]:
        ref = stats.bootstrap((d,), np.mean, n_resamples=4000, method="percentile", random_state=7).confidence_interval
        row = ours.loc[metric]
        assert row["diff"] == pytest.approx(d.mean(), abs=1e-12)
        se = d.std(ddof=1) / math.sqrt(len(d))
        # Monte-Carlo error of a 2.5% quantile with 4000 resamples is ~0.05 SE; allow 0.15 SE
        assert row["ci_low"] == pytest.approx(ref.low, abs=0.15 * se)
        assert row["ci_high"] == pytest.approx(ref.high, abs=0.15 * se)
        # and both agree with the normal-theory interval to within 0.2 SE
        assert row["ci_low"] == pytest.approx(d.mean() - 1.959964 * se, abs=0.2 * se)


def test_paired_bootstrap_auc_interval_is_paired(pair):
    """The paired interval of an AUC difference is narrower than combining two independent intervals."""
    y, p_a, p_b = pair
    cmp = V.paired_bootstrap(y, p_a, p_b, n_resamples=1000, seed=0, metrics=["roc_auc"]).loc["roc_auc"]
    assert cmp["diff"] == pytest.approx(skm.roc_auc_score(y, p_a) - skm.roc_auc_score(y, p_b), abs=1e-12)
    assert cmp["ci_low"] < cmp["diff"] < cmp["ci_high"]
    rng = np.random.default_rng(5)
    aucs = []
    for _ in range(150):
        i = rng.integers(0, len(y), len(y)); j = rng.integers(0, len(y), len(y))
        aucs.append(skm.roc_auc_score(y[i], p_a[i]) - skm.roc_auc_score(y[j], p_b[j]))
    unpaired = np.quantile(aucs, [0.025, 0.975])
    assert cmp["ci_high"] - cmp["ci_low"] < unpaired[1] - unpaired[0]
    assert cmp["decision"] == "better"


def test_paired_bootstrap_is_seeded(pair):
    y, p_a, p_b = pair
    a = V.paired_bootstrap(y, p_a, p_b, n_resamples=200, seed=3)
    b = V.paired_bootstrap(y, p_a, p_b, n_resamples=200, seed=3)
    c = V.paired_bootstrap(y, p_a, p_b, n_resamples=200, seed=4)
    assert a.equals(b)
    assert not a["ci_low"].equals(c["ci_low"])


def test_ztest_matches_chi2_and_textbook():
    r = V.two_proportion_ztest(30, 200, 50, 200)
    assert r["z"] == pytest.approx(-2.5, abs=1e-12)                       # (0.15-0.25)/sqrt(0.2*0.8*0.01)
    assert r["p_value"] == pytest.approx(2 * stats.norm.sf(2.5), abs=1e-15)
    assert r["p_value"] == pytest.approx(0.0124193, abs=1e-7)
    for x1, n1, x2, n2 in [(30, 200, 50, 200), (120, 1000, 90, 1000), (7, 40, 3, 55)]:
        r = V.two_proportion_ztest(x1, n1, x2, n2)
        chi2, p, _, _ = stats.chi2_contingency([[x1, n1 - x1], [x2, n2 - x2]], correction=False)
        assert r["p_value"] == pytest.approx(p, rel=1e-9)
        assert r["z"] ** 2 == pytest.approx(chi2, rel=1e-9)
        se = math.sqrt(x1 / n1 * (1 - x1 / n1) / n1 + x2 / n2 * (1 - x2 / n2) / n2)
        assert r["ci_high"] - r["ci_low"] == pytest.approx(2 * stats.norm.ppf(0.975) * se, rel=1e-12)


def test_power_analysis_textbook_values():
    assert V.sample_size_two_proportions(0.10, 0.15) == 686           # Fleiss, no continuity correction
    assert V.sample_size_two_proportions(0.50, 0.60, alpha=0.05, power=0.80) == 388           # worked by hand: 1.96809**2 / 0.01 = 387.3
    assert V.sample_size_two_proportions(0.10, 0.15, power=0.9) == 918
    # simulated power at the computed n is close to the target
    rng = np.random.default_rng(0)
    n = V.sample_size_two_proportions(0.20, 0.15)
    x1, x2 = rng.binomial(n, 0.20, 4000), rng.binomial(n, 0.15, 4000)
    pooled = (x1 + x2) / (2 * n)
    z = (x1 / n - x2 / n) / np.sqrt(pooled * (1 - pooled) * 2 / n)
    assert np.mean(np.abs(z) > stats.norm.ppf(0.975)) == pytest.approx(0.80, abs=0.025)


def test_assignment_is_sticky_balanced_and_independent():
    shares = {"a": 20, "b": 30, "c": 50}
    v1 = np.array([V.assign_variant("x", i, shares) for i in range(30_000)])
    v2 = np.array([V.assign_variant("y", i, shares) for i in range(30_000)])
    assert (v1 == np.array([V.assign_variant("x", i, shares) for i in range(30_000)])).all()
    for k, s in shares.items():
        assert np.mean(v1 == k) == pytest.approx(s / 100, abs=0.012)
    # independence across experiments: chi-square test of the 3x3 table does not reject
    table = np.array([[np.sum((v1 == a) & (v2 == b)) for b in shares] for a in shares])
    assert stats.chi2_contingency(table)[1] > 0.001
