"""The Redis online store against a real `redis-server` on 127.0.0.1: the same features as SQLite for every customer of a
simulated world, the upsert rule (also under concurrent writers), NOT_FOUND, selection through churnops.yaml, errors that
name the URL without its password, and the prediction service reading customers' features from Redis."""
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from conftest import free_port_number, server_process
from churnops import data as D
from churnops import features as F
from churnops import simulate
from churnops import store as S
from churnops import tracking
from churnops.config import ConfigError


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    "A real redis-server on a free 127.0.0.1 port, without persistence, for this module."
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server not found: .ci/run installs Debian's redis-server package")
    port = free_port_number()
    d = tmp_path_factory.mktemp("redis")
    cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(d)]
    with server_process(cmd, port, d / "redis.log", timeout=30):
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture
def redis_store(redis_url):
    "A RedisOnlineStore under a prefix of its own (so tests never see each other's keys)."
    s = S.RedisOnlineStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    yield s
    s.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("redis_world")
    simulate.simulate_world(home, customers=200, days=240, seed=5)
    D.build(home)
    tables = D.load_build(home)
    S.register_churn_features(home, S.default_snapshot_dates(tables), tables=tables)
    return home


def test_same_features_as_sqlite_for_every_customer(world, redis_store, tmp_path):
    sqlite = S.FeatureStore(world, online=S.SQLiteOnlineStore(tmp_path / "online.db"))
    red = S.FeatureStore(world, online=redis_store)
    assert sqlite.materialize() == red.materialize()
    ids = sorted(D.load_table(world, "customers")["customer_id"].tolist())
    rows = [{"customer_id": c} for c in ids + [10**9]]
    a = sqlite.get_online_features([f"{S.CHURN_VIEW}:*"], rows)
    b = red.get_online_features([f"{S.CHURN_VIEW}:*"], rows)
    assert a == b                                        # every value, every customer, same types
    assert b["_status"][-1] == f"NOT_FOUND: {S.CHURN_VIEW}"
    assert set(b) == {"customer_id", *F.FEATURE_COLUMNS, "_status"}
    # the values are the source's last row per customer, not merely equal to SQLite's
    src = S.load_source(red.views[S.CHURN_VIEW])
    last = src.sort_values(["event_timestamp", "created"], kind="stable").groupby("customer_id").tail(1).set_index("customer_id")
    present = [c for c, s in zip(ids, b["_status"]) if s == "PRESENT"]
    assert set(present) == set(last.index)
    got = pd.Series(b["tenure_days"][:len(ids)], index=ids).loc[present].astype(float)
    np.testing.assert_array_equal(got.to_numpy(), last.loc[present, "tenure_days"].to_numpy(dtype=float))
    # materialisation records live in Redis
    assert redis_store.materialized_views() == {S.CHURN_VIEW}
    recs = [json.loads(r) for r in redis_store.r.lrange(f"{redis_store.prefix}:materializations", 0, -1)]
    assert [(r["view"], r["rows"]) for r in recs] == [(S.CHURN_VIEW, len(last))]
    assert redis_store.r.exists(f"{redis_store.prefix}:{S.CHURN_VIEW}:{present[0]}")


def _replay(store, writes):
    for k, e, c, v in writes: store.write("v", [k], [e], [c], [v])
    return store.read("v", sorted({w[0] for w in writes}))


def test_upsert_keeps_the_later_event_then_created(redis_store, tmp_path):
    big = 1_700_000_000_000_000_000           # nanosecond times beyond a double's 53 exact bits
    writes = [("k1", 10, 5, "a"), ("k1", 9, 100, "older event, later created"), ("k1", 10, 4, "same event, earlier created"),
              ("k1", 10, 6, "b"), ("k1", 10, 6, "c"),                                 # a full tie: the later write wins, as in SQLite
              ("k2", big + 1, 0, "newer by 1 ns"), ("k2", big, 0, "older by 1 ns"),
              ("k3", big, big + 2, "x"), ("k3", big, big + 1, "created 1 ns earlier"),
              ("k4", -10**18, 0, "1938"), ("k4", -10**18 - 1, 0, "earlier")]     # before 1970
    got = _replay(redis_store, writes)
    assert got == {"k1": "c", "k2": "newer by 1 ns", "k3": "x", "k4": "1938"}
    sqlite = S.SQLiteOnlineStore(tmp_path / "o.db")
    assert _replay(sqlite, writes) == got
    sqlite.close()
    # one batch holding several rows of a key is applied in order too
    redis_store.write("w", ["a", "a", "a"], [1, 3, 2], [0, 0, 0], ["1", "3", "2"])
    assert redis_store.read("w", ["a", "b"]) == {"a": "3"}


