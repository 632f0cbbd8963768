"""Declared features: no leakage (property test) and agreement with a plain per-row reference, on two random worlds —
the simulator's shape and one that shares no name with it (see tests/worlds_features.py)."""
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from churnops import features as F
from churnops.tracking import TRUSTED_TYPES
from worlds_features import DATES, WORLDS, perturb_future

pytestmark = pytest.mark.filterwarnings("ignore:labels for as_of")   # the last date's labels are censored on purpose here


@pytest.mark.parametrize("kind", sorted(WORLDS))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(world=st.integers(0, 10_000), noise=st.integers(0, 10_000), which=st.integers(0, len(DATES) - 1))
def test_future_events_do_not_change_features(kind, world, noise, which):
    make, decl, _ = WORLDS[kind]
    tables = make(world)
    as_of = DATES[which]
    before = F.build_features(tables, [as_of], decl)
    assume(len(before) > 0)                                   # nobody active yet: nothing to compare
    after = F.build_features(perturb_future(tables, decl, as_of, noise), [as_of], decl)
    pd.testing.assert_frame_equal(before, after)


@pytest.mark.parametrize("kind", sorted(WORLDS))
def test_leakage_test_can_fail(kind):
    """The same comparison detects a change strictly before as_of (so the property test is not vacuous)."""
    make, decl, _ = WORLDS[kind]
    tables, as_of = make(3), DATES[2]
    before = F.build_features(tables, [as_of], decl)
    name = "transactions" if kind == "sim" else "payments"
    col, tc = ("amount", "event_timestamp") if kind == "sim" else ("amount_usd", "paid_at")
    df = tables[name]
    past = df.index[(df[tc] < as_of) & (df[tc] >= as_of - pd.Timedelta(days=30))][0]
    df.loc[past, col] += 1000
    with pytest.raises(AssertionError):
        pd.testing.assert_frame_equal(before, F.build_features(tables, [as_of], decl))


@pytest.mark.parametrize("kind", sorted(WORLDS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_features_match_reference(kind, seed):
    make, decl, reference = WORLDS[kind]
    tables = make(seed)
    got = F.build_training_set(tables, DATES, declaration=decl)
    key, cats = decl.entity.key, F.categorical_columns(decl)
    assert len(got) > 0 and got["is_churned"].isin([0, 1]).all()
    for _, g in got.iterrows():
        ref = reference(tables, g[key], g["as_of"])
        assert sorted(ref) == sorted(F.feature_columns(decl))
        for col in F.feature_columns(decl):
            a, b = g[col], ref[col]
            if col in cats:
                assert (pd.isna(a) and pd.isna(b)) or a == b, (kind, seed, g[key], g["as_of"], col, a, b)
            else:
                assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-9), (kind, seed, g[key], g["as_of"], col, a, b)
    assert not np.isinf(got[F.numeric_columns(decl)].to_numpy(dtype=float)).any()


@pytest.mark.parametrize("kind", sorted(WORLDS))
def test_population_and_labels_match_reference(kind):
    make, decl, _ = WORLDS[kind]
    tables = make(5, n=30)
    key, pop, lab = decl.entity.key, decl.population, decl.label
    got = F.label_frame(tables, DATES, declaration=decl)
    since = pd.to_datetime(tables[pop.table].set_index(key)[pop.since], utc=True, format="mixed")
    ends = tables[lab.table].groupby(key)[decl.tables[lab.table].time].min()
    expected = []
    for t in DATES:
        for k in since.index:
            c = ends.get(k)
            if since[k] < t and (c is None or c > t):
                expected.append((k, t, int(c is not None and c <= t + pd.Timedelta(days=lab.horizon_days))))
    assert sum(e[2] for e in expected) > 0
    assert [(getattr(r, key), r.as_of, r.is_churned) for r in got.itertuples()] == sorted(expected, key=lambda r: (r[1], r[0]))


def test_unseen_categories_and_skops_roundtrip():
    import skops.io as sio
    make, decl, _ = WORLDS["members"]
    ts = F.build_training_set(make(7), DATES, declaration=decl)
    num, cat = F.numeric_columns(decl), F.categorical_columns(decl)
    pre = F.make_preprocessor(num, cat).fit(ts[num + cat])
    new = ts[num + cat].head(3).copy()
    new["tier"] = ["never-seen", None, "free"]
    new["plays_track_latest"] = "t-unknown"
    z = pre.transform(new)
    assert z.shape[0] == 3 and np.isfinite(z).all()
    blob = sio.dumps(pre)
    assert set(sio.get_untrusted_types(data=blob)) <= set(TRUSTED_TYPES)
    np.testing.assert_allclose(sio.loads(blob, trusted=TRUSTED_TYPES).transform(new), z)
