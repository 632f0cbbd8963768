"""Benchmarks for training (run by hand: `python tests/benchmarks/bench_train.py [--trials N] [--rows N] [--json PATH]`).

1. Tuning throughput: the same study size with 2 worker processes vs 1 (fresh journal studies), printed as trials/s and
   the ratio (goal >= 1.7x). Both sides use one BLAS/OpenMP thread per process so the comparison is about processes.
2. Batch scoring: rows/s of the compiled scorer (`train.batch_scorer`) on a fitted telecom pipeline (HGB and logistic), against the 500k rows/s
   goal, and end-to-end `predict_table` (read CSV + type + score + write parquet) on the same rows.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.pop("MLFLOW_TRACKING_URI", None)

import numpy as np
import pandas as pd

from churnops import train
from _results import add_json_option, write_results


def bench_tuning(trials: int, rows: int) -> dict:
    df = train.make_telco_table(rows, seed=0)
    X, y, _, spec = train.prepare_table(df, "Churn", "customerID")
    pre = train.make_table_preprocessor(spec.numeric, spec.categorical)
    folds = train.stratified_folds(y, 3)
    rates = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as d:
            from threadpoolctl import threadpool_limits
            t0 = time.perf_counter()
            with threadpool_limits(1):
                study = train.tune(X, y, folds, pre, study_name=f"bench-{workers}", home=d, families=["logreg", "rf", "hgb"],
                                   n_trials=trials, seed=0, workers=workers, quiet=True)
            dt = time.perf_counter() - t0
            done = [t for t in study.trials if t.state.is_finished()]
            span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
            rates[workers] = (len(done) / dt, len(done) / span)
            print(f"tuning workers={workers}: {len(done)} trials in {dt:.1f} s wall incl. process start-up = "
                  f"{rates[workers][0]:.3f} trials/s; steady state (first trial start to last end, {span:.1f} s) "
                  f"{rates[workers][1]:.3f} trials/s (best cv ROC AUC {study.best_value:.4f})")
    print(f"tuning speed-up 2 workers vs 1: wall {rates[2][0] / rates[1][0]:.2f}x, steady state "
          f"{rates[2][1] / rates[1][1]:.2f}x (goal >= 1.7x); load average now {os.getloadavg()}")
    return {"trials": trials, "rows": rows, "trials_per_s": {w: {"wall": r[0], "steady": r[1]} for w, r in rates.items()},
            "speedup_wall": rates[2][0] / rates[1][0], "speedup_steady": rates[2][1] / rates[1][1], "goal_speedup": 1.7}


def bench_predict(rows: int) -> dict:
    df = train.make_telco_table(5000, seed=1)
    X, y, _, spec = train.prepare_table(df, "Churn", "customerID")
    pre = train.make_table_preprocessor(spec.numeric, spec.categorical)
    big_raw = pd.concat([df] * (rows // len(df) + 1), ignore_index=True).head(rows)
    out = {"rows": rows, "families": []}
    for family, params in [("hgb", {"max_iter": 200, "max_leaf_nodes": 31, "learning_rate": 0.05}), ("logreg", {"C": 1.0})]:
        pipe = train.make_pipeline(pre, family, params).fit(X, y)
        Xs = train.scoring_frame(big_raw, pipe)
        scorer = train.batch_scorer(pipe, Xs.head(2000))
        t0 = time.perf_counter(); fast = scorer.predict_proba(Xs); dt = time.perf_counter() - t0
        t0 = time.perf_counter(); ref = pipe.predict_proba(Xs)[:, 1]; dref = time.perf_counter() - t0
        assert np.allclose(fast, ref)
        rate = rows / dt
        print(f"predict {family}: {rows} rows in {dt:.2f} s = {rate:,.0f} rows/s = {rate / 500_000:.2f}x the 500k rows/s goal; "
              f"{dref / dt:.2f}x plain pipeline.predict_proba ({rows / dref:,.0f} rows/s); load average {os.getloadavg()}")
        out["families"].append({"family": family, "scorer_rows_per_s": rate, "pipeline_rows_per_s": rows / dref, "ratio": dref / dt})
    with tempfile.TemporaryDirectory() as d:
        csv = Path(d) / "telco.csv"; df.to_csv(csv, index=False)
        res = train.train_table(csv, "Churn", "bench", home=d, id_column="customerID", trials=1, families=["hgb"], quiet=True)
        big = Path(d) / "big.parquet"; big_raw.to_parquet(big, index=False)
        t0 = time.perf_counter()
        pred, info = train.predict_table(d, "bench", big, Path(d) / "pred.parquet")
        dt = time.perf_counter() - t0
        print(f"predict_table end to end (load model, read parquet, type, score, write): {rows} rows in {dt:.2f} s = "
              f"{rows / dt:,.0f} rows/s; scoring alone {info['rows_per_second']:,.0f} rows/s "
              f"({info['rows_per_second'] / 500_000:.2f}x goal)")
    out.update(predict_table_rows_per_s=rows / dt, scoring_rows_per_s=info["rows_per_second"], goal_rows_per_s=500_000)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--tune-rows", type=int, default=2000)
    ap.add_argument("--skip-tuning", action="store_true"); ap.add_argument("--skip-predict", action="store_true")
    add_json_option(ap, "train")
    a = ap.parse_args()
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()}")
    figures = {}
    if not a.skip_predict: figures["predict"] = bench_predict(a.rows)
    if not a.skip_tuning: figures["tuning"] = bench_tuning(a.trials, a.tune_rows)
    write_results(a.json, figures)
