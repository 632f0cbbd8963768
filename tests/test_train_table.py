"""Training on a user's own churn table: end to end through the CLI on the embedded store, against a real `mlflow server`,
batch prediction, and the bad inputs (each a clear error with nothing registered)."""
import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest

from churnops import train
from churnops.cli import main
from churnops.config import Paths
from churnops import files, metrics, tracking
from conftest import free_port_number

FAST = ["--trials", "2", "--families", "logreg", "--folds", "3", "--quiet"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    "One embedded home for the module (the SQLite tracking store is created once)."
    return tmp_path_factory.mktemp("train_home")


@pytest.fixture(scope="module")
def telco_csv(tmp_path_factory):
    p = tmp_path_factory.mktemp("telco") / "telco.csv"
    train.make_telco_table(500, seed=7).to_csv(p, index=False)
    return p


@pytest.fixture(scope="module")
def trained(home, telco_csv):
    "A first model trained through the CLI on the embedded store: version 1 of 'telco'."
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    rc = main(["train-table", "--home", str(home), "--data", str(telco_csv), "--target", "Churn", "--id", "customerID",
               "--name", "telco", *FAST])
    assert rc == 0
    return home


def registered_versions(home, name):
    from mlflow.tracking import MlflowClient
    tracking.setup_mlflow(home, "probe")
    return MlflowClient().search_model_versions(f"name = '{name}'")


def test_train_table_logs_everything(trained, capsys):
    import mlflow
    from mlflow.tracking import MlflowClient
    pipe, mv = tracking.load_model(trained, "telco")
    assert int(mv.version) == 1
    run = MlflowClient().get_run(mv.run_id)
    m, tags, params = run.data.metrics, run.data.tags, run.data.params
    assert set(metrics.METRIC_NAMES) <= set(m) and "cv_roc_auc" in m
    assert 0.6 < m["roc_auc"] < 0.97, m["roc_auc"]          # learns, but no leakage-level score
    for t in ["churnops.data_version", "churnops.data_hashes", "churnops.feature_set_version", "churnops.git_commit",
              "churnops.version", "churnops.as_of_start", "churnops.as_of_end", "churnops.model_family", "churnops.feature_columns"]:
        assert t in tags, t
    assert "customerID" not in json.loads(tags["churnops.feature_columns"])   # the id is never a feature
    assert int(params["train_rows"]) + int(params["val_rows"]) + int(params["test_rows"]) == 500
    assert json.loads(params["coerced_unparseable"]).get("TotalCharges", 0) > 0   # blanks in TotalCharges reported
    arts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "figures")}
    assert {f"figures/{f}" for f in ["roc_curve.png", "pr_curve.png", "calibration.png", "confusion_matrix.png",
                                     "feature_importance.png"]} <= arts
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {"training", "validation", "test"}
    children = MlflowClient().search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert len(children) == 2 and all("cv_roc_auc" in c.data.metrics or c.data.tags["optuna.state"] != "COMPLETE" for c in children)
    info = mlflow.models.get_model_info(f"models:/telco/1")
    assert info.signature is not None and info.saved_input_example_info is not None
    assert info.flavors["sklearn"]["serialization_format"] == "skops"


def test_predict_cli_latest_version_and_alias(trained, telco_csv, tmp_path, capsys):
    from mlflow.tracking import MlflowClient
    out = tmp_path / "pred.parquet"
    assert main(["predict", "--home", str(trained), "--model", "telco", "--data", str(telco_csv), "--out", str(out)]) == 0
    pred = pd.read_parquet(out)
    assert list(pred.columns) == ["customerID", "churn_probability", "churn_predicted"] and len(pred) == 500
    assert pred["churn_probability"].between(0, 1).all()
    raw = pd.read_csv(telco_csv)
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(raw["Churn"] == "Yes", pred["churn_probability"]) > 0.65
    tracking.setup_mlflow(trained, "telco")
    MlflowClient().set_registered_model_alias("telco", "champion", "1")
    out2 = tmp_path / "pred2.csv"
    assert main(["predict", "--home", str(trained), "--model", "telco@champion", "--data", str(telco_csv), "--out", str(out2)]) == 0
    assert np.allclose(pd.read_csv(out2)["churn_probability"], pred["churn_probability"])
    assert main(["predict", "--home", str(trained), "--model", "telco/9", "--data", str(telco_csv), "--out", str(out2)]) == 1
    assert "version 9 not found" in capsys.readouterr().err


def test_predict_missing_column_is_named(trained, telco_csv, tmp_path):
    df = pd.read_csv(telco_csv).drop(columns=["Contract"])
    with pytest.raises(files.TableError, match="Contract"):
        train.predict_table(trained, "telco", df)


def _bad(tmp_path, df, name="bad.csv"):
    p = tmp_path / name
    df.to_csv(p, index=False)
    return p


