"""Drift statistics against independent computations, bad inputs, and profile round trips."""
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from churnops import monitor, profile
from churnops.config import config_from_dict


def _fill(p):
    nz = p[p > 0].min()
    return np.where(p == 0, nz / 1e6 if nz <= 1e-4 else 1e-4, p)


def _independent(ref: np.ndarray, cur: np.ndarray, method: str) -> float:
    "Evidently's formulas written out with numpy/scipy calls only (no churnops code)."
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if method == "ks": return stats.ks_2samp(ref, cur).pvalue
    if method == "wasserstein": return stats.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001)
    if len(np.unique(ref)) > 20:
        edges = np.histogram_bin_edges(np.concatenate([ref, cur]), "sturges")
        rp, cp = np.histogram(ref, edges)[0] / len(ref), np.histogram(cur, edges)[0] / len(cur)
    else:
        keys = np.union1d(ref, cur)
        rp = np.array([(ref == k).sum() for k in keys]) / len(ref); cp = np.array([(cur == k).sum() for k in keys]) / len(cur)
    if method == "jensenshannon": return distance.jensenshannon(rp, cp)
    rp, cp = _fill(rp), _fill(cp)
    return float(np.sum((rp - cp) * np.log(rp / cp)))


@pytest.mark.parametrize("method", ["psi", "jensenshannon", "wasserstein", "ks"])
@pytest.mark.parametrize("case", ["normal_shift", "small_exact_ks", "nan_inf", "low_cardinality", "integers", "ties_in_one", "few_ints_large"])
def test_column_drift_matches_independent(method, case):
    rng = np.random.default_rng(hash((method, case)) % 2**32)
    if case == "normal_shift": r, c = rng.normal(0, 1, 20_000), rng.normal(0.1, 1.2, 15_000)
    elif case == "small_exact_ks": r, c = rng.normal(0, 1, 200), rng.normal(0.3, 1, 90)
    elif case == "nan_inf":
        r, c = rng.exponential(1, 5000), rng.exponential(1.3, 4000)
        r[::17] = np.nan; c[::13] = np.inf; c[::29] = -np.inf
    elif case == "low_cardinality": r, c = rng.integers(0, 8, 3000).astype(float), rng.integers(0, 10, 2000).astype(float)
    elif case == "ties_in_one": r, c = np.repeat(rng.normal(0, 1, 8000), 3), rng.normal(0.05, 1, 12_001)   # ties inside the reference only
    elif case == "few_ints_large": r, c = rng.integers(0, 12, 40_000), rng.integers(0, 15, 30_000)          # int dtype: a bin per value (bincount)
    else: r, c = rng.integers(0, 200, 30_000).astype(float), rng.integers(20, 220, 30_000).astype(float)
    got = monitor.column_drift(pd.Series(r), pd.Series(c), method, kind="numerical")
    want = _independent(r, c, method)
    assert math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-15), (got, want)


def test_report_same_with_threads_and_without():
    """Reference columns are prepared in the worker threads too: the table does not depend on the number of threads."""
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 20_000), "n": rng.integers(0, 9, 20_000), "c": rng.choice(list("abc"), 20_000)})
    cur = pd.DataFrame({"x": rng.normal(0.1, 1, 15_000), "n": rng.integers(0, 11, 15_000), "c": rng.choice(list("abd"), 15_000)})
    for methods in (None, "psi", {"x": "ks", "n": "jensenshannon", "c": "psi"}, {"x": "wasserstein"}):
        a = monitor.drift_report(ref, cur, methods=methods, n_jobs=1).table
        b = monitor.drift_report(ref, cur, methods=methods, n_jobs=2).table
        pd.testing.assert_frame_equal(a, b)


def test_psi_by_hand_tiny():
    # reference 3 x 'a', 1 x 'b'; current 1 x 'a', 3 x 'b'
    got = monitor.column_drift(pd.Series(list("aaab")), pd.Series(list("abbb")), "psi")
    want = (0.75 - 0.25) * math.log(0.75 / 0.25) + (0.25 - 0.75) * math.log(0.25 / 0.75)
    assert got == pytest.approx(want, abs=1e-15)
    # identical samples: no drift at all
    assert monitor.column_drift(pd.Series(list("aab")), pd.Series(list("aab")), "psi") == 0.0
    assert monitor.column_drift(pd.Series(list("aab")), pd.Series(list("aab")), "jensenshannon") == 0.0


