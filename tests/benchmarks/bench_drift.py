"""Benchmark: churnops.monitor.drift_report vs Evidently 0.7.23 on 500,000 x 25 columns (reference vs current).

Evidently needs pandas < 3, so it runs in its own virtualenv (/tmp/evvenv, created on first use) in a subprocess on the
same parquet files. Prints both wall times and their ratio, both CPU times (process time, all threads) and their ratio —
the figure that a busy machine disturbs least — the load average, and the largest difference between the two sets of values.

    python tests/benchmarks/bench_drift.py [--rows 500000] [--venv /tmp/evvenv] [--json PATH]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _results import add_json_option, write_results

NUMERICAL = [f"num_{i}" for i in range(18)]          # 15 continuous (3 with NaN/inf), 3 integers with few values
CATEGORICAL = [f"cat_{i}" for i in range(7)]
# per-column methods: the rest take Evidently's defaults (wasserstein for numerical, jensenshannon for categorical)
PER_COLUMN = {**{f"num_{i}": "psi" for i in range(0, 5)}, **{f"num_{i}": "ks" for i in range(5, 9)},
              **{f"num_{i}": "jensenshannon" for i in range(9, 11)}, "num_15": "psi", "num_16": "jensenshannon",
              "cat_0": "psi", "cat_1": "psi"}

EVIDENTLY_SCRIPT = r'''
import json, sys, time
import pandas as pd
from evidently import Report, Dataset, DataDefinition
from evidently.presets import DataDriftPreset
ref = pd.read_parquet(sys.argv[1]); cur = pd.read_parquet(sys.argv[2]); spec = json.loads(open(sys.argv[3]).read())
t0 = time.perf_counter(); c0 = time.process_time()
dd = DataDefinition(numerical_columns=spec["numerical"], categorical_columns=spec["categorical"])
report = Report([DataDriftPreset(per_column_method=spec["per_column"])])
snap = report.run(current_data=Dataset.from_pandas(cur, data_definition=dd), reference_data=Dataset.from_pandas(ref, data_definition=dd))
elapsed = time.perf_counter() - t0; cpu = time.process_time() - c0
values = {m["config"]["column"]: m["value"] for m in snap.dict()["metrics"] if m["config"]["type"].endswith("ValueDrift")}
methods = {m["config"]["column"]: m["config"]["method"] for m in snap.dict()["metrics"] if m["config"]["type"].endswith("ValueDrift")}
share = [m["value"] for m in snap.dict()["metrics"] if m["config"]["type"].endswith("DriftedColumnsCount")][0]
print(json.dumps({"elapsed": elapsed, "cpu": cpu, "values": values, "methods": methods, "share": share}))
'''


def make_data(rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    def frame(shift: float) -> pd.DataFrame:
        d = {}
        for i in range(15):
            kind = i % 3
            if kind == 0: x = rng.normal(shift * (i % 5) / 4, 1 + shift * 0.1, rows)
            elif kind == 1: x = rng.lognormal(0 + shift * 0.2, 0.7, rows)
            else: x = rng.exponential(1 + shift * (i % 2), rows)
            if i in (2, 7, 12):
                x[rng.random(rows) < 0.02] = np.nan
                x[rng.random(rows) < 0.001] = np.inf
            d[f"num_{i}"] = x
        d["num_15"] = rng.integers(0, 12 + int(shift * 3), rows).astype("int64")   # <= 20 distinct: one bin per value
        d["num_16"] = rng.poisson(3 + shift, rows).astype("int64")
        d["num_17"] = rng.integers(0, 1000, rows).astype("int64")
        p = np.array([0.5, 0.3, 0.15, 0.05]); q = (p + shift * np.array([-0.1, 0.0, 0.05, 0.05])); q = q / q.sum()
        for j in range(7):
            cats = np.array([f"c{j}_{k}" for k in range(4 if j % 2 else 30)])
            probs = q if len(cats) == 4 else np.full(len(cats), 1 / len(cats))
            d[f"cat_{j}"] = rng.choice(cats, rows, p=probs)
        return pd.DataFrame(d)
    return frame(0.0), frame(1.0)


def ensure_venv(venv: Path) -> Path:
    py = venv / "bin" / "python"
    ok = py.exists() and subprocess.run([str(py), "-c", "import evidently, sys; assert evidently.__version__ == '0.7.23'"],
                                        capture_output=True).returncode == 0
    if not ok:
        print(f"creating {venv} with evidently==0.7.23 (one-off, a few minutes)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "evidently==0.7.23", "pandas<3", "pyarrow"], check=True)
    return py


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--venv", default="/tmp/evvenv")
    ap.add_argument("--repeat", type=int, default=3)
    add_json_option(ap, "drift")
    a = ap.parse_args()
    from churnops.monitor import drift_report
    py = ensure_venv(Path(a.venv))
    ref, cur = make_data(a.rows)
    kinds = {**{c: "numerical" for c in NUMERICAL}, **{c: "categorical" for c in CATEGORICAL}}
    with tempfile.TemporaryDirectory() as d:
        rp, cp, sp = Path(d) / "ref.parquet", Path(d) / "cur.parquet", Path(d) / "spec.json"
        ref.to_parquet(rp); cur.to_parquet(cp)
        sp.write_text(json.dumps({"numerical": NUMERICAL, "categorical": CATEGORICAL, "per_column": PER_COLUMN}))
        (Path(d) / "ev.py").write_text(EVIDENTLY_SCRIPT)
        out = subprocess.run([str(py), str(Path(d) / "ev.py"), str(rp), str(cp), str(sp)], capture_output=True, text=True,
                             env=dict(os.environ, OMP_NUM_THREADS="1", DO_NOT_TRACK="1"))
        if out.returncode: print(out.stderr[-3000:]); return 1
        ev = json.loads(out.stdout.strip().splitlines()[-1])
        ref, cur = pd.read_parquet(rp), pd.read_parquet(cp)   # the same bytes Evidently read
    load0 = os.getloadavg()[0]
    times, cpus = [], []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        rep = drift_report(ref, cur, methods=PER_COLUMN, kinds=kinds)
        times.append(time.perf_counter() - t0)
    for _ in range(a.repeat):
        t1 = time.perf_counter(); c1 = time.process_time()
        drift_report(ref, cur, methods=PER_COLUMN, kinds=kinds, n_jobs=1)
        single = min(single, time.perf_counter() - t1) if cpus else time.perf_counter() - t1
        cpus.append(time.process_time() - c1)
    ours = dict(zip(rep.table.column, rep.table.statistic))
    ours_m = dict(zip(rep.table.column, rep.table.method))
    diffs = {c: abs(ours[c] - ev["values"][c]) for c in ours}
    rel = {c: diffs[c] / max(abs(ev["values"][c]), 1e-300) for c in ours}
    worst = max(diffs, key=diffs.get)
    name_map = {"Jensen-Shannon distance": "jensenshannon", "Wasserstein distance (normed)": "wasserstein", "PSI": "psi",
                "K-S p_value": "ks"}
    same_methods = all(name_map.get(ev["methods"][c], ev["methods"][c]) == ours_m[c] for c in ours)
    best = min(times)
    print(f"data: {a.rows:,} rows x {ref.shape[1]} columns, reference vs current; methods: "
          f"{pd.Series(ours_m).value_counts().to_dict()}")
    print(f"Evidently 0.7.23 DataDriftPreset: {ev['elapsed']:.2f} s")
    print(f"churnops drift_report: {best:.2f} s (best of {a.repeat}, {os.cpu_count()} threads); {single:.2f} s single-threaded")
    print(f"speed-up: {ev['elapsed'] / best:.1f}x ({ev['elapsed'] / single:.1f}x single-threaded)")
    cpu = float(np.median(cpus))
    print(f"CPU: Evidently {ev['cpu']:.2f} s, churnops {cpu:.2f} s single-threaded (median of {a.repeat}) -> {ev['cpu'] / cpu:.1f}x less CPU "
          f"(load average {load0:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores)")
    print(f"largest absolute difference of values: {diffs[worst]:.3g} (column {worst}, {ours_m[worst]}); "
          f"largest relative: {max(rel.values()):.3g}; identical bits in {sum(v == 0 for v in diffs.values())}/{len(diffs)} columns")
    print(f"same methods chosen: {same_methods}; drifted share ours {rep.share:.2f} vs Evidently {ev['share']['share']:.2f}")
    write_results(a.json, {"rows": a.rows, "columns": ref.shape[1], "methods": pd.Series(ours_m).value_counts().to_dict(),
                           "evidently_s": ev["elapsed"], "churnops_s": best, "churnops_single_thread_s": single,
                           "speedup": ev["elapsed"] / best, "speedup_single_thread": ev["elapsed"] / single,
                           "evidently_cpu_s": ev["cpu"], "churnops_cpu_s": cpu, "cpu_ratio": ev["cpu"] / cpu,
                           "max_abs_difference": diffs[worst], "max_rel_difference": max(rel.values()),
                           "identical_columns": sum(v == 0 for v in diffs.values()), "same_methods": same_methods,
                           "drifted_share_churnops": rep.share, "drifted_share_evidently": ev["share"]["share"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
