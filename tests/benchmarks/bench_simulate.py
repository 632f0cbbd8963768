"""Benchmark: simulating the churn world at scale, and building a data version from it.

Run by hand: `python tests/benchmarks/bench_simulate.py [--customers 100000 --days 730] [--build] [--json PATH]`.
Each measurement runs in a fresh subprocess and reports wall time and its own peak RSS (ru_maxrss), so runs do not share
memory. Figures are printed as ratios against a reference world measured in the same run (10,000 customers × the same
days), so they say how the cost scales, independent of the machine.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import textwrap

from _results import add_json_option, write_results

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from churnops.simulate import simulate_world
    home, customers, days, do_build = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    t = time.perf_counter()
    w = simulate_world(home, customers=customers, days=days, seed=0)
    sim_s = time.perf_counter() - t
    sim_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"customers": customers, "days": days, "simulate_s": sim_s, "simulate_peak_rss_mb": sim_rss, "rows": w.counts}
    if do_build:
        from churnops import data
        t = time.perf_counter(); b = data.build(home); out["build_s"] = time.perf_counter() - t
        out["build_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))
""")


def run(customers, days, build):
    with tempfile.TemporaryDirectory() as home:
        r = subprocess.run([sys.executable, "-c", CHILD, home, str(customers), str(days), "1" if build else "0"],
                           capture_output=True, text=True)
        if r.returncode: raise SystemExit(r.stderr)
        return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=730)
    ap.add_argument("--reference", type=int, default=10_000, help="customers of the reference world")
    ap.add_argument("--build", action="store_true", help="also time `data.build` on both worlds")
    add_json_option(ap, "simulate")
    a = ap.parse_args()
    ref = run(a.reference, a.days, a.build)
    big = run(a.customers, a.days, a.build)
    events = lambda r: sum(v for k, v in r["rows"].items() if k not in ("customers", "external"))
    for r in (ref, big):
        print(f"{r['customers']:>7,d} customers × {r['days']} days: simulate {r['simulate_s']:.1f}s, peak RSS {r['simulate_peak_rss_mb']:.0f} MB, "
              f"{events(r):,} event rows ({events(r) / r['days']:,.0f}/day)"
              + (f"; build {r['build_s']:.1f}s, peak RSS {r['build_peak_rss_mb']:.0f} MB" if "build_s" in r else ""))
    scale = big["customers"] / ref["customers"]
    print(f"size ratio {scale:.1f}×: simulate time ratio {big['simulate_s'] / ref['simulate_s']:.2f}×, "
          f"peak RSS ratio {big['simulate_peak_rss_mb'] / ref['simulate_peak_rss_mb']:.2f}×, "
          f"event rows per second ratio {(events(big) / big['simulate_s']) / (events(ref) / ref['simulate_s']):.2f}")
    if a.build:
        print(f"build time ratio {big['build_s'] / ref['build_s']:.2f}×, build peak RSS ratio {big['build_peak_rss_mb'] / ref['build_peak_rss_mb']:.2f}×")
    print(json.dumps({"reference": ref, "big": big}))
    write_results(a.json, {"reference": ref, "big": big})


if __name__ == "__main__":
    main()