BAD_CASES = {
    "target_missing": (lambda d: d.drop(columns=["Churn"]), "target column 'Churn' not found"),
    "one_class": (lambda d: d.assign(Churn="No"), "exactly two values, found 1"),
    "three_values": (lambda d: d.assign(Churn=np.resize(["Yes", "No", "Maybe"], len(d))), "exactly two values, found 3"),
    "too_few_rows": (lambda d: d.head(12), "rows"),
    "all_nan_feature": (lambda d: d.assign(Empty=np.nan), "'Empty' has no values"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_table_clear_error_nothing_registered(case, trained, tmp_path, capsys):
    make, message = BAD_CASES[case]
    df = make(train.make_telco_table(200, seed=1))
    p = _bad(tmp_path, df)
    name = f"bad-{case}"
    rc = main(["train-table", "--home", str(trained), "--data", str(p), "--target", "Churn", "--id", "customerID",
               "--name", name, *FAST])
    err = capsys.readouterr().err
    assert rc == 1 and message in err, err
    assert registered_versions(trained, name) == []


def test_fewer_rows_than_folds(tmp_path):
    df = train.make_telco_table(200, seed=2)
    X, y, _, spec = train.prepare_table(df, "Churn", "customerID")
    with pytest.raises(ValueError, match="fewer than the 3 CV folds"):
        train.stratified_folds(y[:2], 3)
    p = _bad(tmp_path, df.head(8))
    with pytest.raises(files.TableError, match="smaller class has"):
        train.train_table(p, "Churn", "few", home=tmp_path, id_column="customerID", trials=1, quiet=True)


def test_duplicate_ids_warn_and_missing_targets_dropped(trained, tmp_path, capsys):
    df = train.make_telco_table(300, seed=3)
    df.loc[5, "customerID"] = df.loc[4, "customerID"]
    df.loc[[10, 11, 12], "Churn"] = None
    p = _bad(tmp_path, df)
    with pytest.warns(UserWarning) as rec:
        X, y, ids, spec = train.prepare_table(pd.read_csv(p), "Churn", "customerID", source=str(p))
    msgs = " ".join(str(w.message) for w in rec)
    assert "1 duplicated value" in msgs and "dropped 3 row(s) with a missing target" in msgs
    assert spec.report["rows_dropped_missing_target"] == 3 and len(y) == 297


def test_unparseable_file(tmp_path, trained, capsys):
    p = tmp_path / "broken.csv"
    p.write_text('a,b,Churn\n1,2,Yes\n"unterminated,3,No\n4,5,6,7,8\n')
    rc = main(["train-table", "--home", str(trained), "--data", str(p), "--target", "Churn", "--name", "broken", *FAST])
    assert rc == 1 and "could not be parsed as CSV" in capsys.readouterr().err
    q = tmp_path / "broken.parquet"
    q.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(files.TableError, match="could not be parsed as parquet"):
        files.read_table(q)
    assert registered_versions(trained, "broken") == []


def test_unreachable_tracking_uri_is_named(tmp_path, telco_csv, tracking_env):
    uri = f"http://127.0.0.1:{free_port_number()}"
    tracking_env(uri)
    with pytest.raises(tracking.TrackingUnreachable, match=uri.replace(".", r"\.")):
        train.train_table(telco_csv, "Churn", "nowhere", home=tmp_path, id_column="customerID", trials=1, quiet=True)
    assert not Paths(tmp_path).mlflow_db.exists()


@pytest.mark.server
def test_train_table_against_mlflow_server(mlflow_server, tracking_env, telco_csv, tmp_path):
    "The same path against a real `mlflow server` process on 127.0.0.1: logs, registers, loads back."
    tracking_env(mlflow_server)
    res = train.train_table(telco_csv, "Churn", "telco-srv", home=tmp_path, id_column="customerID", trials=1,
                            families=["logreg"], quiet=True)
    assert res.version >= 1
    pipe, mv = tracking.load_model(tmp_path, "telco-srv", res.version)
    pred, info = train.predict_table(tmp_path, f"telco-srv/{res.version}", telco_csv)
    assert info["rows"] == 500 and not Paths(tmp_path).mlflow_db.exists()   # nothing went to the embedded store


def test_tune_cli_resumes_the_study_and_registers_next_version(trained, telco_csv, capsys):
    "`churnops tune --data` on the same table and settings resumes the journal study: 2 trials before, 1 more now."
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    capsys.readouterr()
    rc = main(["tune", "--home", str(trained), "--data", str(telco_csv), "--target", "Churn", "--id", "customerID",
               "--name", "telco", "--trials", "3", "--families", "logreg", "--quiet"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["version"] == 2
    storage = JournalStorage(JournalFileBackend(str(Paths(trained).optuna / "journal.log")))
    [summary] = [s for s in optuna.get_all_study_summaries(storage) if s.study_name.startswith("telco-")]
    assert summary.n_trials == 3


def _run_artifact(home, run_id, path):
    import mlflow
    tracking.use_tracking(home)
    return json.loads(open(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(home / "dl"))).read())


def test_table_model_logs_schema_and_profile_and_raw_rows_replay_exactly(trained, telco_csv):
    "The run carries table_schema.json and reference_profile.json; the schema replayed on raw rows gives the training frame."
    from churnops import profile
    _, mv = tracking.load_model(trained, "telco", 1)
    schema = _run_artifact(trained, mv.run_id, train.TABLE_SCHEMA_ARTIFACT)
    prof = _run_artifact(trained, mv.run_id, profile.PROFILE_ARTIFACT)
    assert prof["format"] == profile.PROFILE_FORMAT
    assert schema["id_column"] == "customerID" and schema["coerced_to_number"] == ["TotalCharges"]
    assert schema["target_mapping"] == {"positive": "yes", "negative": "no"}
    assert "customerID" not in schema["features"] and sorted(prof["columns"]) == sorted(schema["features"])
    raw = pd.read_csv(telco_csv, dtype=str, keep_default_na=False)        # every value as the text a CRM export holds
    X, _, _, _ = train.prepare_table(pd.read_csv(telco_csv), "Churn", "customerID")
    pd.testing.assert_frame_equal(train.coerce_like_training(raw, schema), X)
    one = train.coerce_like_training(pd.DataFrame([raw.iloc[0].to_dict() | {"TotalCharges": " "}]), schema)
    assert np.isnan(one["TotalCharges"].iloc[0]) and one["tenure"].dtype == float


def test_churnops_monitor_on_a_table_model(trained, telco_csv):
    "A table model's served traffic (logged through PredictionLog as serving does) is monitored against its own profile."
    import sqlite3
    from churnops import monitor
    from churnops.predlog import PredictionLog, feedback_db
    pipe, mv = tracking.load_model(trained, "telco", 1)
    schema = _run_artifact(trained, mv.run_id, train.TABLE_SCHEMA_ARTIFACT)
    raw = train.make_telco_table(300, seed=11)
    X = train.coerce_like_training(raw, schema)
    p = pipe.predict_proba(X)[:, 1]
    now = pd.Timestamp.now(tz="UTC")
    log = PredictionLog(Paths(trained).predictions, flush_seconds=60)
    for i, rec in enumerate(X.astype(object).where(X.notna(), None).to_dict("records")):
        log.append(((now - pd.Timedelta(minutes=i)).to_pydatetime(), f"t{i}", raw["customerID"].iloc[i], int(mv.version), "champion",
                    4.0, 200, float(p[i]), bool(p[i] >= 0.5), json.dumps(rec)))
    log.close()
    with sqlite3.connect(feedback_db(trained)) as con:
        con.execute("CREATE TABLE IF NOT EXISTS feedback(customer_id TEXT NOT NULL, churned INTEGER NOT NULL, ts TEXT NOT NULL)")
        con.executemany("INSERT INTO feedback VALUES (?, ?, ?)",
                        [(c, int(y == "Yes"), (now if y == "Yes" else now + pd.Timedelta(days=31)).isoformat())   # stayed: known past the horizon
                         for c, y in zip(raw["customerID"], raw["Churn"])])
    res = monitor.run_monitor(trained, window_start=now - pd.Timedelta(days=1), window_end=now + pd.Timedelta(minutes=1),
                              model="telco", model_ref="1")
    assert res["reference"].startswith("model telco v1") and res["n_predictions"] == 300
    assert res["drift"]["n_columns"] == len(schema["features"]) and res["drift"]["n_drifted"] <= 2   # same generator: little drift
    assert res["n_labelled"] == 300 and res["metrics"]["roc_auc"] > 0.65


def test_table_path_reaches_the_best_of_logreg_and_small_gbm_on_held_out_rows(tmp_path):
    "On a held-out split of a telco-shaped table, the flat-table path's ROC AUC is within 0.01 of the better baseline."
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    df = train.make_telco_table(6000, seed=21)
    fit_rows, held = train_test_split(df, test_size=0.3, stratify=df["Churn"], random_state=0)
    res = train.train_table(fit_rows.reset_index(drop=True), "Churn", "telco-q", home=tmp_path, id_column="customerID",
                            trials=8, families=["logreg", "hgb"], quiet=True)
    pred, _ = train.predict_table(tmp_path, f"telco-q/{res.version}", held)
    y_held = (held["Churn"] == "Yes").to_numpy()
    ours = roc_auc_score(y_held, pred["churn_probability"])
    X_fit, y_fit, _, spec = train.prepare_table(fit_rows, "Churn", "customerID")
    X_held = train.coerce_like_training(held, spec)
    pre = lambda: train.make_table_preprocessor(spec.numeric, spec.categorical)
    base = {"logreg": make_pipeline(pre(), LogisticRegression(max_iter=2000)),
            "hgb": make_pipeline(pre(), HistGradientBoostingClassifier(max_iter=100, max_leaf_nodes=15, random_state=0))}
    scores = {k: roc_auc_score(y_held, m.fit(X_fit, y_fit).predict_proba(X_held)[:, 1]) for k, m in base.items()}
    assert ours >= max(scores.values()) - 0.01, (ours, scores)
