"""The trigger retrains for real: a workspace whose world lives in PostgreSQL, the four job notebooks through DVC and
papermill, MLflow and the registry; new rows in the database make the next run rebuild the data and retrain."""
import json

import pytest
import sqlalchemy as sa
import yaml

from churnops import pipeline, registry
from churnops.tracking import use_tracking
from churnops.simulate import simulate_world

pytestmark = pytest.mark.postgres


def _small_pipeline(home):
    p = home / "training_pipeline.yaml"
    spec = yaml.safe_load(p.read_text())
    spec["stages"]["train"]["params"].update(trials=1, families="logreg", folds=2)
    spec["stages"]["evaluate"]["params"].update(n_resamples=50)
    p.write_text(yaml.safe_dump(spec, sort_keys=False))
    c = home / "churnops.yaml"                       # gates a 300-customer world can pass: the promotion is what is tested
    cfg = yaml.safe_load(c.read_text())
    cfg.update({"problem": {**cfg["problem"], "baseline": 0.0}, "offline_gates": {"roc_auc": {"min": 0.5, "target": 0.6}}})
    c.write_text(yaml.safe_dump(cfg, sort_keys=False))


def _add_transactions(url, n=40):
    eng = sa.create_engine(url)
    with eng.begin() as c:
        top, cust, last = c.execute(sa.text("SELECT max(transaction_id), min(customer_id), max(event_timestamp) FROM transactions")).one()
        c.execute(sa.text("INSERT INTO transactions (transaction_id, customer_id, event_timestamp, amount) "
                          "VALUES (:i, :c, :t, :a)"), [{"i": top + 1 + k, "c": cust, "t": last, "a": 5.0 + k} for k in range(n)])
    eng.dispose()


def test_new_rows_in_postgres_make_a_triggered_run_retrain(postgres_url, tmp_path):
    home = tmp_path / "ws"
    pipeline.init_workspace(home)
    _small_pipeline(home)
    simulate_world(home, customers=300, days=270, seed=3, db_url=postgres_url)

    s1 = pipeline.run_pipeline(home, quiet=True, reasons=["initial"])
    assert s1["ran"] == ["data_validation", "feature_engineering", "train", "evaluate"] and not s1["ran_nothing"]
    fp1 = json.loads((home / pipeline.FINGERPRINT_FILE).read_text())
    assert fp1["transactions"]["kind"] == "sql" and fp1["transactions"]["url"].startswith("postgresql")
    # the one job contract: every stage wrote its result; train's holds the MLflow run, the version and the metrics
    train = json.loads((home / "outputs" / "train.json").read_text())
    assert {"run_id", "model", "version", "metrics"} <= set(train) and train["pipeline_run_id"] == s1["run_id"]
    assert 0 < train["metrics"]["roc_auc"] <= 1 and train["version"] == 1
    data_res = json.loads((home / "outputs" / "data_validation.json").read_text())
    assert set(data_res["hashes"]) == set(data_res["tables"]) and data_res["build_id"]
    assert json.loads((home / "outputs" / "feature_engineering.json").read_text())["feature_set_version"]
    assert "decision" in json.loads((home / "outputs" / "evaluate.json").read_text())
    assert s1["promotion"]["action"] == "promote", s1["promotion"]       # the audit trail says why
    hist = registry.history(home, "churn")
    assert "initial" in hist[(hist.action == "promote") & (hist.to_version == 1)].reason.iloc[-1]

    s2 = pipeline.run_pipeline(home, quiet=True, reasons=["data_drift"])    # nothing new: the trigger's run says so
    assert s2["ran_nothing"] and s2["skipped"] == s1["ran"] and s2["promotion"] is None

    _add_transactions(postgres_url)                                        # new rows outside the workspace
    s3 = pipeline.run_pipeline(home, quiet=True, reasons=["new_data_available"])
    assert s3["ran"] == s1["ran"] and not s3["ran_nothing"]
    fp3 = json.loads((home / pipeline.FINGERPRINT_FILE).read_text())
    assert fp3["transactions"]["rows"] == fp1["transactions"]["rows"] + 40
    assert fp3["customers"] == fp1["customers"]
    data3 = json.loads((home / "outputs" / "data_validation.json").read_text())
    assert data3["hashes"]["transactions"] != data_res["hashes"]["transactions"]   # the new rows are in the new data version

    train3 = json.loads((home / "outputs" / "train.json").read_text())
    assert train3["version"] == 2 and train3["run_id"] != train["run_id"]
    from mlflow import MlflowClient
    use_tracking(home)
    tags = MlflowClient().get_run(train3["run_id"]).data.tags
    assert tags["churnops.trigger_reasons"] == "new_data_available" and tags["churnops.pipeline_run_id"] == s3["run_id"]
    rec = pipeline.read_run(home, s3["run_id"])
    assert rec["reasons"] == ["new_data_available"] and rec["results"]["train"]["version"] == 2
    assert [r["reasons"] for r in pipeline.triggered_runs(home)] == [["initial"], ["data_drift"], ["new_data_available"]]
    if s3["promotion"]["action"] == "promote":                             # v2 may not beat v1: then nothing to audit
        hist = registry.history(home, "churn")
        assert "new_data_available" in hist[hist.to_version == 2].reason.iloc[-1]
