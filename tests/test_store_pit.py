"""Point-in-time join: the vectorised join against the brute-force loop on random data (ties, ttl edges, time zones, empty views)."""
from datetime import timedelta

import fsspec
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from churnops import store as S
from churnops.files import utc_ns

T0 = pd.Timestamp("2024-01-01", tz="UTC")
H = 3600 * 10**9


def random_case(seed, n_rows, n_ent, n_keys, ttl_h, late_share):
    """Hour-grid timestamps so event ties, created ties and exact ttl edges are frequent."""
    rng = np.random.default_rng(seed)
    ev = rng.integers(0, 48, n_rows) * H
    created = ev + np.where(rng.random(n_rows) < late_share, rng.integers(0, 10, n_rows) * H, 0)
    keys = rng.integers(0, n_keys, n_rows)
    ek = rng.integers(0, n_keys + 1, n_ent)          # some entity keys never appear in the source
    ets = rng.integers(0, 60, n_ent) * H
    # put some entity timestamps exactly at ttl edges of existing rows
    if n_rows:
        pick = rng.random(n_ent) < 0.3
        j = rng.integers(0, n_rows, n_ent)
        ek = np.where(pick, keys[j], ek); ets = np.where(pick, ev[j] + ttl_h * H, ets)
    return keys, ev, created, ek, ets, ttl_h * H


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_rows=st.integers(0, 40), n_ent=st.integers(1, 30), n_keys=st.integers(1, 5),
       ttl_h=st.integers(1, 30), late_share=st.sampled_from([0.0, 0.3, 1.0]), guard=st.booleans(), with_created=st.booleans())
def test_vectorised_equals_bruteforce(seed, n_rows, n_ent, n_keys, ttl_h, late_share, guard, with_created):
    keys, ev, created, ek, ets, ttl = random_case(seed, n_rows, n_ent, n_keys, ttl_h, late_share)
    cr = created if with_created else None
    got = S.pit_indices(ek, ets, keys, ev, cr, ttl, guard)
    ref = S.pit_indices_bruteforce(ek, ets, keys, ev, cr, ttl, guard)
    np.testing.assert_array_equal(got, ref)


def test_bruteforce_comparison_can_fail():
    """A join that ignores ttl disagrees with the reference: the comparison has teeth."""
    keys, ev, created, ek, ets, ttl = random_case(1, 40, 30, 3, 2, 0.3)
    no_ttl = S.pit_indices(ek, ets, keys, ev, created, 10**18, True)
    assert not np.array_equal(no_ttl, S.pit_indices_bruteforce(ek, ets, keys, ev, created, ttl, True))


def _frames(seed, n_rows=60, n_ent=40):
    keys, ev, created, ek, ets, ttl = random_case(seed, n_rows, n_ent, 4, 6, 0.3)
    rng = np.random.default_rng(seed)
    src = pd.DataFrame({"customer_id": keys, "event_timestamp": pd.to_datetime(T0.value + ev, utc=True),
                        "created": pd.to_datetime(T0.value + created, utc=True),
                        "x": rng.normal(size=n_rows), "n": rng.integers(0, 100, n_rows), "c": rng.choice(["a", "b"], n_rows)})
    ent = pd.DataFrame({"customer_id": ek, "event_timestamp": pd.to_datetime(T0.value + ets, utc=True), "row": np.arange(n_ent)})
    return src, ent, ttl


