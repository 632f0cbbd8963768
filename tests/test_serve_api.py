"""The prediction service against a real MLflow registry and a real uvicorn process: answers, bad input, feedback,
metrics, readiness, the online-store path, and the prediction log."""
import json
import os
import stat
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from churnops import tracking

from conftest import free_port_number
from test_serve_helpers import template_home, churn_frame as _cf, ONLINE_CUSTOMERS, build_template, copy_home, record, running_server, churn_frame, churn_pipeline

pytestmark = pytest.mark.server


@pytest.fixture(scope="session")
def serve_template():
    return template_home()


@pytest.fixture(scope="module")
def server(serve_template, tmp_path_factory):
    home = copy_home(serve_template[0], tmp_path_factory.mktemp("serve_api"))
    with running_server(home, free_port_number()) as srv:
        yield srv


def post(srv, payload=None, content=None, headers=None):
    return httpx.post(srv.url + "/predict", json=payload, content=content, headers=headers, timeout=10)


def test_predict_one_and_many_match_the_registered_pipeline(server, serve_template):
    from churnops import train
    pipe, mv = tracking.load_model(serve_template[0], "churn", "champion")
    r = post(server, record(0, customer_id=11))
    assert r.status_code == 200, r.text
    j = r.json()
    assert (j["model"], j["version"], j["semver"], j["variant"], j["customer_id"]) == ("churn", 1, "1.0.0", "champion", 11)
    assert j["threshold"] == 0.3
    expected = pipe.predict_proba(pd.DataFrame([record(0)]))[0, 1]
    assert j["churn_probability"] == pytest.approx(expected, abs=1e-12)
    assert j["churn_predicted"] == (expected >= 0.3)
    many = post(server, [record(i) for i in range(5)])
    assert many.status_code == 200 and len(many.json()) == 5
    exp5 = pipe.predict_proba(pd.DataFrame([record(i) for i in range(5)]))[:, 1]
    np.testing.assert_allclose([x["churn_probability"] for x in many.json()], exp5, rtol=0, atol=1e-12)


def test_health_ready_and_openapi(server):
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    rd = httpx.get(server.url + "/ready").json()
    assert rd["ready"] is True and rd["version"] == 1 and rd["fast_path"] is True
    doc = httpx.get(server.url + "/openapi.json").json()
    assert {"/predict", "/feedback"} <= set(doc["paths"])
    schemas = doc["components"]["schemas"]
    body = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["anyOf"][0] == {"$ref": "#/components/schemas/ChurnV1Features"}
    assert set(schemas["ChurnV1Features"]["required"]) == set(record(0))           # the signature's columns
    assert {"churn_probability", "version", "customer_id"} <= set(schemas["ChurnPrediction"]["properties"])


@pytest.mark.parametrize("payload,field", [
    ({k: v for k, v in record(0).items() if k != "plan"}, "plan"),                  # missing field
    (record(0, tenure_days="long"), "tenure_days"),                                 # wrong type
    (record(0, plan=3), "plan"),                                                    # wrong type
    (record(0, monthly_charges=True), "monthly_charges"),                           # a boolean is not a number
    (record(0, colour="red"), "colour"),                                            # unknown extra field
    ([record(0), record(1, tickets_30d=1.5)], "tickets_30d"),                       # second record of a list
])
def test_bad_records_get_422_naming_the_field(server, payload, field):
    r = post(server, payload)
    assert r.status_code == 422, r.text
    assert field in {d["field"] for d in r.json()["detail"]}


@pytest.mark.parametrize("raw,field", [(b'NaN', "monthly_charges"), (b'Infinity', "monthly_charges"), (b'-Infinity', "tenure_days"),
                                       (b'1e999', "monthly_charges")])