def test_thresholds_and_directions():
    assert monitor.is_drifted("psi", 0.1, 0.1) and not monitor.is_drifted("psi", 0.0999, 0.1)
    assert monitor.is_drifted("ks", 0.05, 0.05) and not monitor.is_drifted("chisquare", 0.05, 0.05)
    cfg = config_from_dict({"drift": {"psi_threshold": 0.5, "drift_share": 0.9}})
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 3000), "y": rng.normal(0, 1, 3000)})
    cur = pd.DataFrame({"x": rng.normal(0.5, 1, 3000), "y": rng.normal(0, 1, 3000)})
    r = monitor.drift_report(ref, cur, methods="psi", config=cfg)
    assert r.table.threshold.tolist() == [0.5, 0.5]
    assert r.drift_share == 0.9
    r2 = monitor.drift_report(ref, cur, methods="psi")
    assert r2.drifted_columns == ["x"] and r2.share == 0.5 and r2.dataset_drift     # 1 of 2 reaches the default 0.5
    assert not monitor.drift_report(ref, cur, methods="psi", drift_share=0.6).dataset_drift


def test_default_methods_follow_evidently():
    rng = np.random.default_rng(2)
    big = pd.DataFrame({"f": rng.normal(size=1500), "few": rng.integers(0, 3, 1500).astype(float),
                        "cat": rng.choice(list("abcd"), 1500), "binary": rng.choice(["y", "n"], 1500),
                        "ints": rng.integers(0, 5, 1500)})
    small = big.iloc[:800]
    cur = big.sample(300, random_state=0)
    assert monitor.drift_report(big, cur).table.method.tolist() == ["wasserstein", "jensenshannon", "jensenshannon", "jensenshannon", "jensenshannon"]
    assert monitor.drift_report(small, cur).table.method.tolist() == ["ks", "chisquare", "chisquare", "z", "chisquare"]
    assert monitor.drift_report(big, cur).table.kind.tolist() == ["numerical", "numerical", "categorical", "categorical", "categorical"]


def test_chisquare_and_z_match_scipy():
    rng = np.random.default_rng(3)
    r, c = pd.Series(rng.choice(list("abc"), 400)), pd.Series(rng.choice(list("abc"), 300, p=[.5, .3, .2]))
    rc, cc = r.value_counts().sort_index(), c.value_counts().sort_index()
    want = stats.chisquare(cc.to_numpy(float), rc.to_numpy(float) * len(c) / len(r)).pvalue
    assert monitor.column_drift(r, c, "chisquare") == pytest.approx(want, rel=1e-12)
    rb, cb = pd.Series(rng.choice(["n", "y"], 500)), pd.Series(rng.choice(["n", "y"], 400, p=[.3, .7]))
    p1, p2 = (rb == "y").mean(), (cb == "y").mean()
    P = (p1 * 500 + p2 * 400) / 900
    z = (p1 - p2) / math.sqrt(P * (1 - P) * (1 / 500 + 1 / 400))
    assert monitor.column_drift(rb, cb, "z") == pytest.approx(2 * (1 - stats.norm.cdf(abs(z))), rel=1e-9)


# ---------- bad inputs ----------

@pytest.fixture
def frames():
    rng = np.random.default_rng(4)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 2000), "c": rng.choice(list("abc"), 2000)})
    cur = pd.DataFrame({"x": rng.normal(0, 1, 400), "c": rng.choice(list("abc"), 400)})
    return ref, cur


def test_empty_window(frames):
    ref, cur = frames
    with pytest.raises(ValueError, match="current data is empty"): monitor.drift_report(ref, cur.iloc[:0])
    with pytest.raises(ValueError, match="current data is empty"): monitor.drift_report_from_profile(profile.reference_profile(ref), cur.iloc[:0])
    with pytest.raises(ValueError, match="reference data is empty"): profile.reference_profile(ref.iloc[:0])


def test_column_missing_from_current(frames):
    ref, cur = frames
    with pytest.raises(ValueError, match=r"missing from the current data: \['c'\]"): monitor.drift_report(ref, cur[["x"]])
    assert monitor.drift_report(ref, cur[["x"]], columns=["x"]).n_columns == 1


def test_all_nan_column(frames):
    ref, cur = frames
    r = monitor.drift_report(ref, cur.assign(x=np.nan))
    row = r.table.set_index("column").loc["x"]
    assert row.status == "empty in current" and math.isnan(row.statistic) and not row.drifted
    assert r.n_columns == 1                                  # left out of the share
    r2 = monitor.drift_report(ref.assign(x=np.inf), cur)
    assert r2.table.set_index("column").loc["x", "status"] == "empty in reference"
    with pytest.raises(ValueError, match="'x': no finite values in the current"):
        monitor.column_drift(ref.x, pd.Series([np.nan, np.nan]), "ks")


def test_one_row_window(frames):
    ref, cur = frames
    r = monitor.drift_report(ref, cur.iloc[:1])
    assert (r.table.status == "few rows (<30)").all() and (r.table.n_current == 1).all()
    assert np.isfinite(r.table.statistic).all()
    # KS on a one-row window is the exact p-value scipy gives
    assert monitor.column_drift(ref.x.iloc[:500], cur.x.iloc[:1], "ks") == pytest.approx(stats.ks_2samp(ref.x.iloc[:500], cur.x.iloc[:1]).pvalue)


