"""The scale configuration: an `mlflow server` backed by PostgreSQL, and two tuning worker processes sharing one Optuna
RDB study on the same PostgreSQL server; the study then resumes with one more trial. Training at scale: tuning on a
stratified sample, the final fit on every training row."""
import optuna
import pytest

from churnops import train
from churnops.config import Paths
from churnops import files


@pytest.mark.postgres
@pytest.mark.server
def test_postgres_mlflow_server_and_shared_optuna_study(mlflow_server_postgres, postgres_url, tracking_env, tmp_path):
    tracking_env(mlflow_server_postgres)
    csv = tmp_path / "telco.csv"
    train.make_telco_table(400, seed=5).to_csv(csv, index=False)
    res = train.train_table(csv, "Churn", "telco-pg", home=tmp_path, id_column="customerID", trials=4, families=["logreg"],
                            storage=postgres_url, study_name="shared", workers=2, quiet=True)
    assert res.version == 1 and res.metrics["roc_auc"] > 0.6
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    done = [t for t in study.trials if t.state.is_finished()]
    assert len(done) >= 4
    assert len({t.user_attrs.get("pid") for t in done}) == 2, "both worker processes ran trials of the one study"
    from mlflow.tracking import MlflowClient
    children = MlflowClient().search_runs([MlflowClient().get_run(res.run_id).info.experiment_id],
                                          f"tags.mlflow.parentRunId = '{res.run_id}'")
    assert len(children) == len(done)                        # every trial, from either worker, is a nested run
    # resume: the same study with a larger total runs only the missing trial
    X, y, _, spec = train.prepare_table(files.read_table(csv), "Churn", "customerID")
    s2 = train.tune(X, y, train.stratified_folds(y, 3), train.make_table_preprocessor(spec.numeric, spec.categorical),
                    study_name="shared", storage=postgres_url, families=["logreg"], n_trials=len(done) + 1, quiet=True)
    assert len([t for t in s2.trials if t.state.is_finished()]) == len(done) + 1
    assert not Paths(tmp_path).mlflow_db.exists() and not Paths(tmp_path).optuna.exists()


def test_train_churn_tunes_on_a_sample_and_fits_on_all(tmp_path, monkeypatch):
    "With `tune_rows` below the training rows, the study tunes on a stratified sample, the model is fitted on every training row, and the run says so."
    import numpy as np
    from mlflow.tracking import MlflowClient
    from churnops import data, simulate
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)          # the home's own SQLite store
    simulate.simulate_world(tmp_path, customers=400, days=240, seed=1)
    data.build(tmp_path)
    res = train.train_churn(tmp_path, trials=2, families=["logreg"], folds=2, as_of_start="2024-02-01", tune_rows=300, quiet=True)
    run = MlflowClient().get_run(res.run_id)
    p, tags = run.data.params, run.data.tags
    assert int(p["tune_rows"]) == 300 == int(p["tune_rows_max"])
    assert int(p["fit_rows"]) == int(p["train_rows"]) == len(res.X_train) > 300       # the final fit used every training row
    assert float(p["tune_positive_rate"]) >= float(p["fit_positive_rate"])           # positives kept first
    assert tags["churnops.tune_sampled"] == "true" and p["study_name"].endswith("-t300")
    study = optuna.load_study(study_name=p["study_name"], storage=train.study_storage(tmp_path))
    assert len(study.trials) == 2
    # the sample is seeded: the same rows every time, and a different seed picks others
    times = np.repeat(np.arange(6), 100); y = (np.arange(600) % 7 == 0).astype(int)
    assert (train.tune_sample(times, y, 200, seed=3) == train.tune_sample(times, y, 200, seed=3)).all()
    assert not (train.tune_sample(times, y, 200, seed=3) == train.tune_sample(times, y, 200, seed=4)).all()
