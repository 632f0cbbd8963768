"""The whole loop on a world that is not the simulator's (`tests/worlds.py`): string member ids, other table, column and time
names, ISO text with +09:00 offsets, a dt= lake and a warehouse outside the home, no API.

data job → features job → train job → evaluate → promote → online store → serve by id → monitor → new rows arrive →
data and features again → retrain → promote. The served model is measured against a plain logistic regression on counts
made by hand with pandas from the world's own rows, on the same customers and dates.
"""
import json
import sqlite3
import uuid
import warnings

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from churnops import data, features as F, registry, store, tracking, train, validate
from churnops.declaration import load_declaration
from churnops.files import iso_utc
from churnops.predlog import PredictionLog, feedback_db
from churnops.runner import run_job

from conftest import free_port_number
from worlds import make_world

FIRST_CUT = "2024-09-01"            # the first build sees events before this day; the second build sees everything
TRAIN = {"trials": 4, "families": "logreg,hgb", "folds": 3, "as_of_start": "2024-02-01", "seed": 0}


def hand_made_counts(plays: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    "Plays in the 30 days before as_of and all plays before it, per (member_id, as_of): pandas, not the feature engine."
    out = []
    for as_of, grp in rows.groupby("as_of"):
        before = plays[plays.played_at < as_of]
        last30 = before[before.played_at >= as_of - pd.Timedelta(days=30)]
        out.append(pd.DataFrame({"member_id": grp.member_id.to_numpy(), "as_of": as_of,
                                 "plays_30d": grp.member_id.map(last30.member_id.value_counts()).fillna(0).to_numpy(),
                                 "plays_all": grp.member_id.map(before.member_id.value_counts()).fillna(0).to_numpy()}))
    return rows[["member_id", "as_of"]].merge(pd.concat(out), on=["member_id", "as_of"], how="left")


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    warnings.simplefilter("ignore")
    w = make_world(tmp_path_factory.mktemp("own_data"), members=400, days=300, seed=1)
    home, r = w.home, {"world": w}
    r["data1"] = run_job("data", home, {"end_date": FIRST_CUT})[1]
    r["features1"] = run_job("features", home)[1]
    r["train1"] = train.run_training_job(home, TRAIN, quiet=True)[1]
    r["eval1"] = validate.evaluate_model(home, "churn/1", champion=None, effects=False, latency_calls=20)
    r["promote1"] = registry.promote(home, "churn", 1, force=True, reason="own-data loop test: the gates are the simulator's")
    return r


def test_stages_follow_the_declaration(loop):
    w, home = loop["world"], loop["world"].home
    decl = load_declaration(home)
    assert decl.entity.key == "member_id" and not (home / "sources").exists()        # the sources live outside the home
    assert set(loop["data1"]["tables"]) == {"members", "plays", "payments", "terminations"}
    assert loop["features1"]["entity"] == "member_id" and loop["features1"]["online_rows"]["churn_features"] > 300
    view = store.FeatureStore(home).views["churn_features"]
    assert view.entity == "member_id" and view.feature_names == F.feature_columns(decl)
    client = tracking.tracking_client(home)
    run = client.get_run(loop["train1"]["run_id"])
    assert json.loads(run.data.tags["churnops.feature_columns"]) == F.feature_columns(decl)
    assert run.data.tags["churnops.id_column"] == "member_id" and run.data.params["horizon_days"] == "30.0"
    assert run.data.tags["churnops.declaration"] == data.read_build(home, loop["data1"]["build_id"])["declaration"]
    assert "oracle_roc_auc" not in run.data.metrics                                     # no oracle outside the simulator
    assert "reference_profile.json" in [a.path for a in client.list_artifacts(run.info.run_id)]
    ev = loop["eval1"]
    assert ev.holdout_rows > 100 and set(ev.slices.segment) == {"tier", "city"}         # declared categoricals as segments
    assert loop["promote1"]["semver"] == "1.0.0"


def test_serving_path_reads_the_online_store_by_member_id(loop):
    'What `/predict {"member_id": ...}` does: online features by the declared key, then the champion.'
    home = loop["world"].home
    decl = load_declaration(home)
    model, mv = tracking.load_model(home, "churn", "champion")
    tables = data.load_build(home)
    now = store.default_snapshot_dates(tables, decl)[-1]                                 # the day after the last event
    direct = F.build_features(tables, [now], decl).head(3)                               # members still there at `now`
    ids = direct.member_id.tolist()
    got = store.online_features_by_id([*ids, "M9999"], home=home)
    assert got["member_id"] == [*ids, "M9999"] and got["_status"][:3] == ["PRESENT"] * 3 and got["_status"][3].startswith("NOT_FOUND")
    X = pd.DataFrame({c: got[c][:3] for c in F.feature_columns(decl)})
    p = model.predict_proba(train.scoring_frame(X, model))[:, 1]
    np.testing.assert_allclose(p, model.predict_proba(train.scoring_frame(direct, model))[:, 1])


def test_http_predict_by_member_id(loop):
    from test_serve_helpers import running_server
    with running_server(loop["world"].home, free_port_number()) as srv:
        r = httpx.post(srv.url + "/predict", json={"member_id": "M0001"}, timeout=10)
    assert r.status_code == 200 and r.json()["member_id"] == "M0001"


def test_served_model_beats_logistic_regression_on_hand_made_counts(loop):
    w, home = loop["world"], loop["world"].home
    decl = load_declaration(home)
    tables = data.load_build(home, loop["data1"]["build_id"])
    dates = F.monthly_as_of_dates(TRAIN["as_of_start"], F.default_as_of_dates(tables, 30, declaration=decl)[-1])
    ts = F.build_training_set(tables, dates, declaration=decl)
    last = ts.as_of == ts.as_of.max()                                                   # the test date of the training run
    counts = hand_made_counts(w.truth["plays"], ts)
    lr = LogisticRegression(max_iter=1000).fit(np.log1p(counts.loc[~last, ["plays_30d", "plays_all"]]), ts.is_churned[~last])
    auc_lr = roc_auc_score(ts.is_churned[last], lr.predict_proba(np.log1p(counts.loc[last, ["plays_30d", "plays_all"]]))[:, 1])
    model, _ = tracking.load_model(home, "churn", "champion")
    auc_model = roc_auc_score(ts.is_churned[last], model.predict_proba(train.scoring_frame(ts[last], model))[:, 1])
    assert last.sum() > 200 and ts.is_churned[last].sum() >= 10
    assert auc_model > auc_lr + 0.02, (auc_model, auc_lr)


def test_monitor_then_new_rows_then_retrain(loop):
    from churnops import monitor
    w, home = loop["world"], loop["world"].home
    decl = load_declaration(home)
    model, mv = tracking.load_model(home, "churn", "champion")
    ids = [f"M{i:04d}" for i in range(1, 121)]
    got = store.online_features_by_id(ids, home=home)
    X = pd.DataFrame({c: got[c] for c in F.feature_columns(decl)})
    p = model.predict_proba(train.scoring_frame(X, model))[:, 1]
    log, now = PredictionLog(home / "predictions"), pd.Timestamp.now(tz="UTC")
    for i, (cid, pr) in enumerate(zip(ids, p)):                                    # the rows serving writes for these answers
        log.append((now - pd.Timedelta(minutes=i), uuid.uuid4().hex, cid, int(mv.version), "champion", 3.0, 200, float(pr),
                    bool(pr >= 0.5), json.dumps({c: X[c].iloc[i] for c in X.columns}, default=str)))
    log.close()
    gone = set(w.truth["terminations"].member_id)
    with sqlite3.connect(feedback_db(home)) as con:
        con.executemany("INSERT INTO feedback VALUES (?, ?, ?)", [(c, int(c in gone), iso_utc(now)) for c in ids])
    res = monitor.run_monitor(home, window_start=now - pd.Timedelta(days=1), window_end=now + pd.Timedelta(minutes=1))
    assert res["metrics"]["n_drifted"] >= 0 and 0 < res["metrics"]["labelled_share"] <= 1
    # new rows arrive: the second build sees the months after FIRST_CUT
    d2 = run_job("data", home)[1]
    assert d2["build_id"] != loop["data1"]["build_id"] and "plays" in d2["new_versions"]
    run_job("features", home)
    t2 = train.run_training_job(home, TRAIN, quiet=True)[1]
    ev = registry.promote(home, "churn", t2["version"], force=True, reason="own-data loop test: retrained on new rows")
    assert t2["version"] == 2 and ev["semver"] in ("1.0.1", "1.1.0") and ev["from_version"] == 1
    run = tracking.tracking_client(home).get_run(t2["run_id"])
    assert run.data.tags["churnops.data_version"] == d2["build_id"] and run.data.tags["churnops.as_of_end"] > "2024-08-01"
