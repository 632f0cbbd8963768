"""Batch scoring benchmark: `churnops predict` (an in-process call of `train.predict_table`: load the model, read parquet in
chunks, type, score through the compiled scorer, write parquet) against scikit-learn's in-memory `Pipeline.predict_proba`
on the same rows in the same run, for each family the tuner may pick (logreg, a small random forest, gradient boosting).
Prints rows/s, the ratio and the max |difference| of the probabilities (goal: ratio >= 1, diff <= 1e-9, >= 500k rows/s
for gradient boosting).

    PYTHONPATH=. python tests/benchmarks/bench_batch.py [--rows 1000000] [--json PATH]
"""
import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from churnops import train
from churnops.tracking import TRUSTED_TYPES, setup_mlflow
from _results import add_json_option, write_results

FAMILIES = {"logreg": {"C": 1.0}, "rf": {"n_estimators": 100, "max_depth": 10},
            "hgb": {"max_iter": 200, "max_leaf_nodes": 31, "learning_rate": 0.05}}


def register(home: str, name: str, pipe, X: pd.DataFrame) -> None:
    "Log and register a fitted pipeline the way training does (skops), so predict_table loads it from the registry."
    import mlflow
    setup_mlflow(home, "bench-batch")
    with mlflow.start_run():
        mlflow.set_tag("churnops.id_column", "customerID")
        mlflow.sklearn.log_model(pipe, name="model", serialization_format="skops", skops_trusted_types=TRUSTED_TYPES,
                                 registered_model_name=name, input_example=X.head(2))


def main(rows: int, json_path: str | None = None) -> None:
    warnings.simplefilter("ignore")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    raw_small = train.make_telco_table(5000, seed=1)
    X, y, _, spec = train.prepare_table(raw_small, "Churn", "customerID")
    pre = train.make_table_preprocessor(spec.numeric, spec.categorical)
    big = pd.concat([train.make_telco_table(20_000, seed=s) for s in range(rows // 20_000 + 1)], ignore_index=True).head(rows)
    big["customerID"] = [f"C{i:08d}" for i in range(len(big))]
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "rows.parquet"; big.to_parquet(src, index=False)
        print(f"{rows:,} rows, {big.shape[1]} columns; load average {os.getloadavg()}")
        figures = []
        for family, params in FAMILIES.items():
            pipe = train.make_pipeline(pre, family, params).fit(X, y)
            register(d, f"bench-{family}", pipe, X)
            Xs = train.scoring_frame(big, pipe)                      # sklearn's input: typed, in memory
            t0 = time.perf_counter(); ref = pipe.predict_proba(Xs)[:, 1]; t_sk = time.perf_counter() - t0
            del Xs
            out = Path(d) / f"pred-{family}.parquet"
            t0 = time.perf_counter()
            pred, info = train.predict_table(d, f"bench-{family}", src, out, quiet=True)
            t_cli = time.perf_counter() - t0
            diff = float(np.max(np.abs(pred["churn_probability"].to_numpy() - ref)))
            print(f"{family:6s} sklearn predict_proba (in memory) {rows / t_sk:>10,.0f} rows/s | churnops predict "
                  f"(parquet in, parquet out) {rows / t_cli:>10,.0f} rows/s = {t_sk / t_cli:.2f}x sklearn | scoring alone "
                  f"{info['rows_per_second']:>10,.0f} rows/s | compiled {info['compiled']} | max |diff| {diff:.1e}")
            figures.append({"family": family, "sklearn_rows_per_s": rows / t_sk, "churnops_rows_per_s": rows / t_cli,
                            "ratio": t_sk / t_cli, "scoring_rows_per_s": info["rows_per_second"], "compiled": info["compiled"],
                            "max_abs_diff": diff})
        print(f"load average {os.getloadavg()}")
    write_results(json_path, {"rows": rows, "columns": big.shape[1], "families": figures})


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    add_json_option(ap, "batch")
    a = ap.parse_args()
    main(a.rows, a.json)
