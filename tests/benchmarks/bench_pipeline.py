"""Benchmark: the full training pipeline at scale — wall time per stage and peak memory.

    python tests/benchmarks/bench_pipeline.py [--customers 100000] [--days 730] [--trials 4] [--home DIR] [--json PATH] [--budget S]

Simulates a world, makes a workspace, runs `churnops pipeline run` (data → features → train → evaluate → promote) and prints,
per stage, the wall time DVC's stage took and the peak resident memory of the process tree that ran it (sampled with
psutil every 0.2 s; a sample counts for the stage whose `churnops pipeline stage NAME` process is running), beside the
goals (whole pipeline ≤ 5 minutes, peak RSS ≤ 3 GB). A second run with nothing changed is timed too: its ratio to the
first is the cost of a no-op `dvc repro`. The load average is printed: the machine may be shared. With `--budget SECONDS` the
pipeline run is stopped (its whole process tree) when it exceeds the budget, and the figures of the stages that finished,
with the stage that was running, are written all the same (`finished: false`). A temporary home is removed at the end.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from _results import add_json_option, write_results


def _stage_of(procs: list) -> str | None:
    "The pipeline stage a process tree is running (`churnops pipeline stage NAME`), if any."
    for c in procs:
        try: cmd = c.cmdline()
        except psutil.Error: continue
        if "pipeline" in cmd and "stage" in cmd:
            i = cmd.index("stage")
            if i + 1 < len(cmd) and cmd[i - 1] == "pipeline": return cmd[i + 1]
    return None


def peak_rss_of_tree(proc: subprocess.Popen, out: dict, every: float = 0.2) -> None:
    """Sample the summed RSS of `proc` and its descendants until it exits; keep the maximum in out['peak'] and, per
    running pipeline stage, in out['stages'][name]."""
    p = psutil.Process(proc.pid)
    stages = out.setdefault("stages", {})
    while proc.poll() is None:
        try:
            kids = p.children(recursive=True)
            rss = p.memory_info().rss
            for c in kids:
                try: rss += c.memory_info().rss
                except psutil.Error: pass
            out["peak"] = max(out.get("peak", 0), rss)
            st = _stage_of(kids)
            if st: stages[st] = max(stages.get(st, 0), rss)
        except psutil.Error:
            pass
        time.sleep(every)


class OverBudget(Exception):
    "The command ran past its time budget and was stopped; `.mem` holds the memory figures sampled until then."
    def __init__(self, seconds: float, mem: dict): super().__init__(f"stopped after {seconds:.0f} s"); self.mem = mem


def kill_tree(proc: subprocess.Popen) -> None:
    "SIGKILL a process and every descendant (kernels started in their own session included)."
    try: tree = [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]
    except psutil.Error: return
    for p in tree:
        try: p.kill()
        except psutil.Error: pass
    proc.wait()


def run(cmd: list[str], cwd: Path | None = None, budget: float | None = None) -> tuple[float, dict, str]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    mem: dict = {}
    th = threading.Thread(target=peak_rss_of_tree, args=(proc, mem), daemon=True); th.start()
    try: out, _ = proc.communicate(timeout=budget)
    except subprocess.TimeoutExpired:
        kill_tree(proc); th.join(); raise OverBudget(time.perf_counter() - t0, mem) from None
    th.join()
    if proc.returncode: raise SystemExit(f"{' '.join(cmd)} failed:\n{out[-4000:]}")
    return time.perf_counter() - t0, mem, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=730)
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--families", default="logreg,hgb")
    ap.add_argument("--home", default=None)
    ap.add_argument("--budget", type=float, default=None, help="stop `pipeline run` after this many seconds, keeping the figures so far")
    add_json_option(ap, "pipeline")
    a = ap.parse_args()
    home = Path(a.home or tempfile.mkdtemp(prefix="churnops-bench-pipeline-"))
    if home.exists(): shutil.rmtree(home)
    try: measure(a, home)
    finally:
        if not a.home: shutil.rmtree(home, ignore_errors=True)


def stage_seconds(home: Path, names) -> dict:
    "Seconds of each stage that finished (its `outputs/<stage>.json`), in pipeline order."
    done = {s: home / "outputs" / f"{s}.json" for s in names}
    return {s: json.loads(f.read_text()).get("seconds") for s, f in done.items() if f.exists()}


def measure(a, home: Path) -> None:
    "Simulate, run the pipeline and a no-op re-run in `home`, print and write the figures."
    cli = [sys.executable, "-m", "churnops.cli"]
    t_init, m_init, _ = run(cli + ["init", "--home", str(home), "--quiet"])
    spec = home / "training_pipeline.yaml"
    import yaml
    d = yaml.safe_load(spec.read_text())
    d["stages"]["train"]["params"].update(trials=a.trials, families=a.families)
    d["promotion"] = "none"          # the default gates are the seed project's; promotion is not what is measured
    spec.write_text(yaml.safe_dump(d, sort_keys=False))
    t_sim, m_sim, _ = run(cli + ["simulate", "--home", str(home), "--customers", str(a.customers), "--days", str(a.days), "--quiet"])
    gb = 1024 ** 3
    try: t_run, m_run, _ = run(cli + ["pipeline", "run", "--home", str(home)], budget=a.budget)
    except OverBudget as e:
        stages = stage_seconds(home, d["stages"]); running = next((s for s in d["stages"] if s not in stages), None)
        print(f"pipeline run {e} (budget {a.budget:.0f} s): finished {stages}; {running} was running; load average {os.getloadavg()}")
        write_results(a.json, {"customers": a.customers, "days": a.days, "trials": a.trials, "families": a.families,
                               "finished": False, "budget_s": a.budget, "running_stage": running, "simulate_s": t_sim,
                               "simulate_peak_rss_gb": m_sim.get("peak", 0) / gb,
                               "stages": [{"stage": s, "seconds": sec, "peak_rss_gb": e.mem.get("stages", {}).get(s, 0) / gb}
                                          for s, sec in stages.items()],
                               "pipeline_peak_rss_gb": e.mem.get("peak", 0) / gb, "goal_seconds": 300, "goal_peak_rss_gb": 3})
        return
    stages = stage_seconds(home, d["stages"])
    t_noop, _, _ = run(cli + ["pipeline", "run", "--home", str(home)])
    m_init, m_sim, stage_rss, m_run = m_init.get("peak", 0), m_sim.get("peak", 0), m_run.get("stages", {}), m_run.get("peak", 0)
    print(f"world: {a.customers:,} customers × {a.days} days; trials {a.trials} ({a.families}); load average {os.getloadavg()}")
    print(f"{'step':<22}{'seconds':>10}")
    print(f"{'init':<22}{t_init:>10.1f}")
    print(f"{'simulate':<22}{t_sim:>10.1f}   peak RSS {m_sim / gb:.2f} GB")
    for s, sec in stages.items():
        rss = f"   peak RSS {stage_rss[s] / gb:.2f} GB" if s in stage_rss else ""
        print(f"{'  ' + s:<22}{sec:>10.1f}{rss}")
    print(f"{'pipeline run':<22}{t_run:>10.1f}   peak RSS {m_run / gb:.2f} GB (process tree)")
    print(f"{'no-op pipeline run':<22}{t_noop:>10.1f}   ratio to the first run {t_noop / t_run:.3f}")
    print(f"goal: pipeline ≤ 300 s → {t_run / 300:.2f}× the budget; peak RSS ≤ 3 GB → {m_run / (3 * gb):.2f}× the budget")
    write_results(a.json, {"customers": a.customers, "days": a.days, "trials": a.trials, "families": a.families, "finished": True,
                           "init_s": t_init, "simulate_s": t_sim, "simulate_peak_rss_gb": m_sim / gb,
                           "stages": [{"stage": s, "seconds": sec, "peak_rss_gb": stage_rss[s] / gb if s in stage_rss else None}
                                      for s, sec in stages.items()],
                           "pipeline_s": t_run, "pipeline_peak_rss_gb": m_run / gb, "noop_s": t_noop,
                           "goal_seconds": 300, "goal_peak_rss_gb": 3})


if __name__ == "__main__":
    main()
