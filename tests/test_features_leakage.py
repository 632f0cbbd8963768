"""As-of-date features: no leakage (property test) and agreement with a plain per-row reference on random worlds."""
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from churnops import features as F

pytestmark = pytest.mark.filterwarnings("ignore:labels for as_of")   # the last date's labels are censored on purpose here
START = pd.Timestamp("2024-01-01", tz="UTC")


def random_world(seed: int, n: int = 12, days: int = 150) -> dict[str, pd.DataFrame]:
    """A small world in the shape of data.load_build; many timestamps fall exactly on midnights (ties with as_of)."""
    rng = np.random.default_rng(seed)

    def times(k):
        day = rng.integers(0, days, k)
        on_midnight = rng.random(k) < 0.3
        secs = np.where(on_midnight, 0, rng.integers(0, 86400, k))
        return START + pd.to_timedelta(day, "D") + pd.to_timedelta(secs, "s")

    ids = np.arange(1, n + 1)
    cust = pd.DataFrame({"customer_id": ids, "signup_date": times(n) - pd.Timedelta(days=60),
                         "age": rng.integers(18, 80, n), "gender": rng.choice(["f", "m"], n),
                         "region": rng.choice(["north", "south", "east"], n), "segment": rng.choice(["consumer", "business"], n)})
    k = 4 * n
    subs = pd.DataFrame({"customer_id": rng.choice(ids, k), "plan": rng.choice(["basic", "pro", "max"], k),
                         "contract_type": rng.choice(["monthly", "annual"], k), "monthly_charges": rng.uniform(10, 90, k).round(2),
                         "event_timestamp": times(k)})
    k = 30 * n
    tx = pd.DataFrame({"transaction_id": np.arange(k), "customer_id": rng.choice(ids, k), "event_timestamp": times(k),
                       "amount": rng.uniform(1, 100, k).round(2)})
    k = 6 * n
    res = rng.uniform(0.5, 200, k)
    res[rng.random(k) < 0.15] = np.nan
    tk = pd.DataFrame({"ticket_id": np.arange(k), "customer_id": rng.choice(ids, k), "event_timestamp": times(k),
                       "category": rng.choice(["billing", "tech"], k), "resolution_hours": res})
    churners = rng.choice(ids, n // 3, replace=False)
    canc = pd.DataFrame({"customer_id": churners, "event_timestamp": times(len(churners))})
    k = 60 * n
    ses = pd.DataFrame({"customer_id": rng.choice(ids, k), "event_timestamp": times(k),
                        "session_duration_min": rng.exponential(12, k), "pages": rng.integers(1, 20, k)})
    ext = pd.DataFrame({"customer_id": ids, "credit_band": rng.choice(["A", "B", "C", None], n),
                        "regional_index": rng.normal(1, 0.1, n)})
    return {"customers": cust, "subscriptions": subs, "transactions": tx, "support_tickets": tk,
            "cancellations": canc, "sessions": ses, "external": ext}


DATES = F.monthly_as_of_dates("2024-02-01", "2024-05-01")


def perturb_future(tables, as_of, seed):
    """Change, delete and add events at or after `as_of` (cancellations only strictly after, which keeps the population)."""
    rng = np.random.default_rng(seed)
    out = {k: v.copy() for k, v in tables.items()}
    for name in ("transactions", "sessions", "support_tickets", "subscriptions", "cancellations"):
        df = out[name]
        fut = (df["event_timestamp"] > as_of) if name == "cancellations" else (df["event_timestamp"] >= as_of)
        if name == "cancellations":
            out[name] = pd.concat([df[~fut], df[fut].assign(event_timestamp=df.loc[fut, "event_timestamp"] + pd.Timedelta(days=3))])
            continue
        num = [c for c in df.select_dtypes("number").columns if c not in ("customer_id", "transaction_id", "ticket_id")]
        changed = df[fut].copy()
        changed[num] = changed[num] * rng.uniform(0.1, 9) + 1
        changed["event_timestamp"] = as_of + pd.to_timedelta(rng.integers(0, 40 * 86400, len(changed)), "s")
        keep = rng.random(len(changed)) < 0.5                      # delete half of the future
        extra = df[~fut].sample(frac=0.2, random_state=seed).assign(event_timestamp=as_of)   # new events exactly at as_of
        out[name] = pd.concat([df[~fut], changed[keep], extra]).sample(frac=1, random_state=seed)   # shuffled order
    # also rewrite the resolution of tickets opened before as_of but resolved after it
    tk = out["support_tickets"]
    late = (tk["event_timestamp"] < as_of) & (tk["event_timestamp"] + pd.to_timedelta(tk["resolution_hours"], "h") >= as_of)
    tk.loc[late, "resolution_hours"] = (as_of - tk.loc[late, "event_timestamp"]) / pd.Timedelta(hours=1) + 500
    return out


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=st.integers(0, 10_000), noise=st.integers(0, 10_000), which=st.integers(0, len(DATES) - 1))
def test_future_events_do_not_change_features(world, noise, which):
    tables = random_world(world)
    as_of = DATES[which]
    before = F.build_features(tables, [as_of])
    assume(len(before) > 0)                                   # nobody active yet: nothing to compare
    after = F.build_features(perturb_future(tables, as_of, noise), [as_of])
    pd.testing.assert_frame_equal(before, after)


