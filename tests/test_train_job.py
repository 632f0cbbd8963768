"""The training job: `churnops train` runs jobs/train.ipynb through papermill on a tiny synthetic world, registers a
version of `churn` with out-of-time splits and the oracle AUC, saves the executed notebook under runs/ and attaches it to
the MLflow run; a failing cell exits non-zero and keeps the executed notebook."""
import json
import os

import pytest

from churnops import data, simulate, train
from churnops.cli import main
from churnops.config import Paths
from churnops import tracking


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("world")
    simulate.simulate_world(home, customers=400, days=240, seed=1)
    return home


def test_failing_cell_exits_nonzero_and_keeps_notebook(world, capsys):
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    # no data build yet: the training cell fails
    rc = main(["train", "--home", str(world), "--trials", "1", "--families", "logreg", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and "executed notebook kept at" in err, err
    kept = sorted(Paths(world).runs.glob("train-*.ipynb"))
    assert len(kept) == 1 and "no data build" in kept[0].read_text()


def test_train_job_registers_churn_with_oracle(world, capsys):
    from mlflow.tracking import MlflowClient
    data.build(world)
    rc = main(["train", "--home", str(world), "--trials", "2", "--families", "logreg", "--folds", "2",
               "--as-of-start", "2024-02-01", "--quiet"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    result = json.loads(out.out.strip().splitlines()[-1])
    assert result["model"] == "churn" and result["version"] == 1
    nb = result["notebook"]
    assert nb.startswith(str(Paths(world).runs)) and os.path.exists(nb)
    pipe, mv = tracking.load_model(world, "churn")
    run = MlflowClient().get_run(mv.run_id)
    m, tags, params = run.data.metrics, run.data.tags, run.data.params
    assert {"oracle_roc_auc", "roc_auc", "precision_at_recall_80", "threshold_at_recall_80"} <= set(m)
    assert 0.5 < m["oracle_roc_auc"] <= 1
    assert params["train_window"] < params["val_window"] < params["test_window"]    # out of time
    assert tags["churnops.data_version"] == data.read_build(world)["build_id"]
    assert len(tags["churnops.feature_set_version"]) == 16 and tags["churnops.as_of_start"] < tags["churnops.as_of_end"]
    arts = [a.path for a in MlflowClient().list_artifacts(run.info.run_id, "notebooks")]
    assert arts == [f"notebooks/{os.path.basename(nb)}"]
    assert "reference_profile.json" in [a.path for a in MlflowClient().list_artifacts(run.info.run_id)]
