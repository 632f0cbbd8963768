"""A `train-table` model served by a real `churnops serve` process: it accepts the table's own raw rows (sent as text, the
id column and the target riding along, `totalcharges` blank for new customers), types them exactly as training did,
echoes the id, logs the id and the typed features, and `churnops monitor` runs on its traffic."""
import json
import os
import signal
import subprocess
import sys

import httpx
import numpy as np
import pandas as pd
import pytest

from churnops import tracking, train
from churnops.cli import main
from churnops.predlog import read_prediction_log
from conftest import free_port_number
from test_serve_helpers import running_server

pytestmark = pytest.mark.server
NAME = "telcoflat"


def cli(home, *args, timeout=300):
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", OMP_NUM_THREADS="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-c", "import sys; from churnops.cli import main; sys.exit(main())", *args, "--home", str(home)],
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def table_home(tmp_path_factory):
    "A home with a table model trained from a CSV export (lower-case names, blanks in totalcharges) and promoted."
    home = tmp_path_factory.mktemp("serve_table")
    # a tiny logistic model: quality and speed gates are not what this test is about
    (home / "churnops.yaml").write_text("offline_gates: {}\nproblem:\n  baseline: 0.0\nconstraints:\n  latency_ms: 60000\n  throughput_rps: 1\n")
    df = train.make_telco_table(600, seed=5)
    df.columns = [c.lower() for c in df.columns]
    assert (df["totalcharges"] == " ").sum() > 0
    csv = home / "telco_export.csv"
    df.to_csv(csv, index=False)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    assert main(["train-table", "--home", str(home), "--data", str(csv), "--target", "churn", "--id", "customerid", "--name", NAME,
                 "--trials", "2", "--families", "logreg", "--folds", "3", "--quiet"]) == 0
    r = cli(home, "promote", "--model", NAME, "--version", "1", "--reason", "test")
    assert r.returncode == 0, r.stdout + r.stderr
    return home, csv


@pytest.fixture(scope="module")
def server(table_home):
    with running_server(table_home[0], free_port_number(), args=("--model", NAME)) as srv:
        yield srv.url, srv.proc


def test_table_rows_served_like_training_and_monitored(table_home, server):
    home, csv = table_home
    url, proc = server
    rows = pd.read_csv(csv, dtype=str, keep_default_na=False)          # every value as the text the export holds
    assert {"customerid", "churn"} <= set(rows.columns) and (rows["totalcharges"] == " ").any()
    records = rows.to_dict("records")
    answers = []
    for i in range(0, len(records), 200):
        r = httpx.post(url + "/predict", json=records[i:i + 200], timeout=60)
        assert r.status_code == 200, r.text
        answers += r.json()
    one = httpx.post(url + "/predict", json=records[0], timeout=60)
    assert one.status_code == 200 and one.json()["customerid"] == records[0]["customerid"]
    assert [a["customerid"] for a in answers] == list(rows["customerid"])
    assert {a["model"] for a in answers} == {NAME} and {a["version"] for a in answers} == {1}

    pipe, mv = tracking.load_model(home, NAME, "champion")
    schema = train.model_table_schema(mv.run_id)
    assert schema["id_column"] == "customerid" and "totalcharges" in schema["coerced_to_number"]
    expected = pipe.predict_proba(train.coerce_like_training(rows, schema))[:, 1]
    np.testing.assert_allclose([a["churn_probability"] for a in answers], expected, rtol=0, atol=1e-9)

    # a row without a feature is refused, naming the record and the column
    bad = httpx.post(url + "/predict", json=[records[0], {k: v for k, v in records[1].items() if k != "tenure"}], timeout=60)
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "tenure"
    assert "record 1: column(s) ['tenure'] needed by the model are missing" in bad.json()["detail"][0]["msg"]

    # the OpenAPI schema describes the table's fields
    comp = httpx.get(url + "/openapi.json", timeout=30).json()["components"]["schemas"]
    rec = comp[f"{NAME.title()}V1Record"]
    assert sorted(rec["required"]) == sorted(schema["features"]) and "customerid" in rec["properties"]
    assert "customerid" in comp["ChurnPrediction"]["properties"]

    proc.send_signal(signal.SIGTERM); proc.wait(30)                 # flushes the prediction log
    logged = read_prediction_log(home)
    ok = logged[logged.status == 200]
    assert len(ok) == len(records) + 1 and set(ok.customer_id) == set(rows["customerid"])
    blank_id = rows.loc[rows["totalcharges"] == " ", "customerid"].iloc[0]
    feats = json.loads(ok.loc[ok.customer_id == blank_id, "features_json"].iloc[0])
    assert sorted(feats) == sorted(schema["features"]) and feats["totalcharges"] is None and isinstance(feats["tenure"], float)

    r = cli(home, "monitor", "--model", NAME, "--days", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(logged)} predictions" in r.stdout, r.stdout                  # the refused records are logged too
    assert f"0/{len(schema['features'])} features drifted" in r.stdout, r.stdout  # its own table: no drift against its profile