def test_nan_and_inf_get_422_naming_the_field(server, raw, field):
    rec = record(0); rec[field] = 0.0
    body = json.dumps(rec).replace(f'"{field}": 0.0', f'"{field}": ' + raw.decode())
    r = post(server, content=body.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert field in {d["field"] for d in r.json()["detail"]}


@pytest.mark.parametrize("body,what", [(b'{"tenure_days": 3,', "malformed"), (b'', "malformed"), (b'"text"', "expected"),
                                       (b'[]', "empty"), (b'[1, 2]', "expected an object")])
def test_malformed_json_and_empty_list_get_422(server, body, what):
    r = post(server, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert what in json.dumps(r.json()["detail"])


def test_oversized_payload_gets_413(server):
    big = [record(i) for i in range(20)] * 600          # ~1.5 MB, 12000 records
    r = post(server, big)
    assert r.status_code == 413, r.text
    assert "limit" in r.json()["detail"]
    many = [record(0)] * 1001                           # small body, too many records
    assert post(server, many).status_code == 413


def test_unknown_categories_and_missing_numbers_are_scored(server):
    r = post(server, [record(0, plan="platinum", region="mars"), record(1, monthly_charges=None)])
    assert r.status_code == 200, r.text
    assert all(0 <= x["churn_probability"] <= 1 for x in r.json())


def test_feedback_is_stored(server):
    r = httpx.post(server.url + "/feedback", json=[{"customer_id": 11, "churned": True, "time": "2026-11-01T00:00:00Z"},
                                                   {"customer_id": "12", "churned": False}])
    assert r.status_code == 200 and r.json() == {"stored": 2}
    assert httpx.post(server.url + "/feedback", json={"customer_id": 1, "churned": "maybe"}).status_code == 422
    from churnops.predlog import read_feedback
    fb = read_feedback(server.home)
    assert fb.customer_id.tolist()[-2:] == ["11", "12"] and fb.churned.tolist()[-2:] == [1, 0]
    assert str(fb.ts.iloc[-2]) == "2026-11-01 00:00:00+00:00"


def test_metrics_count_requests_errors_and_latency(server):
    post(server, record(0)); post(server, record(0, plan=1))
    text = httpx.get(server.url + "/metrics").text
    ok = [l for l in text.splitlines() if l.startswith('churnops_requests_total{model="churn",status="200",variant="champion",version="1"}')]
    assert ok and float(ok[0].split()[-1]) >= 1
    assert 'churnops_errors_total{model="churn",variant="champion",version="1"}' in text
    assert 'churnops_request_latency_seconds_bucket{le="+Inf",model="churn",variant="champion",version="1"}' in text
    assert "churnops_model_ready 1.0" in text


def test_admin_needs_the_token(server):
    assert httpx.post(server.url + "/admin/rollback").status_code == 401
    assert httpx.post(server.url + "/admin/rollback", headers={"Authorization": "Bearer wrong"}).status_code == 401
    info = Path(server.home) / "serve" / "server.json"
    assert stat.S_IMODE(info.stat().st_mode) == 0o600


def test_prediction_log_has_every_answer(server):
    ids = [post(server, record(i, customer_id=1000 + i)).json()["request_id"] for i in range(10)]
    from churnops.predlog import read_prediction_log
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        log = read_prediction_log(server.home)
        if set(ids) <= set(log.request_id): break
        time.sleep(0.2)
    row = log[log.request_id == ids[3]].iloc[0]
    assert (row.customer_id, row.model_version, row.variant, row.status) == ("1003", 1, "champion", 200)
    assert json.loads(row.features_json)["plan"] == record(3)["plan"]
    assert 0 <= row.churn_probability <= 1 and row.latency_ms > 0
    assert (log.status == 422).any()             # failures are logged too


def test_customer_id_only_reads_the_online_store(server, serve_template):
    from churnops import train
    pipe, _ = tracking.load_model(serve_template[0], "churn", "champion")
    df, _ = churn_frame(seed=0)                       # the store holds the first 50 rows for customers 1..50
    r = post(server, [{"customer_id": 1}, {"customer_id": 7}])
    assert r.status_code == 200, r.text
    expected = pipe.predict_proba(df.iloc[[0, 6]])[:, 1]
    np.testing.assert_allclose([x["churn_probability"] for x in r.json()], expected, rtol=0, atol=1e-12)
    assert [x["customer_id"] for x in r.json()] == [1, 7]


def test_unknown_customer_id_gets_404_with_the_id(server):
    r = post(server, [{"customer_id": 3}, {"customer_id": 987654}])
    assert r.status_code == 404, r.text
    assert r.json()["customer_id"] == 987654 and "987654" in r.json()["detail"]
    assert post(server, {"customer_id": [1]}).status_code == 422


def test_as_of_is_checked_and_logged(server):
    from churnops.predlog import LOG_COLUMNS, read_prediction_log
    bad = post(server, record(0, as_of="the day after tomorrow"))
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "as_of", bad.text
    rid = post(server, record(0, customer_id=77, as_of="2025-03-01T12:00:00+02:00")).json()["request_id"]
    if "as_of" not in LOG_COLUMNS: pytest.skip("the prediction log has no as_of column in this branch")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        log = read_prediction_log(server.home)
        if rid in set(log.request_id): break
        time.sleep(0.2)
    assert str(log[log.request_id == rid].as_of.iloc[0]) == "2025-03-01 10:00:00+00:00"