@pytest.mark.parametrize("seed", range(5))
def test_get_historical_features_matches_reference_through_parquet(seed):
    src, ent, ttl = _frames(seed)
    url = f"memory://pit{seed}/src.parquet"
    with fsspec.open(url, "wb") as fh:
        src.to_parquet(fh)
    view = S.FeatureView(name="v", features=[S.Feature(name="x"), S.Feature(name="n", dtype="int64"), S.Feature(name="c", dtype="string")],
                         source=url, ttl=timedelta(microseconds=ttl // 1000))
    ent = pd.concat([ent, ent.iloc[:5]]).sample(frac=1, random_state=seed)      # duplicates, shuffled, index kept
    ent.index = ent.index * 10 + 7
    got = S.get_historical_features(ent, ["v:*"], [view])
    assert list(got.index) == list(ent.index) and list(got["row"]) == list(ent["row"])
    ref = S.pit_indices_bruteforce(ent["customer_id"].to_numpy(), utc_ns(ent["event_timestamp"]), src["customer_id"].to_numpy(),
                                   utc_ns(src["event_timestamp"]), utc_ns(src["created"]), ttl, True)
    for col in ("x", "n", "c"):
        exp = [src[col].iloc[i] if i >= 0 else None for i in ref]
        for a, b in zip(got[col].tolist(), exp):
            assert (b is None and pd.isna(a)) or a == b


def test_time_zones_and_naive_timestamps_are_utc():
    src, ent, ttl = _frames(11)
    view = S.FeatureView(name="v", features=[S.Feature(name="x")], source="unused", ttl=timedelta(microseconds=ttl // 1000))
    base = S.get_historical_features(ent, ["v:x"], [view], sources={"v": src})
    naive = ent.assign(event_timestamp=ent["event_timestamp"].dt.tz_localize(None))       # declared UTC
    tokyo = ent.assign(event_timestamp=ent["event_timestamp"].dt.tz_convert("Asia/Tokyo"))
    src_ny = src.assign(event_timestamp=src["event_timestamp"].dt.tz_convert("America/New_York"),
                        created=src["created"].dt.tz_localize(None))
    for e, s in ((naive, src), (tokyo, src), (ent, src_ny), (naive, src_ny)):
        got = S.get_historical_features(e, ["v:x"], [view], sources={"v": s})
        pd.testing.assert_series_equal(got["x"], base["x"])
    # a naive time read as local Tokyo time would be 9 hours off: the answers differ, so the check above can fail
    shifted = ent.assign(event_timestamp=ent["event_timestamp"] - pd.Timedelta(hours=9))
    assert not S.get_historical_features(shifted, ["v:x"], [view], sources={"v": src})["x"].equals(base["x"])


def test_empty_view_gives_nulls_and_keeps_rows():
    src, ent, ttl = _frames(2)
    view = S.FeatureView(name="v", features=[S.Feature(name="x"), S.Feature(name="c", dtype="string")], source="unused", ttl=timedelta(hours=6))
    got = S.get_historical_features(ent, ["v:*"], [view], sources={"v": src.iloc[:0]})
    assert len(got) == len(ent) and got["x"].isna().all() and got["c"].isna().all()


def test_ttl_edge_is_inclusive_and_guard_falls_back():
    src = pd.DataFrame({"customer_id": [1, 1], "event_timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True),
                        "created": pd.to_datetime(["2024-01-01", "2024-01-03 12:00"], utc=True, format="ISO8601"), "x": [1.0, 2.0]})
    view = S.FeatureView(name="v", features=[S.Feature(name="x")], source="unused", ttl=timedelta(days=2))
    ent = pd.DataFrame({"customer_id": [1, 1, 1, 1], "event_timestamp": pd.to_datetime(
        ["2024-01-03", "2024-01-03 00:00:00.000001", "2024-01-04", "2024-01-04 00:00:00.000001"], utc=True, format="ISO8601")})
    got = S.get_historical_features(ent, ["v:x"], [view], sources={"v": src})["x"].tolist()
    # 3 Jan: the 2 Jan row is not yet created -> 1 Jan row, exactly at the ttl edge (kept); 1 us later it expired -> null
    # 4 Jan: the 2 Jan row is known (created 3 Jan 12:00) and exactly 2 days old (kept); 1 us later it expired -> null
    assert got[0] == 1.0 and np.isnan(got[1]) and got[2] == 2.0 and np.isnan(got[3])
    off = S.get_historical_features(ent, ["v:x"], [view], backfill_guard=False, guard_off_reason="test", sources={"v": src})["x"].tolist()
    assert off[:3] == [2.0, 2.0, 2.0] and np.isnan(off[3])   # guard off: the 2 Jan row is used before it was created


def test_guard_off_logs_reason(caplog):
    src, ent, ttl = _frames(4)
    view = S.FeatureView(name="v", features=[S.Feature(name="x")], source="unused", ttl=timedelta(hours=6))
    with caplog.at_level("WARNING", logger="churnops.store"):
        S.get_historical_features(ent, ["v:x"], [view], backfill_guard=False, guard_off_reason="replaying a vendor backfill", sources={"v": src})
    assert "backfill guard is OFF" in caplog.text and "replaying a vendor backfill" in caplog.text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_rows=st.integers(1, 80), n_keys=st.integers(1, 3), ttl_h=st.integers(1, 60),
       backfill_share=st.sampled_from([0.5, 0.9, 1.0]), kind=st.sampled_from(["int", "uint", "wide", "text", "float"]), guard=st.booleans())
def test_backfills_and_key_kinds_equal_bruteforce(seed, n_rows, n_keys, ttl_h, backfill_share, kind, guard):
    """Long runs of rows created long after their event (a backfill) take the walk-back and then the general rule;
    integer keys are offset (or hashed when their range is too wide), others hashed: all agree with the loop."""
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, n_keys, n_rows)
    ev = rng.integers(0, 48, n_rows) * H
    created = np.where(rng.random(n_rows) < backfill_share, (48 + rng.integers(0, 3, n_rows)) * H, ev)
    ek, ets = rng.integers(-1, n_keys + 1, 40), rng.integers(0, 55, 40) * H
    if kind == "uint": keys, ek = keys.astype(np.uint64) + 2**63, np.abs(ek).astype(np.uint64) + 2**63
    if kind == "wide": keys, ek = keys * 2**61, ek * 2**61
    if kind == "text": keys, ek = keys.astype(str), ek.astype(str)
    if kind == "float": keys, ek = keys.astype(float), ek.astype(float)
    got = S.pit_indices(ek, ets, keys, ev, created, ttl_h * H, guard)
    np.testing.assert_array_equal(got, S.pit_indices_bruteforce(ek, ets, keys, ev, created, ttl_h * H, guard))
