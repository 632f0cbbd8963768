"""Gates, champion comparison and the evaluation report on real registered models (MLflow SQLite store in a temp home)."""
import json
import os

import numpy as np
import pandas as pd
import pytest
from churnops import metrics, tracking

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

FEATURES = ["tenure_days", "monthly_charges", "contract_type", "region"]


def _table(n, seed):
    r = np.random.default_rng(seed)
    df = pd.DataFrame({"customer_id": np.arange(n), "tenure_days": r.uniform(0, 900, n), "monthly_charges": r.uniform(20, 80, n),
                       "contract_type": r.choice(["month-to-month", "one_year", "two_year"], n),
                       "region": r.choice(["north", "south", "east"], n)})
    logit = -0.5 - 0.005 * df.tenure_days + 0.05 * (df.monthly_charges - 50) + np.where(df.contract_type == "month-to-month", 2.0, -1.0)
    df["is_churned"] = r.binomial(1, 1 / (1 + np.exp(-logit)))
    return df


def _log(pipeline, X, y, name):
    """Log like training does (skops, trusted types, threshold metric, feature-columns tag) and register a version."""
    import mlflow
    from churnops import train
    p = pipeline.predict_proba(X)[:, 1]
    m = metrics.classification_metrics(y, p)
    with mlflow.start_run() as run:
        mlflow.log_metrics(m)
        mlflow.set_tag("churnops.feature_columns", json.dumps(FEATURES))
        mlflow.sklearn.log_model(pipeline, name="model", serialization_format="skops", skops_trusted_types=tracking.TRUSTED_TYPES,
                                 pip_requirements=["scikit-learn"], registered_model_name=name)
    return run.info.run_id


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A home with `churn` v1 (a real model, champion) and v2 (trained on a shuffled target)."""
    import mlflow
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from churnops import train
    home = tmp_path_factory.mktemp("home")
    tracking.setup_mlflow(home)
    tr, ho = _table(1200, 1), _table(1500, 2)
    pre = lambda: train.make_table_preprocessor(["tenure_days", "monthly_charges"], ["contract_type", "region"])
    good = Pipeline([("preprocess", pre()), ("model", LogisticRegression(max_iter=500))]).fit(tr[FEATURES], tr.is_churned)
    shuffled = np.random.default_rng(0).permutation(tr.is_churned.to_numpy())
    weak = Pipeline([("preprocess", pre()), ("model", LogisticRegression(max_iter=500))]).fit(tr[FEATURES], shuffled)
    runs = [_log(good, tr[FEATURES], tr.is_churned, "churn"), _log(weak, tr[FEATURES], shuffled, "churn")]
    mlflow.MlflowClient().set_registered_model_alias("churn", "champion", "1")
    path = home / "holdout.parquet"
    ho.to_parquet(path)
    return {"home": home, "holdout": ho, "holdout_path": path, "runs": runs}


def test_weak_model_fails_gates_readably_and_is_logged(registry):
    import mlflow
    from churnops import validate as V
    ev = V.evaluate_model(registry["home"], "churn/2", holdout=registry["holdout"], n_resamples=200, effects=False, latency_calls=30)
    text = str(ev.gates)
    assert not ev.gates.passed
    assert text.startswith("gates FAILED for churn/2")
    assert "FAIL  roc_auc" in text and "below minimum 0.85" in text
    assert "PASS  model_size_mb" in text and "PASS  p99_latency_ms" in text   # measured, present
    assert ev.decision.startswith("reject: gates failed")
    assert ev.champion_version == 1
    assert ev.comparison.loc["roc_auc", "decision"] == "worse" and ev.comparison.loc["roc_auc", "ci_high"] < 0
    client = mlflow.MlflowClient()
    run = client.get_run(registry["runs"][1])
    assert run.data.metrics["gates_passed"] == 0.0 and run.data.tags["churnops.gates_passed"] == "false"
    assert client.get_model_version("churn", "2").tags["churnops.gates_passed"] == "false"
    logged = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/validation/gate_report.json"))
    assert V.GateReport.from_dict(logged).failed == ev.gates.failed and not logged["passed"]
    cmp = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/validation/comparison.json"))
    assert {r["metric"] for r in cmp} >= {"roc_auc", "precision_at_recall_80"}


def test_good_model_without_champion_is_decided_by_gates(registry):
    import mlflow
    from churnops import validate as V
    from churnops.config import config_from_dict
    cfg = config_from_dict({"offline_gates": {"roc_auc": {"min": 0.75}, "pr_auc": {"min": 0.5}}, "problem": {"baseline": 0.3}})
    client = mlflow.MlflowClient()
    client.delete_registered_model_alias("churn", "champion")
    try:
        ev = V.evaluate_model(registry["home"], "churn/1", holdout=registry["holdout"], cfg=cfg, n_resamples=100, latency_calls=30)
    finally:
        client.set_registered_model_alias("churn", "champion", "1")
    assert ev.gates.passed, str(ev.gates)
    assert sorted(ev.gates.to_frame().index) == ["model_size_mb", "p99_latency_ms", "pr_auc", "precision_at_recall_80", "roc_auc",
                                                 "throughput_rps"]
    assert ev.latency["throughput_rps"] > 0 and ev.to_dict()["interpretability"] == ["feature_importance", "feature_effects"]
    assert ev.comparison is None and ev.decision == "promote: gates passed and there is no champion"
    assert any("no champion" in n for n in ev.notes)
    top = ev.effects.set_index("feature")
    assert top.index[0] in ("contract_type", "tenure_days", "monthly_charges")
    assert top.loc["tenure_days", "direction"] == "higher → less churn"        # the world's true signs
    assert top.loc["monthly_charges", "direction"] == "higher → more churn"
    assert top.loc["contract_type", "direction"].startswith("most churn: month-to-month")
    sl = ev.slices.set_index(["segment", "value"])
    assert {"contract_type", "tenure_band", "region"} == set(ev.slices.segment)
    assert sl.loc[("contract_type", "month-to-month"), "churn_rate"] > sl.loc[("contract_type", "two_year"), "churn_rate"]


def test_candidate_that_does_not_exist(registry):
    from churnops import validate as V
    with pytest.raises(LookupError, match="candidate model churn/9 not found"):
        V.evaluate_model(registry["home"], "churn/9", holdout=registry["holdout"])
    with pytest.raises(LookupError, match="candidate model nosuch .latest. not found"):
        V.evaluate_model(registry["home"], "nosuch", holdout=registry["holdout"])
    with pytest.raises(ValueError, match="no target column 'is_churned'"):
        V.evaluate_model(registry["home"], "churn/1", holdout=registry["holdout"].drop(columns="is_churned"))


def test_cli_evaluate_runs_the_report_notebook(registry, capsys):
    from churnops.cli import main
    home = registry["home"]
    rc = main(["evaluate", "--home", str(home), "--model", "churn/2", "--holdout", str(registry["holdout_path"]),
               "--resamples", "100", "--strict", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 3, out                                        # --strict: a rejected candidate exits 3
    assert "churn/2: reject: gates failed" in out and "FAIL  roc_auc" in out
    reports = home / "reports"
    nb, = reports.glob("evaluate_churn_2_*.ipynb")
    html = nb.with_suffix(".html").read_text()
    summary = json.loads(nb.with_suffix(".json").read_text())
    for section in ("Quality gates", "Comparison with the champion", "ROC, precision", "Metrics by segment",
                    "Top features", "Threshold analysis", "FAIL  roc_auc"):
        assert section in html, section
    assert "data:image/png;base64" in html                      # the curves are rendered
    assert summary["model"] == "churn/2" and summary["champion_version"] == 1 and not summary["gates"]["passed"]
    assert not list(reports.glob(".*tmp*"))


def test_throughput_gate_refuses_a_model_slower_than_declared(registry):
    "constraints.throughput_rps acts: a bar no in-process scoring can reach fails the throughput gate (and only it)."
    from churnops import validate as V
    from churnops.config import config_from_dict
    cfg = config_from_dict({"offline_gates": {"roc_auc": {"min": 0.5}}, "problem": {"baseline": 0.0},
                            "constraints": {"throughput_rps": 1e12, "latency_ms": 1e6}})
    ev = V.evaluate_model(registry["home"], "churn/1", holdout=registry["holdout"], cfg=cfg, champion=None, n_resamples=50,
                          latency_calls=20, effects=False, log=False)
    assert ev.gates.failed == ["throughput_rps"], str(ev.gates)
    with pytest.raises(V.InterpretabilityMissing, match=r"missing \['feature_importance', 'feature_effects'\]"):
        V.check_interpretability(ev.effects, cfg.constraints.interpretability)