def test_leakage_test_can_fail():
    """The same comparison detects a change strictly before as_of (so the property test is not vacuous)."""
    tables = random_world(3)
    as_of = DATES[2]
    before = F.build_features(tables, [as_of])
    t2 = {k: v.copy() for k, v in tables.items()}
    tx = t2["transactions"]
    past = tx.index[(tx["event_timestamp"] < as_of) & (tx["event_timestamp"] >= as_of - pd.Timedelta(days=30))][0]
    tx.loc[past, "amount"] += 1000
    with pytest.raises(AssertionError):
        pd.testing.assert_frame_equal(before, F.build_features(t2, [as_of]))


def reference_row(tables, cid, t):
    """Every feature for one (customer, as_of), by filtering frames: the definition, written plainly."""
    D = pd.Timedelta(days=1)
    c = tables["customers"].set_index("customer_id").loc[cid]
    tenure = (t - c["signup_date"]) / D
    row = {"tenure_days": tenure, "age": float(c["age"]), "gender": c["gender"], "region": c["region"], "segment": c["segment"]}
    e = tables["external"].set_index("customer_id").loc[cid]
    row["credit_band"], row["regional_index"] = e["credit_band"], e["regional_index"]
    sub = tables["subscriptions"]
    sub = sub[(sub.customer_id == cid) & (sub.event_timestamp < t)].sort_values("event_timestamp", kind="stable")
    row["plan"] = sub["plan"].iloc[-1] if len(sub) else None
    row["contract_type"] = sub["contract_type"].iloc[-1] if len(sub) else None
    row["monthly_charges"] = sub["monthly_charges"].iloc[-1] if len(sub) else np.nan
    row["plan_changes"] = float(max(len(sub) - 1, 0))

    def win(df, days, end_days=0):
        return df[(df.event_timestamp >= t - days * D) & (df.event_timestamp < t - end_days * D)]

    s = tables["sessions"]; s = s[(s.customer_id == cid) & (s.event_timestamp < t)]
    for d in (7, 30, 90): row[f"sessions_{d}d"] = float(len(win(s, d)))
    row["sessions_trend_30d"] = float(len(win(s, 30)) - len(win(s, 60, 30)))
    mean = lambda x: float(x.mean()) if len(x) else np.nan
    row["avg_session_duration_7d"] = mean(win(s, 7)["session_duration_min"])
    row["avg_session_duration_30d"] = mean(win(s, 30)["session_duration_min"])
    row["pages_per_session_30d"] = mean(win(s, 30)["pages"])
    row["days_since_last_session"] = (t - s.event_timestamp.max()) / D if len(s) else tenure
    s90 = win(s, 90)
    hours = s90.event_timestamp.dt.hour
    row["weekend_session_share_90d"] = float((s90.event_timestamp.dt.day_of_week >= 5).mean()) if len(s90) else 0.0
    row["night_session_share_90d"] = float(((hours < 6) | (hours >= 22)).mean()) if len(s90) else 0.0
    row["mean_session_hour_90d"] = mean(hours)

    x = tables["transactions"]; x = x[(x.customer_id == cid) & (x.event_timestamp < t)]
    for d in (7, 30, 90): row[f"purchases_{d}d"] = float(len(win(x, d)))
    row["total_purchases_30d"] = float(win(x, 30)["amount"].sum())
    row["total_purchases_90d"] = float(win(x, 90)["amount"].sum())
    row["purchases_trend_30d"] = row["total_purchases_30d"] - float(win(x, 60, 30)["amount"].sum())
    row["avg_purchase_amount_90d"] = mean(win(x, 90)["amount"])
    row["days_since_last_purchase"] = (t - x.event_timestamp.max()) / D if len(x) else tenure
    row["purchase_frequency"] = len(x) / max(tenure, 1.0)
    row["value_per_session"] = row["total_purchases_30d"] / row["sessions_30d"] if row["sessions_30d"] else 0.0

    k = tables["support_tickets"]; k = k[(k.customer_id == cid) & (k.event_timestamp < t)]
    row["support_tickets_30d"] = float(len(win(k, 30)))
    row["support_tickets_90d"] = float(len(win(k, 90)))
    resolved_at = k.event_timestamp + pd.to_timedelta(k.resolution_hours, "h")
    resolved = k[resolved_at < t]
    row["open_tickets"] = float(len(k) - len(resolved))
    r90 = k[(resolved_at < t) & (resolved_at >= t - 90 * D)]
    row["avg_resolution_hours_90d"] = mean(r90["resolution_hours"])
    return row


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_features_match_reference(seed):
    tables = random_world(seed)
    got = F.build_training_set(tables, DATES, 30)
    assert len(got) > 0 and got["is_churned"].isin([0, 1]).all()
    for _, g in got.iterrows():
        ref = reference_row(tables, g["customer_id"], g["as_of"])
        for col in F.FEATURE_COLUMNS:
            a, b = g[col], ref[col]
            if col in F.CATEGORICAL_COLUMNS:
                assert (pd.isna(a) and pd.isna(b)) or a == b, (seed, g["customer_id"], g["as_of"], col, a, b)
            else:
                assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-9), (seed, g["customer_id"], g["as_of"], col, a, b)
    assert not np.isinf(got[F.NUMERIC_COLUMNS].to_numpy(dtype=float)).any()


