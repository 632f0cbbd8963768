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
