"""The synthetic world: determinism, the drift and seasonality knobs, the oracle against what actually happens, and the
API server run as `churnops sources serve-api`."""
import json
import subprocess

import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from pydantic import ValidationError

import conftest
from churnops import simulate as S
from churnops.config import Paths


def sql_tables(w):
    eng = sa.create_engine(w.db_url)
    out = {t: pd.read_sql(f"select * from {t}", eng) for t in ("customers", "subscriptions", "transactions", "support_tickets", "cancellations")}
    eng.dispose()
    return out


def test_same_seed_same_world_other_seed_differs(tmp_path):
    a = S.simulate_world(tmp_path / "a", customers=200, days=40, seed=11)
    b = S.simulate_world(tmp_path / "b", customers=200, days=40, seed=11)
    c = S.simulate_world(tmp_path / "c", customers=200, days=40, seed=12)
    ta, tb, tc = sql_tables(a), sql_tables(b), sql_tables(c)
    for t in ta: pd.testing.assert_frame_equal(ta[t], tb[t])
    assert not ta["transactions"].equals(tc["transactions"])
    la = pq.read_table(tmp_path / "a/sources/lake/events/date=2024-02-01/part-0.parquet")
    lb = pq.read_table(tmp_path / "b/sources/lake/events/date=2024-02-01/part-0.parquet")
    assert la.equals(lb) and la.num_rows > 0


def test_rerun_replaces_sources_atomically(tmp_path):
    S.simulate_world(tmp_path, customers=100, days=10, seed=1)
    w = S.simulate_world(tmp_path, customers=50, days=5, seed=1)
    assert len(list((tmp_path / "sources/lake/events").iterdir())) == 5          # the old lake is gone, not merged
    assert sql_tables(w)["customers"].shape[0] == 50
    assert not [p for p in (tmp_path / "sources").iterdir() if p.name.startswith(".")]   # no temp leftovers


def test_bad_knobs():
    with pytest.raises(ValueError, match="customers and days must be >= 1"):
        S.simulate_world("/tmp/never-written", customers=0)
    with pytest.raises(ValidationError, match="new_segment_sahre"):
        S.as_drift({"start": "2024-03-01", "new_segment_sahre": 0.3})


def test_price_rise_drift(tmp_path):
    kw = dict(customers=1500, days=120, seed=4)
    base = S.simulate_world(tmp_path / "base", **kw)
    drift = S.simulate_world(tmp_path / "drift", drift={"start": "2024-03-01", "price_rise": 0.25}, **kw)
    tb, td = sql_tables(base), sql_tables(drift)
    day = pd.Timestamp("2024-03-01")
    # before the drift the two worlds are identical; after it, the price rise shows in subscriptions and in churn
    cb, cd = (pd.to_datetime(t["cancellations"].event_timestamp) for t in (tb, td))
    assert (cb < day).sum() == (cd < day).sum()
    assert (cd >= day).sum() > 1.3 * (cb >= day).sum()
    subs = td["subscriptions"]; subs["event_timestamp"] = pd.to_datetime(subs.event_timestamp)
    rise = subs[subs.event_timestamp.dt.normalize() == day]
    active = (pd.to_datetime(td["customers"].signup_date) <= day).sum() - (cd < day).sum()
    assert len(rise) >= 0.95 * active
    prev = subs[subs.event_timestamp < day].groupby("customer_id")[["plan", "monthly_charges"]].last()
    same_plan = rise.merge(prev, left_on="customer_id", right_index=True, suffixes=("", "_before")).query("plan == plan_before")
    assert len(same_plan) > 0.9 * len(rise)                         # (the others changed plan that very day)
    assert np.allclose(same_plan.monthly_charges / same_plan.monthly_charges_before, 1.25, atol=0.01)
    # the oracle sees it too
    ids = np.arange(1, 1501)
    assert S.true_churn_probability(tmp_path / "drift", ids, "2024-03-05", 30).mean() > \
        1.3 * S.true_churn_probability(tmp_path / "base", ids, "2024-03-05", 30).mean()


def test_new_segment_drift(tmp_path):
    w = S.simulate_world(tmp_path, customers=1000, days=90, seed=2, drift={"start": "2024-02-15", "new_segment_share": 0.5})
    c = sql_tables(w)["customers"]
    c["signup_date"] = pd.to_datetime(c.signup_date)
    budget = c[c.segment == "budget"]
    assert len(budget) > 50 and (budget.signup_date >= "2024-02-15").all()
    late = c[c.signup_date >= "2024-02-15"]
    assert 0.3 < (late.segment == "budget").mean() < 0.7
    assert budget.age.mean() < c[c.segment == "consumer"].age.mean()