def test_concurrent_writers_keep_the_latest(redis_store):
    """Eight threads write random (event, created) versions of the same keys in random order, in batches crossing the script
    batch size: each key ends at its greatest (event, created) — the compare-and-set is atomic inside Redis."""
    redis_store.batch = 64
    keys = [str(i) for i in range(300)]
    rng = random.Random(0)
    plans = [[(k, rng.randrange(50), rng.randrange(50)) for k in keys] for _ in range(8)]
    for p in plans: rng.shuffle(p)
    best = {}
    for p in plans:
        for k, e, c in p: best[k] = max(best.get(k, (-1, -1)), (e, c))
    def run(p):
        for i in range(0, len(p), 100):
            ch = p[i:i + 100]
            redis_store.write("v", [k for k, _, _ in ch], [e for _, e, _ in ch], [c for _, _, c in ch], [f"{e},{c}" for _, e, c in ch])
    ts = [threading.Thread(target=run, args=(p,)) for p in plans]
    for t in ts: t.start()
    for t in ts: t.join()
    got = redis_store.read("v", keys)
    assert {k: tuple(map(int, v.split(","))) for k, v in got.items()} == best


def test_not_found_and_never_materialised(redis_store):
    view = S.FeatureView(name="acts", features=[S.Feature(name="n")], source="unused", ttl=pd.Timedelta(days=5).to_pytimedelta())
    with pytest.raises(RuntimeError, match="never been materialised"):
        S.get_online_features(["acts:n"], [{"customer_id": 1}], [view], redis_store)
    src = pd.DataFrame({"customer_id": [1, 2], "event_timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True),
                        "created": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True), "n": [1.5, float("nan")]})
    assert S.materialize([view], None, None, redis_store, sources={"acts": src}) == {"acts": 2}
    r = S.get_online_features(["acts:n"], [{"customer_id": 2}, {"customer_id": 3}, {"customer_id": "1"}, {"customer_id": 1}], [view], redis_store)
    assert r["n"] == [None, None, None, 1.5]                              # NaN is null; "1" is not 1
    assert r["_status"] == ["PRESENT", "NOT_FOUND: acts", "NOT_FOUND: acts", "PRESENT"]
    assert redis_store.read("acts", []) == {}


