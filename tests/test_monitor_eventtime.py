"""Monitoring in event time: requests about days of 2024 answered (wall time) today, outcomes posted with their 2024 event
times. The window, the label join and the performance windows follow `as_of`; labels are known for both classes; the
trigger fires on accuracy alone when nothing drifted. A log without `as_of` gets it from the client's record."""
import json
import os
import sqlite3

import numpy as np
import pandas as pd
import pytest

from churnops import monitor
from churnops.config import Paths
from test_monitor_job import features, register_model

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
DAY0 = pd.Timestamp("2024-03-01", tz="UTC")


def write_event_world(home, rng, n, wrong, with_as_of=True):
    "n requests over 5 world days answered in the last minutes (wall); each outcome posted with its world event time."
    X = features(rng, n)
    p = np.where(rng.random(n) < 0.3, rng.uniform(0.7, 0.95, n), rng.uniform(0.02, 0.2, n))
    y = (rng.random(n) < p).astype(int)
    y = np.where(rng.random(n) < wrong, 1 - y, y)
    as_of = DAY0 + pd.to_timedelta(rng.integers(0, 5, n), unit="D")
    wall = pd.Timestamp.now(tz="UTC") - pd.to_timedelta(rng.uniform(1, 600, n), unit="s")
    cids = [f"c{i}" for i in range(n)]
    log = pd.DataFrame({"ts": wall, "request_id": [f"r{i}" for i in range(n)], "customer_id": cids, "model_version": 1,
                        "variant": "champion", "latency_ms": 4.0, "status": 200, "churn_probability": p,
                        "churn_predicted": p >= 0.5, "features_json": [json.dumps(r) for r in X.to_dict("records")]})
    if with_as_of: log["as_of"] = as_of
    d = Paths(home).predictions; d.mkdir(parents=True, exist_ok=True)
    log.to_parquet(d / "part-0001.parquet")
    outcome = [as_of[i] + pd.Timedelta(days=int(rng.integers(1, 29)) if y[i] else 30) for i in range(n)]
    with sqlite3.connect(d / "feedback.db") as con:
        con.execute("CREATE TABLE IF NOT EXISTS feedback(customer_id TEXT NOT NULL, churned INTEGER NOT NULL, ts TEXT NOT NULL)")
        con.executemany("INSERT INTO feedback VALUES (?, ?, ?)", [(cids[i], int(y[i]), outcome[i].isoformat()) for i in range(n)])
    return pd.DataFrame({"request_id": log["request_id"], "as_of": as_of}), y


@pytest.fixture(autouse=True)
def _no_pinned_tracking_uri():
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


def test_event_time_window_labels_both_classes_and_accuracy_alone_fires(tmp_path):
    rng = np.random.default_rng(3)
    home = tmp_path / "home"
    register_model(home, features(rng, 4000))
    _, y = write_event_world(home, rng, 1500, wrong=0.45)
    with pytest.raises(ValueError, match="event time"):                 # wall time (today) is not the window any more
        monitor.run_monitor(home, pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=1), pd.Timestamp.now(tz="UTC"))
    res = monitor.run_monitor(home, DAY0, DAY0 + pd.Timedelta(days=5))
    assert res["n_predictions"] == 1500 and res["n_labelled"] == 1500 and res["labelled_churned"] == int(y.sum())
    m = res["metrics"]
    assert all(m[k] is not None for k in ("accuracy", "precision", "recall", "roc_auc"))   # both classes known
    assert m["accuracy"] < 0.85 and m["estimated_accuracy"] > m["accuracy"]
    assert [p["window"][:10] for p in res["performance"]] == [str((DAY0 + pd.Timedelta(days=k)).date()) for k in range(5)]
    assert not res["drift"]["dataset_drift"] and res["drift"]["max_psi"] < 0.1
    assert res["trigger"]["retrain"] and res["trigger"]["reasons"] == ["accuracy_degradation"]
    assert res["verdict"].startswith("**Retrain: yes** — realised accuracy")
    first = next(c for c in json.loads(open(res["notebook"]).read())["cells"] if c["cell_type"] == "code" and c.get("outputs")
                 and "parameters" not in c["metadata"].get("tags", []) and "injected-parameters" not in c["metadata"].get("tags", []))
    shown = "".join(o.get("data", {}).get("text/markdown", "") if isinstance(o.get("data", {}).get("text/markdown", ""), str)
                    else "".join(o["data"]["text/markdown"]) for o in first["outputs"])
    assert "Retrain: yes" in shown                                       # the report opens with the verdict


def test_event_times_from_the_clients_record(tmp_path):
    rng = np.random.default_rng(4)
    home = tmp_path / "home"
    register_model(home, features(rng, 4000))
    ev, _ = write_event_world(home, rng, 600, wrong=0.0, with_as_of=False)
    path = tmp_path / "event_times.parquet"; ev.to_parquet(path)
    with pytest.raises(ValueError, match="no predictions"):            # without the record the log is all wall time
        monitor.run_monitor(home, DAY0, DAY0 + pd.Timedelta(days=5))
    res = monitor.run_monitor(home, DAY0, DAY0 + pd.Timedelta(days=5), event_times=path)
    assert res["n_predictions"] == 600 and res["n_labelled"] == 600
    assert res["metrics"]["accuracy"] > 0.85 and res["trigger"]["reasons"] == []