def test_seasonality_knob():
    P = {k: np.array(v) for k, v in dict(e0=[0.0], d0=[0.0], dis_size=[0.0], dis_day=[S.NEVER], contract=[0], change_day=[S.NEVER],
                                          charge0=[40.0], charge1=[40.0], signup_day=[-1000], new_segment=[False], band=[2]).items()}
    t = np.arange(365)[:, None]
    flat = S.log_hazard(P, t, dict(start="2024-01-01", seasonality=0.0, drift_day=S.NEVER, price_rise=0.0))
    wave = S.log_hazard(P, t, dict(start="2024-01-01", seasonality=0.5, drift_day=S.NEVER, price_rise=0.0))
    assert np.ptp(flat) < 1e-6                                        # (only the fading new-customer term moves)
    assert np.isclose(np.ptp(wave), 1.0, atol=0.01)                   # amplitude 0.5 either side
    assert 15 <= int(np.argmax(wave)) <= 35                           # peaks in late January


def test_oracle_matches_observed_churn(tmp_path):
    w = S.simulate_world(tmp_path, customers=4000, days=150, seed=9)
    truth = S.load_truth(tmp_path)
    start = pd.Timestamp("2024-01-01", tz="UTC")
    p_all, y_all = [], []
    for as_of in pd.date_range("2024-02-01", "2024-04-30", freq="14D", tz="UTC"):
        d = (as_of - start).days
        act = truth[(np.maximum(truth.signup_day, 0) < d) & (truth.churn_day >= d)]
        p_all.append(S.true_churn_probability(tmp_path, act.customer_id, as_of, 30))
        y_all.append((act.churn_day < d + 30).to_numpy())
    p, y = np.concatenate(p_all), np.concatenate(y_all)
    assert abs(p.mean() - y.mean()) < 0.15 * y.mean()                 # calibrated in the mean
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(y, p) > 0.85
    # the oracle for customers gone before as_of is 0, and cancellations in SQL agree with the hidden churn days
    gone = truth[truth.churn_day < 30].customer_id
    assert (S.true_churn_probability(tmp_path, gone, "2024-02-01", 30) == 0).all()
    c = sql_tables(w)["cancellations"]
    assert len(c) == (truth.churn_day < 150).sum()


def test_serve_api_cli_with_faults(tmp_path):
    S.simulate_world(tmp_path, customers=30, days=3, seed=0)
    port = conftest.free_port_number()
    proc = subprocess.Popen(["churnops", "sources", "serve-api", "--home", str(tmp_path), "--port", str(port),
                             "--fail-first", "1", "--fault", "malformed", "--latency-ms", "50"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        conftest.wait_for_port(port, timeout=60, proc=proc)
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/health").json() == {"status": "ok", "rows": 30}
        r = httpx.get(f"{url}/v1/external", params={"page_size": 20})
        with pytest.raises(json.JSONDecodeError):
            r.json()
        r = httpx.get(f"{url}/v1/external", params={"page_size": 20})
        assert r.elapsed.total_seconds() >= 0.05
        body = r.json()
        assert body["next_page"] == 2 and len(body["items"]) == 20
        body = httpx.get(f"{url}/v1/external", params={"page": 2, "page_size": 20}).json()
        assert body["next_page"] is None and len(body["items"]) == 10
        assert httpx.get(f"{url}/v1/external", params={"page": 0}).status_code == 422
    finally:
        proc.terminate(); proc.wait(timeout=20)


def test_cli_simulate_with_drift(tmp_path):
    r = subprocess.run(["churnops", "simulate", "--home", str(tmp_path), "--customers", "100", "--days", "30", "--drift-start",
                        "2024-01-15", "--price-rise", "0.2", "--quiet"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "simulated 100 customers × 30 days" in r.stdout
    w = json.loads((Paths(tmp_path).sources / "world.json").read_text())
    assert w["drift"]["price_rise"] == 0.2 and w["drift_day"] == 14


def test_world_writes_its_declaration(tmp_path):
    from churnops.declaration import load_declaration
    w = S.simulate_world(tmp_path, customers=30, days=3, seed=1)
    d = load_declaration(tmp_path)
    assert w.declaration == tmp_path / "declaration.yaml" and d == S.world_declaration()
    assert list(d.tables) == ["customers", "subscriptions", "transactions", "support_tickets", "cancellations", "sessions", "external"]
    assert (d.entity.key, d.population.table, d.population.since, d.label.table) == ("customer_id", "customers", "signup_date", "cancellations")
    elsewhere = S.simulate_world(tmp_path / "h2", customers=30, days=3, seed=1, lake_url=str(tmp_path / "lake2"))
    assert load_declaration(elsewhere.home).sources["lake"].url == str(tmp_path / "lake2")   # outside the home: absolute