def test_churnops_yaml_selects_redis_for_the_store_and_the_cli(world, redis_url, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(world, home, ignore=shutil.ignore_patterns("online.db*"))
    prefix = f"cli{uuid.uuid4().hex[:6]}"
    (home / "churnops.yaml").write_text(f"online_store:\n  kind: redis\n  url: {redis_url}\n  prefix: {prefix}\n")
    fs = S.FeatureStore(home)
    assert isinstance(fs.online, S.RedisOnlineStore) and fs.online.prefix == prefix
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    def cli(*args):
        r = subprocess.run([sys.executable, "-c", "import sys; from churnops.cli import main; sys.exit(main())", *args, "--home", str(home)],
                           capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout.strip().splitlines()[-1])
    mat = cli("store", "materialize")
    assert mat["online_store"].startswith("RedisOnlineStore(") and mat["rows"][S.CHURN_VIEW] > 0
    assert not (home / "online.db").exists()                            # nothing went to SQLite
    assert fs.online.materialized_views() == {S.CHURN_VIEW}
    cid = int(fs.online.r.keys(f"{prefix}:{S.CHURN_VIEW}:*")[0].rsplit(":", 1)[1])
    got = cli("store", "get", "--customer-id", str(cid), "--customer-id", "999999")
    assert got["_status"] == ["PRESENT", f"NOT_FOUND: {S.CHURN_VIEW}"]
    # serving's path: the module-level function with only the home
    on = S.get_online_features(F.FEATURE_COLUMNS, [{"customer_id": cid}], home=home)
    assert on["tenure_days"] == got["tenure_days"][:1]
    assert isinstance(S._cached_store(home).online, S.RedisOnlineStore)
    fs.online.close(); S._cached_store(home).online.close()


def test_unreachable_or_bad_url_names_it_without_the_password(tmp_path):
    closed = free_port_number()
    (tmp_path / "churnops.yaml").write_text(f"online_store: {{kind: redis, url: 'redis://:s3cret@127.0.0.1:{closed}/0'}}\n")
    with pytest.raises(S.OnlineStoreError) as e:
        S.FeatureStore(tmp_path).online
    assert f"redis://:***@127.0.0.1:{closed}/0" in str(e.value) and "s3cret" not in str(e.value) and "ConnectionError" in str(e.value)
    with pytest.raises(S.OnlineStoreError, match="not valid: Port"):
        S.RedisOnlineStore("redis://:s3cret@127.0.0.1:notaport/0")
    (tmp_path / "churnops.yaml").write_text("online_store: {kind: redis, url: 'http://me:s3cret@127.0.0.1/0'}\n")
    with pytest.raises(ConfigError) as e:
        S.FeatureStore(tmp_path).online
    assert "online_store" in str(e.value) and "scheme 'http'" in str(e.value) and "s3cret" not in str(e.value)
    (tmp_path / "churnops.yaml").write_text("online_store: {kind: redis}\n")
    with pytest.raises(ConfigError, match="url is required"):
        S.open_online_store(tmp_path)


@pytest.mark.server
def test_service_reads_customers_features_from_redis(redis_url, tmp_path):
    """`churnops serve` on a home whose churnops.yaml names Redis: POST /predict by customer id scores the features held in
    Redis (a newer value written there changes the answer), and an id Redis does not hold is a 404."""
    from test_serve_helpers import template_home, copy_home, running_server, churn_frame
    from churnops import train
    template, _ = template_home()
    home = copy_home(template, tmp_path / "home")
    (home / "online.db").unlink(missing_ok=True)
    prefix = f"srv{uuid.uuid4().hex[:6]}"
    (home / "churnops.yaml").write_text(f"online_store: {{kind: redis, url: '{redis_url}', prefix: {prefix}}}\n")
    fs = S.FeatureStore(home)
    assert fs.materialize() == {"serve_test": 50}
    pipe, _ = tracking.load_model(template, "churn", "champion")
    df, _ = churn_frame(seed=0)                          # customers 1..50 hold rows 0..49
    with running_server(home, free_port_number()) as srv:
        r = httpx.post(srv.url + "/predict", json=[{"customer_id": 1}, {"customer_id": 7}], timeout=10)
        assert r.status_code == 200, r.text
        np.testing.assert_allclose([x["churn_probability"] for x in r.json()], pipe.predict_proba(df.iloc[[0, 6]])[:, 1], rtol=0, atol=1e-12)
        # a newer event for customer 1 carrying row 9's features: the service now scores row 9
        row9 = {k: (v.item() if hasattr(v, "item") else v) for k, v in df.iloc[9].to_dict().items()}
        later = pd.Timestamp("2026-12-01", tz="UTC").value
        fs.online.write("serve_test", ["1"], [later], [later], [json.dumps(row9)])
        r = httpx.post(srv.url + "/predict", json={"customer_id": 1}, timeout=10)
        assert r.status_code == 200, r.text
        got = r.json()[0] if isinstance(r.json(), list) else r.json()
        assert got["churn_probability"] == pytest.approx(pipe.predict_proba(df.iloc[[9]])[0, 1], abs=1e-12)
        miss = httpx.post(srv.url + "/predict", json=[{"customer_id": 3}, {"customer_id": 987654}], timeout=10)
        assert miss.status_code == 404 and miss.json()["customer_id"] == 987654
    assert not (home / "online.db").exists()
    fs.online.close()
