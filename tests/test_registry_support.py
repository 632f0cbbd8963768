"""Shared helpers for the registry and lineage suites: real MLflow model versions of tiny sklearn pipelines, logged with skops
and the churnops tags that `train` sets, in a SQLite store under a temporary home (or on a real `mlflow server`).

Building a store costs seconds (schema migrations, first log_model); the session fixture builds one template home and each
test copies it, so tests stay independent and fast. Artifacts stay in the template's directory (absolute URIs), read-only.
"""
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

GOOD = {"accuracy": .91, "precision": .86, "recall": .81, "roc_auc": .93, "precision_at_recall_80": .86,
        "f1": .83, "pr_auc": .8, "log_loss": .3, "brier": .1, "threshold_at_recall_80": .4,
        "p99_latency_ms": 3.0, "model_size_mb": 0.01}   # logged so gates do not depend on this machine's load
BAD = {**GOOD, "accuracy": .70, "recall": .50, "roc_auc": .75}

# (features, data build, family, hyper-parameter, metrics): the seed's semantic-version table, plus a failing and an unmeasured one
VERSIONS = [
    (["tenure", "charges"], "build-1", "logreg", 1.0, GOOD),            # v1 -> 1.0.0 first release
    (["tenure", "charges"], "build-2", "logreg", 1.0, GOOD),            # v2 -> 1.0.1 retrained on new data
    (["tenure", "charges", "tickets"], "build-2", "logreg", 1.0, GOOD),  # v3 -> 1.1.0 new features
    (["tenure", "charges", "tickets"], "build-2", "logreg", 10.0, GOOD), # v4 -> 1.2.0 tuning
    (["tenure", "charges", "tickets"], "build-2", "rf", 3, GOOD),       # v5 -> 2.0.0 new model family
    (["tenure", "charges", "tickets"], "build-3", "logreg", 1.0, BAD),   # v6: fails the gates
    (["tenure", "charges", "tickets"], "build-3", "logreg", 1.0, {}),    # v7: run without metrics
]



def write_data_manifests(home: Path, builds=("build-1", "build-2", "build-3")) -> None:
    "Data manifests as `data.build` writes them (the lineage chapter reads them if present)."
    for b in builds:
        tables = {t: stable_hash(b, t) for t in ("customers", "transactions")}
        for t, h in tables.items():
            d = home / "data" / t / h
            d.mkdir(parents=True, exist_ok=True)
            (d / "manifest.json").write_text(json.dumps({
                "table": t, "hash": h, "rows": 100, "created": "2026-11-25T00:00:00+00:00",
                "sources": [{"kind": "sql", "url": "sqlite:///sources/world.db", "query": f"SELECT * FROM {t}"}],
                "params": {"as_of": "2025-01-01", "build": b}}))
        (home / "data" / "builds").mkdir(parents=True, exist_ok=True)
        (home / "data" / "builds" / f"{b}.json").write_text(json.dumps({"build_id": b, "tables": tables, "created": "2026-11-25T00:00:00+00:00"}))


def stable_hash(build: str, table: str) -> str:
    import hashlib
    return hashlib.sha256(f"{build}/{table}".encode()).hexdigest()[:16]


from churnops.tracking import use_tracking
def log_version(home, features, build, family="logreg", hp=1.0, metrics=None, model="churn", parent_run_id=None) -> int:
    "Fit, log (skops) and register one tiny pipeline with the churnops tags; returns the version number."
    import mlflow
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from churnops.tracking import artifact_location, tracking_uri
    from churnops.tracking import TRUSTED_TYPES, ensure_experiment
    use_tracking(home)
    ensure_experiment(model, home)
    mlflow.set_experiment(model)
    rng = np.random.default_rng(len(features))
    X = pd.DataFrame(rng.normal(size=(40, len(features))), columns=features)
    y = (X.iloc[:, 0] > 0).astype(int)
    est = LogisticRegression(C=hp) if family == "logreg" else RandomForestClassifier(n_estimators=int(hp), max_depth=2, random_state=0)
    pipe = Pipeline([("preprocess", ColumnTransformer([("num", StandardScaler(), features)])), ("model", est)]).fit(X, y)
    hashes = {t: stable_hash(build, t) for t in ("customers", "transactions")}
    tags = {"churnops.model_family": family, "churnops.feature_columns": json.dumps(features),
            "churnops.feature_set_version": "fs-" + "-".join(features), "churnops.data_version": build,
            "churnops.data_hashes": json.dumps(hashes), "churnops.git_commit": "0123abc", "churnops.version": "0.1.0",
            "churnops.as_of_start": "2024-03-01", "churnops.as_of_end": "2024-12-01"}
    if parent_run_id: tags["mlflow.parentRunId"] = parent_run_id
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run(run_name=f"{model}-{family}-{build}"):
            mlflow.log_params({("model_C" if family == "logreg" else "model_n_estimators"): hp, "model_family": family,
                               "seed": 0, "n_trials": 1})
            if metrics: mlflow.log_metrics(metrics)
            mlflow.set_tags(tags)
            info = mlflow.sklearn.log_model(pipe, name="model", serialization_format="skops", registered_model_name=model,
                                            input_example=X.head(3), pip_requirements=["scikit-learn"],
                                            skops_trusted_types=TRUSTED_TYPES)
    return int(info.registered_model_version)


def build_home(home: Path, versions=VERSIONS, model="churn") -> list[int]:
    "Register `versions` under `home`. `mlflow.set_tracking_uri` also sets $MLFLOW_TRACKING_URI: restore it afterwards."
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    home.mkdir(parents=True, exist_ok=True)
    write_data_manifests(home)
    try: return [log_version(home, f, b, fam, hp, m, model=model) for f, b, fam, hp, m in versions]
    finally:
        if saved is None: os.environ.pop("MLFLOW_TRACKING_URI", None)
        else: os.environ["MLFLOW_TRACKING_URI"] = saved


_TEMPLATE: dict = {}   # one template per session, shared by every module that imports the fixture


@pytest.fixture(scope="session")
def registry_template(tmp_path_factory):
    "A home with the seven versions of VERSIONS registered as `churn` (built once per session)."
    if "home" not in _TEMPLATE:
        home = tmp_path_factory.mktemp("registry_template") / "home"
        saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
        try: build_home(home)
        finally:
            if saved is not None: os.environ["MLFLOW_TRACKING_URI"] = saved
        _TEMPLATE["home"] = home
    return _TEMPLATE["home"]


@pytest.fixture
def home(registry_template, tmp_path):
    "A private copy of the template home (tracking DB copied; artifacts read from the template)."
    h = tmp_path / "home"
    shutil.copytree(registry_template, h)
    return h
