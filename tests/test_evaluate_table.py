"""`churnops evaluate` on a model trained by `train-table`: the real CLI on a flat table whose target is the table's own
(`Churn`, Yes/No), not the config's `problem.target`; the report (papermill → HTML) carries its curves as figures."""
import json
import os
import re

import nbformat
import pytest

from churnops import train
from churnops.cli import main

NAME = "telcoeval"


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    "A home whose config names another target, a table model trained on `Churn`, and a holdout of the same table's kind."
    home = tmp_path_factory.mktemp("evaluate_table")
    (home / "churnops.yaml").write_text("offline_gates: {}\nproblem:\n  target: is_churned\n  baseline: 0.0\n"
                                        "constraints:\n  latency_ms: 60000\n  throughput_rps: 1\n")
    train_csv, holdout_csv = home / "telco.csv", home / "telco_holdout.csv"
    train.make_telco_table(500, seed=7).to_csv(train_csv, index=False)
    train.make_telco_table(300, seed=8).to_csv(holdout_csv, index=False)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    assert main(["train-table", "--home", str(home), "--data", str(train_csv), "--target", "Churn", "--id", "customerID",
                 "--name", NAME, "--trials", "2", "--families", "logreg", "--folds", "3", "--quiet"]) == 0
    return home, holdout_csv


@pytest.fixture(scope="module")
def evaluated(flat):
    home, holdout_csv = flat
    rc = main(["evaluate", "--home", str(home), "--model", f"{NAME}/1", "--holdout", str(holdout_csv), "--resamples", "50", "--quiet"])
    assert rc == 0
    nb, = (home / "reports").glob(f"evaluate_{NAME}_1_*.ipynb")
    return nb


def test_evaluate_uses_the_tables_own_target(evaluated, capsys):
    summary = json.loads(evaluated.with_suffix(".json").read_text())
    assert summary["model"] == f"{NAME}/1" and summary["holdout_rows"] == 300
    metrics = {r["metric"]: r["candidate"] for r in summary["metrics"]}
    assert 0.6 < metrics["roc_auc"] < 0.97, metrics                     # Yes/No read as the model's 1/0, not a constant
    assert summary["decision"].startswith("promote")


def test_evaluate_report_carries_its_curves(evaluated):
    executed = nbformat.read(evaluated, as_version=4)
    curves = next(i for i, c in enumerate(executed.cells) if c.cell_type == "markdown" and "ROC, precision" in c.source)
    shown = [o for o in executed.cells[curves + 1].get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(shown) == 1, "the curves cell shows no figure"
    html = evaluated.with_suffix(".html").read_text()
    section = html.split("ROC, precision")[1].split("Metrics by segment")[0]
    assert re.search(r'<img[^>]+src="data:image/png;base64,', section), "the report's curves section has no image"


def test_evaluate_without_a_holdout_names_what_is_missing(flat, capsys):
    "A table model has no declared world to draw a holdout from: the error says to pass --holdout."
    from churnops import validate
    home, _ = flat
    with pytest.raises(ValueError, match="--holdout"):
        validate.evaluate_model(home, f"{NAME}/1", log=False, effects=False, latency_calls=5)


def test_evaluate_refuses_a_holdout_without_the_tables_target(flat, tmp_path):
    import pandas as pd
    from churnops import validate
    home, holdout_csv = flat
    df = pd.read_csv(holdout_csv).drop(columns="Churn")
    with pytest.raises(ValueError, match="'Churn'"):
        validate.evaluate_model(home, f"{NAME}/1", holdout=df, log=False, effects=False, latency_calls=5)
