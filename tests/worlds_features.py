"""Two small random worlds for the feature tests, each with its declaration and a plain per-row reference of its features.

`sim_world` has the simulator's shape (its declaration, `simulate.world_declaration()`); `members_world` differs in every
name: text member ids, `members`/`plays`/`payments`/`terminations`, other time columns, plays stamped in Tokyo time, join dates as ISO text with a
`+09:00` offset, missing values, and a delayed stream (payments count as settled `settle_hours` after they are made).
"""
import numpy as np
import pandas as pd

import yaml

from churnops import features as F
from churnops.declaration import declaration_from_dict
from churnops.simulate import world_declaration

START = pd.Timestamp("2024-01-01", tz="UTC")
DAY = pd.Timedelta(days=1)
DATES = F.monthly_as_of_dates("2024-02-01", "2024-05-01")


def _times(rng, k, days=150):
    """Random UTC times; many fall exactly on midnights (ties with as_of)."""
    day = rng.integers(0, days, k)
    secs = np.where(rng.random(k) < 0.3, 0, rng.integers(0, 86400, k))
    return START + pd.to_timedelta(day, "D") + pd.to_timedelta(secs, "s")


def sim_world(seed: int, n: int = 12) -> dict[str, pd.DataFrame]:
    """A world in the shape of data.load_build."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n + 1)
    cust = pd.DataFrame({"customer_id": ids, "signup_date": _times(rng, n) - pd.Timedelta(days=60),
                         "age": rng.integers(18, 80, n), "gender": rng.choice(["f", "m"], n),
                         "region": rng.choice(["north", "south", "east"], n), "segment": rng.choice(["consumer", "business"], n)})
    k = 4 * n
    subs = pd.DataFrame({"customer_id": rng.choice(ids, k), "plan": rng.choice(["basic", "pro", "max"], k),
                         "contract_type": rng.choice(["monthly", "annual"], k), "monthly_charges": rng.uniform(10, 90, k).round(2),
                         "event_timestamp": _times(rng, k)})
    k = 30 * n
    tx = pd.DataFrame({"transaction_id": np.arange(k), "customer_id": rng.choice(ids, k), "event_timestamp": _times(rng, k),
                       "amount": rng.uniform(1, 100, k).round(2)})
    k = 6 * n
    res = rng.uniform(0.5, 200, k)
    res[rng.random(k) < 0.15] = np.nan
    tk = pd.DataFrame({"ticket_id": np.arange(k), "customer_id": rng.choice(ids, k), "event_timestamp": _times(rng, k),
                       "category": rng.choice(["billing", "tech"], k), "resolution_hours": res})
    churners = rng.choice(ids, n // 3, replace=False)
    canc = pd.DataFrame({"customer_id": churners, "event_timestamp": _times(rng, len(churners))})
    k = 60 * n
    ses = pd.DataFrame({"customer_id": rng.choice(ids, k), "event_timestamp": _times(rng, k),
                        "session_duration_min": rng.exponential(12, k), "pages": rng.integers(1, 20, k)})
    ext = pd.DataFrame({"customer_id": ids, "credit_band": rng.choice(["A", "B", "C", None], n),
                        "regional_index": rng.normal(1, 0.1, n)})
    return {"customers": cust, "subscriptions": subs, "transactions": tx, "support_tickets": tk,
            "cancellations": canc, "sessions": ses, "external": ext}


def sim_reference_row(tables, cid, t):
    """Every simulator feature for one (customer, as_of), by filtering frames: the definition, written plainly."""
    c = tables["customers"].set_index("customer_id").loc[cid]
    tenure = (t - c["signup_date"]) / DAY
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
        return df[(df.event_timestamp >= t - days * DAY) & (df.event_timestamp < t - end_days * DAY)]

    s = tables["sessions"]; s = s[(s.customer_id == cid) & (s.event_timestamp < t)]
    for d in (7, 30, 90): row[f"sessions_{d}d"] = float(len(win(s, d)))
    row["sessions_trend_30d"] = float(len(win(s, 30)) - len(win(s, 60, 30)))
    mean = lambda x: float(x.mean()) if len(x) else np.nan
    row["avg_session_duration_7d"] = mean(win(s, 7)["session_duration_min"])
    row["avg_session_duration_30d"] = mean(win(s, 30)["session_duration_min"])
    row["pages_per_session_30d"] = mean(win(s, 30)["pages"])
    row["days_since_last_session"] = (t - s.event_timestamp.max()) / DAY if len(s) else tenure
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
    row["days_since_last_purchase"] = (t - x.event_timestamp.max()) / DAY if len(x) else tenure
    row["purchase_frequency"] = len(x) / max(tenure, 1.0)
    row["value_per_session"] = row["total_purchases_30d"] / row["sessions_30d"] if row["sessions_30d"] else 0.0

    k = tables["support_tickets"]; k = k[(k.customer_id == cid) & (k.event_timestamp < t)]
    row["support_tickets_30d"] = float(len(win(k, 30)))
    row["support_tickets_90d"] = float(len(win(k, 90)))
    resolved_at = k.event_timestamp + pd.to_timedelta(k.resolution_hours, "h")
    row["open_tickets"] = float(len(k) - (resolved_at < t).sum())
    r90 = k[(resolved_at < t) & (resolved_at >= t - 90 * DAY)]
    row["avg_resolution_hours_90d"] = mean(r90["resolution_hours"])
    return row


MEMBERS_DECLARATION = declaration_from_dict(yaml.safe_load("""
entity: {key: member_id, dtype: string}
sources: {warehouse: {kind: sql, url: "sqlite://"}, lake: {kind: lake, url: "memory://plays", partition: "dt={date:%Y-%m-%d}"}}
tables:
  members: {source: warehouse, query: "SELECT * FROM members", key: [member_id], columns: {member_id: str, joined_at: timestamp, tier: str, birth_year: int}}
  plays: {source: lake, time: played_at, columns: {member_id: str, played_at: timestamp, seconds_played: float, track: str}}
  payments: {source: warehouse, time: paid_at, key: [payment_id],
             query: "SELECT * FROM payments WHERE paid_at >= :start_date AND paid_at < :end_date",
             columns: {payment_id: int, member_id: str, paid_at: timestamp, amount_usd: float, settle_hours: float}}
  terminations: {source: warehouse, time: ended_at, key: [member_id],
                 query: "SELECT * FROM terminations WHERE ended_at >= :start_date AND ended_at < :end_date", columns: {member_id: str, ended_at: timestamp}}
