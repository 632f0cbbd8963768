"""Batch scoring through the compiled scorer: identical probabilities to `Pipeline.predict_proba` for every family the
tuner may pick (missing values, unseen and infrequent categories), the sklearn fallback only for an unknown estimator
(with a warning naming it), and `churnops predict` writing parquet with the id column and the probabilities."""
import json
import os
import warnings

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from churnops import tracking, train
from churnops.cli import main
from churnops.scorer import FastScorer


def odd_rows(X: pd.DataFrame, spec, seed: int = 0) -> pd.DataFrame:
    "Rows with missing numbers, missing text (NaN and None) and categories never seen in training."
    rng = np.random.default_rng(seed)
    X = X.copy()
    for c in spec.numeric: X.loc[rng.random(len(X)) < 0.1, c] = np.nan
    for c in spec.categorical:
        X[c] = X[c].astype(object)
        X.loc[rng.random(len(X)) < 0.05, c] = "never-seen"
        X.loc[rng.random(len(X)) < 0.05, c] = np.nan
        X.loc[rng.random(len(X)) < 0.03, c] = None
    return X


@pytest.fixture(scope="module")
def table():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        X, y, _, spec = train.prepare_table(train.make_telco_table(1500, seed=3), "Churn", "customerID")
    return X, y, spec


PARAMS = {"logreg": {"C": 0.5}, "rf": {"n_estimators": 40, "max_depth": 8}, "hgb": {"max_iter": 40}}


@pytest.mark.parametrize("family", train.FAMILIES)
def test_compiled_equals_pipeline(table, family):
    X, y, spec = table
    pipe = train.make_pipeline(train.make_table_preprocessor(spec.numeric, spec.categorical), family, PARAMS[family]).fit(X, y)
    rows = odd_rows(X, spec)
    s = FastScorer(pipe)
    assert s.fast, s.reason
    ref = pipe.predict_proba(rows)[:, 1]
    np.testing.assert_allclose(s.predict_proba(rows), ref, rtol=0, atol=1e-9)                 # the batch path
    np.testing.assert_allclose(s.predict_proba(rows.head(3).to_dict("records")), ref[:3], rtol=0, atol=1e-9)  # few rows
    assert s.verify(rows) == 0.0 and s.fast


def test_random_data_with_infrequent_categories():
    "Random numbers and text through a pipeline with infrequent categories, every family, against sklearn."
    rng = np.random.default_rng(5)
    n = 3000
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.exponential(size=n),
                      "c": rng.choice(["x", "y", "z"], n, p=[.5, .3, .2]),
                      "d": rng.choice(list("pqrst"), n)})
    X.loc[:2, "c"] = "rare1"; X.loc[3, "c"] = "rare2"                   # below min_frequency=5: grouped
    y = ((X.a + (X.c == "x") + rng.normal(size=n)) > 0.8).astype(int)
    pre = train.make_table_preprocessor(["a", "b"], ["c", "d"])
    new = X.copy().astype({"c": object, "d": object})
    new.loc[::9, "a"] = np.nan; new.loc[::13, "c"] = "unseen"; new.loc[::17, "d"] = np.nan; new.loc[::5, "c"] = "rare1"
    for family in train.FAMILIES:
        pipe = train.make_pipeline(pre, family, PARAMS[family]).fit(X, y)
        ohe = pipe.named_steps["preprocess"].named_transformers_["cat"].named_steps["onehot"]
        assert ohe.infrequent_categories_[0] is not None              # the grouped column is exercised
        s = FastScorer(pipe)
        assert s.fast, s.reason
        np.testing.assert_allclose(s.predict_proba(new), pipe.predict_proba(new)[:, 1], rtol=0, atol=1e-9)


def test_unknown_estimator_falls_back_with_a_warning(table):
    from sklearn.naive_bayes import GaussianNB
    from sklearn.pipeline import Pipeline
    X, y, spec = table
    pipe = Pipeline([("preprocess", train.make_table_preprocessor(spec.numeric, spec.categorical)), ("model", GaussianNB())]).fit(X, y)
    Xs = train.scoring_frame(X, pipe)
    with pytest.warns(UserWarning, match="GaussianNB"):
        s = train.batch_scorer(pipe, Xs.head(50), "model nb/1")
    assert not s.fast
    np.testing.assert_array_equal(s.predict_proba(Xs), pipe.predict_proba(Xs)[:, 1])


@pytest.fixture(scope="module")
def rf_home(tmp_path_factory):
    "A home with a random-forest model registered through the CLI (the family served by the fallback before)."
    d = tmp_path_factory.mktemp("rf_home")
    csv = d / "telco.csv"
    train.make_telco_table(600, seed=11).to_csv(csv, index=False)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    rc = main(["train-table", "--home", str(d), "--data", str(csv), "--target", "Churn", "--id", "customerID",
               "--name", "telco-rf", "--trials", "1", "--families", "rf", "--folds", "2", "--quiet"])
    assert rc == 0
    return d


def test_predict_cli_writes_parquet(rf_home, capsys, tmp_path):
    raw = train.make_telco_table(2500, seed=12)
    raw.loc[::10, "Contract"] = "Lifetime"; raw.loc[::7, "MonthlyCharges"] = np.nan   # unseen category, missing number
    src, out = tmp_path / "score.parquet", tmp_path / "out" / "pred.parquet"
    raw.to_parquet(src, index=False, row_group_size=700)
    capsys.readouterr()
    assert main(["predict", "--home", str(rf_home), "--model", "telco-rf", "--data", str(src), "--out", str(out), "--quiet"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["rows"] == 2500 and info["compiled"] is True
    got = pq.read_table(out).to_pandas()
    assert list(got.columns) == ["customerID", "churn_probability", "churn_predicted"]
    assert got["customerID"].tolist() == raw["customerID"].tolist()
    pipe, _ = tracking.load_model(rf_home, "telco-rf")
    ref = pipe.predict_proba(train.scoring_frame(raw, pipe))[:, 1]
    np.testing.assert_allclose(got["churn_probability"].to_numpy(), ref, rtol=0, atol=1e-9)
    assert ((got["churn_probability"] >= info["threshold"]).astype(int) == got["churn_predicted"]).all()
    assert [p.name for p in out.parent.iterdir()] == ["pred.parquet"]          # no temporary file left behind


def test_predict_in_chunks_matches_one_pass(rf_home, tmp_path):
    raw = train.make_telco_table(1000, seed=13)
    src = tmp_path / "s.parquet"; raw.to_parquet(src, index=False)
    one, _ = train.predict_table(rf_home, "telco-rf", raw, quiet=True)
    many, info = train.predict_table(rf_home, "telco-rf", src, tmp_path / "p.csv", chunk_rows=128, quiet=True)
    pd.testing.assert_frame_equal(one, many)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "p.csv"), many, check_dtype=False)


def test_predict_bad_input_writes_nothing(rf_home, tmp_path):
    raw = train.make_telco_table(300, seed=14).drop(columns=["tenure"])
    src, out = tmp_path / "s.parquet", tmp_path / "p.parquet"
    raw.to_parquet(src, index=False)
    with pytest.raises(Exception, match="tenure"):
        train.predict_table(rf_home, "telco-rf", src, out, quiet=True)
    assert not out.exists() and list(tmp_path.iterdir()) == [src]
