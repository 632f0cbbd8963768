"""The whole loop, as the README's first command runs it: a real workspace, DVC, papermill jobs, MLflow, a served model."""
import json
import subprocess
import sys

import pandas as pd

from churnops import registry
from churnops.config import Paths


def test_demo_runs_the_whole_loop(tmp_path):
    home = tmp_path / "home"
    r = subprocess.run([sys.executable, "-m", "churnops.cli", "demo", "--home", str(home), "--customers", "900",
                        "--trials", "2", "--quiet"], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "demo finished" in r.stdout and "v1=1 v2=2" in r.stdout
    hist = registry.history(home, "churn")
    promotes = hist[hist.action == "promote"]
    assert list(promotes.to_version) == [1, 2]
    assert promotes.semver.iloc[0] == "1.0.0" and promotes.semver.iloc[1] != "1.0.0"
    assert registry.champion(home, "churn") == 2
    # both pipeline runs left their executed notebooks; the monitor left its report and its decision
    runs = sorted(p for p in Paths(home).runs.iterdir() if p.is_dir())
    assert len(runs) == 2 and all((r / "train.ipynb").exists() and (r / "evaluate.html").exists() for r in runs)
    decisions = [json.loads(l) for l in (Paths(home).reports / "retrain_decisions.jsonl").read_text().splitlines()]
    assert decisions[-1]["retrain"] and "data_drift" in decisions[-1]["reasons"]
    # the monitoring report ran in the world's time: outcomes known for both classes, the world's dates on its axis
    mon = json.loads(sorted(Paths(home).reports.glob("monitor-*.json"))[-1].read_text())
    assert mon["n_labelled"] == mon["n_predictions"] and 0 < mon["labelled_churned"] < mon["n_labelled"]
    assert all(mon["metrics"][k] is not None for k in ("accuracy", "precision", "recall", "roc_auc", "estimated_accuracy"))
    assert [p["window"][:4] for p in mon["performance"]] and {p["window"][:4] for p in mon["performance"]} <= {"2024", "2025"}
    assert len(mon["performance"]) == 7 and all(p["labelled_share"] == 1.0 for p in mon["performance"])
    log = pd.concat(pd.read_parquet(p) for p in Paths(home).predictions.glob("part-*.parquet"))
    assert len(log) >= 2 * 300 and (log.status == 200).all()
    # nothing changed since the retraining run: a third pipeline run skips every stage
    r = subprocess.run([sys.executable, "-m", "churnops.cli", "pipeline", "run", "--home", str(home)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ran nothing" in r.stdout