population: {table: members, since: joined_at}
label: {table: terminations, horizon_days: 21}
features:
  - {table: members, column: joined_at, aggregate: days_since, name: tenure}
  - {table: members, columns: [tier, birth_year]}
  - {table: plays, aggregate: [count, trend], windows: [7d, 30d]}
  - {table: plays, column: seconds_played, aggregate: [sum, mean, min, max], windows: [30d]}
  - {table: plays, column: track, aggregate: nunique, windows: [30d]}
  - {table: plays, column: track, aggregate: latest}
  - {table: plays, aggregate: days_since_last}
  - {table: plays, aggregate: share, windows: [30d], where: "hour >= 20 or weekday == 6", name: late_share_30d}
  - {table: payments, aggregate: count, windows: [90d], where: "amount_usd == 0", name: declined_payments_90d}
  - {table: payments, column: amount_usd, aggregate: latest}
  - {table: payments, column: amount_usd, aggregate: trend, windows: [30d]}
  - {table: payments, column: paid_at, aggregate: days_since, name: days_since_payment}
  - {table: payments, aggregate: count, hidden: true}
  - {table: payments, aggregate: count, delay: settle_hours, name: settled_payments, hidden: true}
  - {name: unsettled_payments, expr: "payments_count - settled_payments"}
  - {name: plays_per_day_30d, expr: "plays_count_30d / 30"}
  - {name: seconds_per_play_30d, expr: "plays_seconds_played_sum_30d / plays_count_30d"}