def test_population_and_labels_match_reference():
    tables = random_world(5, n=30)
    got = F.label_frame(tables, DATES, 30)
    cust = tables["customers"].set_index("customer_id")
    canc = tables["cancellations"].groupby("customer_id")["event_timestamp"].min()
    expected = []
    for t in DATES:
        for cid in cust.index:
            c = canc.get(cid)
            if cust.loc[cid, "signup_date"] < t and (c is None or c > t):
                expected.append((cid, t, int(c is not None and c <= t + pd.Timedelta(days=30))))
    assert [(r.customer_id, r.as_of, r.is_churned) for r in got.itertuples()] == sorted(expected, key=lambda r: (r[1], r[0]))


def test_unseen_categories_and_skops_roundtrip():
    import skops.io as sio
    tables = random_world(7)
    ts = F.build_training_set(tables, DATES, 30)
    pre = F.make_preprocessor(F.NUMERIC_COLUMNS, F.CATEGORICAL_COLUMNS).fit(ts[F.FEATURE_COLUMNS])
    new = ts[F.FEATURE_COLUMNS].head(3).copy()
    new["plan"] = ["never-seen", None, "basic"]
    new["region"] = "atlantis"
    z = pre.transform(new)
    assert z.shape[0] == 3 and np.isfinite(z).all()
    blob = sio.dumps(pre)
    assert set(sio.get_untrusted_types(data=blob)) <= set(F.PREPROCESSOR_TRUSTED_TYPES)
    np.testing.assert_allclose(sio.loads(blob, trusted=F.PREPROCESSOR_TRUSTED_TYPES).transform(new), z)
