"""Benchmark: memory of the data build and of the features stage as the data grows (the goal: flat in data size).

Run by hand: `python tests/benchmarks/bench_scale.py [--small 25000] [--large 200000] [--days 365] [--json PATH]`.
For each size a world is simulated (not measured), then `churnops data build` and `churnops features build` each run in a
fresh process; the peak RSS of that process and all its children (psutil, sampled every 50 ms) is its stage's figure.
Prints wall time and peak RSS per stage and size, and the large/small ratio of peak RSS (goal: at most 1.5x).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import psutil

from _results import add_json_option, write_results

CLI = "import sys; from churnops.cli import main; sys.exit(main(sys.argv[1:]))"


def tree_rss(proc: psutil.Process) -> int:
    "Resident bytes of a process and all its descendants (0 for those already gone)."
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try: total += p.memory_info().rss
        except psutil.Error: pass
    return total


def measure(args: list[str]) -> tuple[float, float]:
    "Run the churnops CLI with `args` in a fresh process; (wall seconds, peak tree RSS in MB)."
    t, peak = time.perf_counter(), 0
    proc = subprocess.Popen([sys.executable, "-c", CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    while proc.poll() is None:
        peak = max(peak, tree_rss(ps)); time.sleep(0.05)
    if proc.returncode: raise SystemExit(f"churnops {' '.join(args)} failed:\n{proc.stderr.read()[-3000:]}")
    return time.perf_counter() - t, peak / 2**20


def run(customers: int, days: int) -> dict:
    "Simulate, then measure the two stages, in a temporary home."
    with tempfile.TemporaryDirectory() as home:
        subprocess.run([sys.executable, "-c", CLI, "simulate", "--home", home, "--customers", str(customers), "--days", str(days),
                        "--quiet"], check=True, stdout=subprocess.DEVNULL)
        out = {"data build": measure(["data", "build", "--home", home, "--quiet", "--requirements", "off"])}
        out["features"] = measure(["features", "build", "--home", home, "--quiet"])
        return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=25_000)
    ap.add_argument("--large", type=int, default=200_000)
    ap.add_argument("--days", type=int, default=365)
    add_json_option(ap, "scale")
    a = ap.parse_args()
    print(f"{os.cpu_count()} cores; {a.days} days; in-process Dask unless $CHURNOPS_DASK_SCHEDULER is set", flush=True)
    res = {}
    for n in (a.small, a.large):
        res[n] = run(n, a.days)
        for stage, (s, mb) in res[n].items(): print(f"{n:>9,} customers  {stage:11s} {s:8.1f} s  peak RSS {mb:8.0f} MB", flush=True)
    for stage in res[a.small]:
        r = res[a.large][stage][1] / res[a.small][stage][1]
        print(f"{stage:11s} peak RSS {a.large:,} / {a.small:,} customers: {r:.2f}x (goal <= 1.5x)")
    write_results(a.json, {"days": a.days, "goal_rss_ratio": 1.5,
                           "rows": [{"customers": n, "stage": stage, "seconds": s, "peak_rss_mb": mb}
                                    for n, r in res.items() for stage, (s, mb) in r.items()]})


if __name__ == "__main__":
    main()