"""), "MEMBERS_DECLARATION")


def members_world(seed: int, n: int = 12) -> dict[str, pd.DataFrame]:
    """A world that shares no name with the simulator's; plays in Tokyo time, join dates as ISO text with +09:00."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"m-{i:03d}" for i in rng.permutation(n)], dtype=object)
    joined = (_times(rng, n) - pd.Timedelta(days=60)).tz_convert("Asia/Tokyo")
    members = pd.DataFrame({"member_id": ids, "joined_at": joined.strftime("%Y-%m-%dT%H:%M:%S%z").str.replace(r"(\d\d)$", r":\1", regex=True),
                            "tier": rng.choice(["free", "premium", "family"], n), "birth_year": rng.integers(1950, 2008, n)})
    k = 50 * n
    secs = rng.exponential(180, k); secs[rng.random(k) < 0.1] = np.nan
    plays = pd.DataFrame({"member_id": rng.choice(ids, k), "played_at": _times(rng, k).tz_convert("Asia/Tokyo"),
                          "seconds_played": secs, "track": rng.choice(["t1", "t2", "t3", "t4", None], k)})
    k = 8 * n
    settle = rng.uniform(1, 120, k); settle[rng.random(k) < 0.2] = np.nan
    pay = pd.DataFrame({"payment_id": np.arange(k), "member_id": rng.choice(ids, k), "paid_at": _times(rng, k),
                        "amount_usd": np.where(rng.random(k) < 0.2, 0.0, rng.choice([4.99, 9.99, 14.99], k)), "settle_hours": settle})
    gone = rng.choice(ids, n // 3, replace=False)
    ends = pd.DataFrame({"member_id": gone, "ended_at": _times(rng, len(gone))})
    return {"members": members, "plays": plays, "payments": pay, "terminations": ends}


def members_reference_row(tables, mid, t):
    """Every declared feature of the members world for one (member, as_of), by filtering frames."""
    m = tables["members"].set_index("member_id").loc[mid]
    tenure = (t - pd.Timestamp(m["joined_at"]).tz_convert("UTC")) / DAY
    row = {"tenure": tenure, "tier": m["tier"], "birth_year": float(m["birth_year"])}
    win = lambda df, col, days, end=0: df[(df[col] >= t - days * DAY) & (df[col] < t - end * DAY)]
    p = tables["plays"]; p = p[(p.member_id == mid) & (p.played_at < t)]
    for w in (7, 30):
        row[f"plays_count_{w}d"] = float(len(win(p, "played_at", w)))
        row[f"plays_trend_{w}d"] = float(len(win(p, "played_at", w)) - len(win(p, "played_at", 2 * w, w)))
    s30 = win(p, "played_at", 30)
    row["plays_seconds_played_sum_30d"] = float(s30.seconds_played.sum())
    row["plays_seconds_played_mean_30d"] = float(s30.seconds_played.mean())     # NaN when no value is present
    row["plays_seconds_played_min_30d"] = float(s30.seconds_played.min())
    row["plays_seconds_played_max_30d"] = float(s30.seconds_played.max())
    row["plays_track_nunique_30d"] = float(s30.track.nunique())
    row["plays_track_latest"] = p.sort_values("played_at", kind="stable").track.iloc[-1] if len(p) else None
    row["plays_days_since_last"] = (t - p.played_at.max()) / DAY if len(p) else tenure
    utc = s30.played_at.dt.tz_convert("UTC")
    row["late_share_30d"] = float(((utc.dt.hour >= 20) | (utc.dt.day_of_week == 6)).mean()) if len(s30) else 0.0
    y = tables["payments"]; y = y[(y.member_id == mid) & (y.paid_at < t)]
    row["declined_payments_90d"] = float((win(y, "paid_at", 90).amount_usd == 0).sum())
    ys = y.sort_values("paid_at", kind="stable")
    row["payments_amount_usd_latest"] = float(ys.amount_usd.iloc[-1]) if len(y) else np.nan
    row["payments_amount_usd_trend_30d"] = float(win(y, "paid_at", 30).amount_usd.sum() - win(y, "paid_at", 60, 30).amount_usd.sum())
    row["days_since_payment"] = (t - ys.paid_at.iloc[-1]) / DAY if len(y) else np.nan
    settled = (y.paid_at + pd.to_timedelta(y.settle_hours, "h")) < t                 # a missing settle time never settles
    row["unsettled_payments"] = float(len(y) - settled.sum())
    row["plays_per_day_30d"] = row["plays_count_30d"] / 30
    row["seconds_per_play_30d"] = row["plays_seconds_played_sum_30d"] / row["plays_count_30d"] if row["plays_count_30d"] else 0.0
    return row


WORLDS = {"sim": (sim_world, world_declaration(), sim_reference_row), "members": (members_world, MEMBERS_DECLARATION, members_reference_row)}


def perturb_future(tables, declaration, as_of, seed):
    """Change, delete and add events at or after `as_of` in every declared event table (label events only strictly after,
    which keeps the population), and push delayed events that land after `as_of` further out."""
    rng = np.random.default_rng(seed)
    out = {k: v.copy() for k, v in tables.items()}
    keys = {declaration.entity.key} | {c for t in declaration.tables.values() for c in t.key}
    for name, spec in declaration.tables.items():
        if spec.time is None: continue
        df, tc = out[name], spec.time
        if name == declaration.label.table:
            fut = df[tc] > as_of
            out[name] = pd.concat([df[~fut], df[fut].assign(**{tc: df.loc[fut, tc] + pd.Timedelta(days=3)})])
            continue
        fut = df[tc] >= as_of
        num = [c for c in df.select_dtypes("number").columns if c not in keys]
        changed = df[fut].copy()
        changed[num] = changed[num] * rng.uniform(0.1, 9) + 1
        changed[tc] = as_of + pd.to_timedelta(rng.integers(0, 40 * 86400, len(changed)), "s")
        extra = df[~fut].sample(frac=0.2, random_state=seed).assign(**{tc: as_of})    # new events exactly at as_of
        both = pd.concat([df[~fut], changed[rng.random(len(changed)) < 0.5], extra])
        order = rng.random(len(both))
        order[:(~fut).sum()] = np.sort(order[:(~fut).sum()])   # new rows anywhere; past rows keep their order (it breaks time ties)
        out[name] = both.iloc[np.argsort(order, kind="stable")]
    for f in declaration.features:
        if f.delay is None: continue
        df, tc = out[f.table], declaration.tables[f.table].time
        unit = pd.Timedelta(1, f.delay_unit)
        late = (df[tc] < as_of) & (df[tc] + pd.to_timedelta(df[f.delay] * unit) >= as_of)
        df.loc[late, f.delay] = (as_of - df.loc[late, tc]) / unit + 500
    return out
