"""The monitoring job end to end: a real prediction log and feedback store, a model registered in a real MLflow store with its
reference profile, papermill running nbs/jobs/monitor.ipynb, the `churnops monitor` command."""
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnops import monitor, profile
from churnops.config import Paths

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def features(rng, n, shift=0.0):
    return pd.DataFrame({"tenure_days": rng.gamma(2, 200 * (1 + shift), n), "monthly_charges": rng.normal(60 + 25 * shift, 15, n),
                         "sessions_30d": rng.poisson(20 * (1 - 0.5 * shift), n), "tickets_30d": rng.poisson(1 + 2 * shift, n).astype(float),
                         "plan": rng.choice(["basic", "plus", "pro"], n, p=[.5 - .3 * shift, .3, .2 + .3 * shift]),
                         "region": rng.choice(["n", "s", "e", "w"], n)})


def register_model(home, ref_df):
    "A model version in the home's MLflow store whose run carries the reference profile (no sklearn model needed)."
    import mlflow
    from churnops.tracking import setup_mlflow
    os.environ.pop("MLFLOW_TRACKING_URI", None)   # mlflow.set_tracking_uri exports it, which would pin every later home to the first
    setup_mlflow(home)
    with mlflow.start_run() as run:
        profile.log_reference_profile(profile.reference_profile(ref_df))
        mlflow.log_text("placeholder", "model/README.txt")
    client = mlflow.MlflowClient()
    client.create_registered_model("churn")
    mv = client.create_model_version("churn", f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_registered_model_alias("churn", "champion", mv.version)
    return mv


def write_world(home, rng, n, end, shift=0.0, wrong=0.0, prefix="a"):
    "Prediction-log parts over the 2 days before `end`, and delayed labels for 80% of them."
    cur = features(rng, n, shift)
    p = np.where(rng.random(n) < 0.3, rng.uniform(0.9, 0.99, n), rng.uniform(0.01, 0.1, n))
    y = (rng.random(n) < p).astype(int)
    y = np.where(rng.random(n) < wrong, 1 - y, y)                     # the world moved: the model is wrong more often
    ts = end - pd.to_timedelta(np.sort(rng.uniform(60, 2 * 86400, n))[::-1], unit="s")
    cids = [f"{prefix}{i}" for i in range(n)]
    log = pd.DataFrame({"ts": ts, "request_id": [f"r{i}" for i in range(n)], "customer_id": cids, "model_version": 1,
                        "variant": "champion", "latency_ms": rng.gamma(2, 5, n), "status": np.where(rng.random(n) < 0.001, 500, 200),
                        "churn_probability": p, "churn_predicted": p >= 0.5,
                        "features_json": [json.dumps(r) for r in cur.to_dict("records")]})
    d = Paths(home).predictions; d.mkdir(parents=True, exist_ok=True)
    for k, part in enumerate(np.array_split(np.arange(n), 3)):
        log.iloc[part].to_parquet(d / f"part-{prefix}{k:04d}.parquet")
    lab = rng.random(n) < 0.8
    with sqlite3.connect(d / "feedback.db") as con:
        con.execute("CREATE TABLE IF NOT EXISTS feedback(customer_id TEXT NOT NULL, churned INTEGER NOT NULL, ts TEXT NOT NULL)")
        con.executemany("INSERT INTO feedback VALUES (?, ?, ?)",
                        [(cids[i], int(y[i]), (ts[i] + pd.Timedelta(days=rng.uniform(0, 29) if y[i] else 31)).isoformat())
                         for i in np.flatnonzero(lab)])    # churns reported within the horizon, stayers once it is over
    return log


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    "One home, one registered model: a stable window (4 to 2 days ago), then a drifted one (the last 2 days)."
    rng = np.random.default_rng(0)
    home = tmp_path_factory.mktemp("home")
    register_model(home, features(rng, 5000))
    end = pd.Timestamp.now(tz="UTC") + pd.Timedelta(minutes=5)
    mid = end - pd.Timedelta(days=2, minutes=1)
    write_world(home, rng, 3000, mid, 0.0, 0.0, prefix="a")
    write_world(home, rng, 3000, end, 1.0, 0.35, prefix="b")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    return {"stable": (home, mid), "drifted": (home, end)}


@pytest.fixture(autouse=True)
def _no_pinned_tracking_uri():
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


def test_stable_world_does_not_fire(worlds):
    home, end = worlds["stable"]
    res = monitor.run_monitor(home, end - pd.Timedelta(days=2, minutes=1), end)
    assert res["n_predictions"] == 3000 and 2200 < res["n_labelled"] < 2600
    assert not res["drift"]["dataset_drift"] and res["drift"]["max_psi"] < 0.1
    assert res["metrics"]["accuracy"] > 0.9
    assert abs(res["metrics"]["estimated_accuracy"] - res["metrics"]["accuracy"]) < 0.03     # CBPE close on calibrated p
    assert res["alerts"] == [] and res["trigger"]["retrain"] is False and res["trigger"]["reasons"] == []
    assert res["system"]["gpu"] == "absent" or isinstance(res["system"]["gpu"], list)
    nb, html = Path(res["notebook"]), Path(res["html"])
    assert nb.parent == Paths(home).reports and nb.exists() and html.exists()
    images = [o for c in json.loads(nb.read_text())["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 3                                  # distributions, performance over time, latency over time
    assert html.read_text().count("data:image/png;base64") >= 3
    import mlflow
    from churnops.tracking import use_tracking
    use_tracking(home)
    run = mlflow.get_run(res["mlflow_run_id"])
    assert mlflow.get_experiment(run.info.experiment_id).name == "churn-monitoring"
    assert run.data.metrics["accuracy"] == pytest.approx(res["metrics"]["accuracy"])
    assert "drift.monthly_charges" in run.data.metrics


def test_drifted_world_flags_features_performance_and_fires(worlds, tmp_path):
    home, end = worlds["drifted"]
    marker = tmp_path / "pipeline-started"
    cmd = [sys.executable, "-c", f"import os; p = {str(marker)!r}; open(p + '.tmp', 'w').write(os.environ['CHURNOPS_RETRAIN_REASONS']); os.replace(p + '.tmp', p)"]
    out = subprocess.run([sys.executable, "-c", "from churnops.cli import main; raise SystemExit(main())", "monitor",
                          "--home", str(home), "--window-start", (end - pd.Timedelta(days=2, minutes=1)).isoformat(),
                          "--window-end", end.isoformat(), "--retrain", "--retrain-command", " ".join(cmd[:2]) + ' "' + cmd[2].replace('"', '\\"') + '"',
                          "--quiet"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "features drifted" in out.stdout and "retrain: True" in out.stdout
    res = json.loads(sorted(Paths(home).reports.glob("monitor-*.json"))[-1].read_text())
    drifted = set(res["drift"]["drifted_columns"])
    assert {"tenure_days", "monthly_charges", "sessions_30d", "tickets_30d", "plan"} <= drifted and "region" not in drifted
    assert res["drift"]["dataset_drift"] and res["metrics"]["accuracy"] < 0.85
    assert {a["metric"] for a in res["alerts"]} >= {"accuracy", "psi"}
    assert res["trigger"]["retrain"] and res["trigger"]["reasons"] == ["accuracy_degradation", "data_drift"]
    deadline = time.monotonic() + 60                      # the pipeline command runs in the background
    while not marker.exists() and time.monotonic() < deadline: time.sleep(0.1)
    assert marker.read_text() == "accuracy_degradation,data_drift"
    alerts = [json.loads(l) for l in (Paths(home).reports / "alerts.jsonl").read_text().splitlines()]
    assert {a["metric"] for a in alerts} >= {"accuracy", "psi"}


def test_empty_window_fails_clearly_without_a_report(worlds):
    home, end = worlds["stable"]
    before = set(Paths(home).reports.glob("monitor-*"))
    with pytest.raises(ValueError, match="no predictions in the prediction log .* between 2020-01-01"):
        monitor.run_monitor(home, "2020-01-01", "2020-01-02")
    with pytest.raises(ValueError, match="is not before window end"):
        monitor.run_monitor(home, "2020-01-02", "2020-01-01")
    assert set(Paths(home).reports.glob("monitor-*")) == before
    out = subprocess.run([sys.executable, "-c", "from churnops.cli import main; raise SystemExit(main())", "monitor",
                          "--home", str(home), "--window-start", "2020-01-01", "--window-end", "2020-01-02"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "no predictions in the prediction log" in out.stderr


def test_job_notebook_fails_clearly_on_a_bad_reference(worlds, tmp_path):
    "A failing job cell: RuntimeError naming the cell, with the executed notebook and HTML kept for inspection."
    home, end = worlds["stable"]
    bad = tmp_path / "bad.json"; bad.write_text('{"format": "something else"}')
    with pytest.raises(RuntimeError, match="not a churnops reference profile") as e:
        monitor.run_monitor(home, end - pd.Timedelta(days=2, minutes=1), end, reference_profile=bad)
    nb = e.value.notebook
    assert nb.exists() and nb.with_suffix(".html").exists()