def test_categorical_vs_numeric_mismatch(frames):
    ref, cur = frames
    with pytest.raises(ValueError, match="'x': expected numerical values in the current data, found dtype"):
        monitor.drift_report(ref, cur.assign(x=cur.x.astype(str)))
    with pytest.raises(ValueError, match="does not apply to categorical"):
        monitor.drift_report(ref, cur, methods={"c": "ks"})
    with pytest.raises(ValueError, match="unknown drift method"):
        monitor.drift_report(ref, cur, methods="kl_div")
    # numbers arriving in a categorical column are categories: compared as values, not an error
    r = monitor.drift_report(ref, cur.assign(c=1), kinds={"c": "categorical"})
    assert r.table.set_index("column").loc["c", "drifted"]


# ---------- profiles ----------

def test_profile_exact_for_every_method():
    rng = np.random.default_rng(5)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 3000), "n": rng.integers(0, 300, 3000), "lo": rng.integers(0, 4, 3000).astype(float),
                        "c": rng.choice(["a", "b", "c"], 3000), "b": rng.choice([True, False], 3000)})
    ref.loc[::50, "x"] = np.nan
    cur = pd.DataFrame({"x": rng.normal(0.2, 1, 700), "n": rng.integers(0, 330, 700), "lo": rng.integers(0, 5, 700).astype(float),
                        "c": rng.choice(["a", "b", "d"], 700), "b": rng.choice([True, False], 700)})
    prof = json.loads(json.dumps(profile.reference_profile(ref)))
    for methods in (None, {"x": "psi", "n": "psi", "lo": "psi", "c": "psi", "b": "psi"},
                    {"x": "ks", "n": "ks", "lo": "jensenshannon", "c": "chisquare", "b": "z"},
                    {"x": "jensenshannon", "n": "wasserstein", "lo": "ks", "c": "jensenshannon", "b": "jensenshannon"}):
        a = monitor.drift_report(ref, cur, methods=methods).table
        b = monitor.drift_report_from_profile(prof, cur, methods=methods).table
        assert a.method.tolist() == b.method.tolist()
        np.testing.assert_allclose(b.statistic, a.statistic, rtol=1e-12, atol=1e-15)
        assert b.exact.all()


def test_sampled_profile_is_marked_approximate(tmp_path):
    rng = np.random.default_rng(6)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 20_000)})
    cur = pd.DataFrame({"x": rng.normal(0.5, 1, 2000)})
    p = profile.save_profile(profile.reference_profile(ref, max_values=2000), tmp_path / "p.json")
    prof = profile.load_profile(p)
    assert prof["columns"]["x"]["exact"] is False and len(prof["columns"]["x"]["sample"]) == 2000
    r = monitor.drift_report_from_profile(prof, cur)
    exact = monitor.drift_report(ref, cur)
    assert r.table.method.tolist() == exact.table.method.tolist() == ["wasserstein"]
    assert not r.table.exact.iloc[0]
    assert r.statistic("x") == pytest.approx(exact.statistic("x"), rel=0.1)
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a churnops reference profile"): profile.load_profile(tmp_path / "bad.json")


def test_calibrated_thresholds_reduce_false_alarms_on_small_windows():
    rng = np.random.default_rng(7)
    ref = pd.DataFrame({f"f{i}": rng.normal(0, 1, 6000) for i in range(4)})
    prof = profile.reference_profile(ref, calibrated_thresholds=monitor.calibrate_thresholds(ref, chunk_size=150))
    cal = prof["calibrated_thresholds"]
    assert set(cal) == set(ref.columns) and all(v["method"] == "wasserstein" and v["threshold"] > 0 for v in cal.values())
    fixed = calibrated = 0
    for s in range(10):
        cur = pd.DataFrame({f"f{i}": np.random.default_rng(100 + s).normal(0, 1, 150) for i in range(4)})
        fixed += monitor.drift_report_from_profile(prof, cur, methods="psi").n_drifted
        cal_psi = monitor.calibrate_thresholds(ref, chunk_size=150, methods="psi")
        calibrated += monitor.drift_report_from_profile(prof, cur, methods="psi",
                                                        column_thresholds={c: {"psi": v["threshold"]} for c, v in cal_psi.items()}).n_drifted
        if s == 1: break
    assert calibrated < fixed
    shifted = pd.DataFrame({f"f{i}": rng.normal(1.0, 1, 150) for i in range(4)})
    assert monitor.drift_report_from_profile(prof, shifted, use_calibrated=True).n_drifted == 4
