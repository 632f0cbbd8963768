"""Benchmark: the vectorised paired bootstrap of churnops.validate against a naive loop over sklearn's metric functions.

Run: python tests/benchmarks/bench_validate.py [--json PATH]  (prints times and the speed-up ratio; results agree on the same resamples)."""
import argparse
import time

import numpy as np
from sklearn import metrics as skm

from churnops import validate as V
from _results import add_json_option, write_results


def naive(y, pa, pb, n_resamples, seed):
    rng = np.random.default_rng(seed)
    n = len(y)
    out = {"roc_auc": [], "pr_auc": [], "brier": [], "accuracy": []}
    for _ in range(n_resamples):
        w = rng.multinomial(n, np.full(n, 1 / n)).astype(float)
        for m, f in [("roc_auc", skm.roc_auc_score), ("pr_auc", skm.average_precision_score), ("brier", skm.brier_score_loss)]:
            out[m].append(f(y, pa, sample_weight=w) - f(y, pb, sample_weight=w))
        out["accuracy"].append(skm.accuracy_score(y, pa >= 0.5, sample_weight=w) - skm.accuracy_score(y, pb >= 0.5, sample_weight=w))
    return {m: np.quantile(v, [0.025, 0.975]) for m, v in out.items()}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0]); add_json_option(ap, "validate"); a = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for n, B in [(2000, 200), (10_000, 200)]:
        y = rng.binomial(1, 0.2, n)
        s = y + rng.normal(0, 1, n)
        pa, pb = 1 / (1 + np.exp(-2 * s)), 1 / (1 + np.exp(-(s + rng.normal(0, 1, n))))
        t0 = time.perf_counter(); ref = naive(y, pa, pb, B, 1); t_naive = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours = V.paired_bootstrap(y, pa, pb, n_resamples=B, seed=1, metrics=["roc_auc", "pr_auc", "brier", "accuracy"], block=B)
        t_ours = time.perf_counter() - t0
        worst = max(abs(ours.loc[m, "ci_low"] - ref[m][0]) + abs(ours.loc[m, "ci_high"] - ref[m][1]) for m in ref)
        print(f"n={n:>6} resamples={B}: sklearn loop {t_naive:6.2f} s, vectorised {t_ours:5.2f} s, "
              f"speed-up x{t_naive / t_ours:5.1f}, max CI bound difference {worst:.2e}")
        rows.append({"rows": n, "resamples": B, "sklearn_loop_s": t_naive, "vectorised_s": t_ours,
                     "speedup": t_naive / t_ours, "max_ci_bound_difference": float(worst)})
    write_results(a.json, {"bootstrap": rows})
