"""Prediction-log benchmark (run by hand, not collected by pytest):

    python tests/benchmarks/bench_predlog.py --log-cost [--rows 200000] [--threads 1] [--json PATH]

Serving has no switch that turns the log off, so this measures the writer alone, in process, with rows shaped like the
service's (a 12-feature `features_json`):
1. append throughput (records/s): the durable writer (`PredictionLog`: each row written to its segment with `os.write`
   before `append` returns), the same with `fsync=True` (a power-cut-safe append; far fewer rows), and the in-memory
   buffering the earlier writer did (a `deque.append`, the rows lost on SIGKILL); the ratio durable / buffered;
2. reading: after the writer closes (one file per hour), a one-hour window vs. the whole log (files opened, seconds).
Figures are printed as measured in this run; nothing is asserted."""
import argparse
import json
import sys
import tempfile
import threading
import time
from collections import deque
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from churnops.config import Paths
from churnops.predlog import PredictionLog, files_for_window, read_prediction_log
from _results import add_json_option, write_results

FEATURES = json.dumps({"tenure_days": 412, "age": 37, "monthly_charges": 49.9, "tickets_30d": 1, "sessions_7d": 5,
                       "sessions_30d": 21, "minutes_30d": 61.2, "spend_30d": 80.4, "resolution_hours_mean": 9.5,
                       "plan": "plus", "contract_type": "monthly", "region": "north"})


def rows(n, start, spread_hours=1.0):
    step = timedelta(hours=spread_hours) / n
    return [(start + i * step, f"{i:032x}", i % 5000, 1, "champion", 1.2, 200, 0.31, True, FEATURES) for i in range(n)]


def appends_per_second(append, batch, threads):
    "Rows per second appending `batch` with `threads` threads (each a share of the rows)."
    shares = [batch[k::threads] for k in range(threads)]
    def run(share):
        for r in share: append(r)
    ts = [threading.Thread(target=run, args=(s,)) for s in shares]
    t0 = time.perf_counter()
    for t in ts: t.start()
    for t in ts: t.join()
    return len(batch) / (time.perf_counter() - t0)


def log_cost(n, threads, json_path=None):
    start = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    batch = rows(n, start, spread_hours=3)
    buffered = deque()
    rate_buf = appends_per_second(buffered.append, batch, threads)
    with tempfile.TemporaryDirectory() as d:
        home = Path(d)
        plog = PredictionLog(Paths(home).predictions)
        rate_dur = appends_per_second(plog.append, batch, threads)
        t0 = time.perf_counter(); plog.close(); t_close = time.perf_counter() - t0
        small = batch[: max(1, n // 100)]
        plog = PredictionLog(home / "fsync", fsync=True)
        rate_sync = appends_per_second(plog.append, small, threads)
        plog.close()
        print(f"append, {n} rows, {threads} thread(s):")
        print(f"  buffered in memory (earlier writer, lost on SIGKILL) {rate_buf:12,.0f} records/s")
        print(f"  durable (os.write per row, survives SIGKILL)         {rate_dur:12,.0f} records/s")
        print(f"  durable + fsync (survives a power cut), {len(small)} rows {rate_sync:9,.0f} records/s")
        print(f"  ratio durable / buffered: {rate_dur / rate_buf:.3f}   "
              f"(per row: {1e6 / rate_dur:.2f} us vs {1e6 / rate_buf:.2f} us)")
        print(f"  close (last segment to parquet, hours compacted): {t_close:.2f} s")
        hour = (start + timedelta(hours=1), start + timedelta(hours=2))
        reads = []
        for label, window in [("one hour", hour), ("everything", (None, None))]:
            t0 = time.perf_counter(); df = read_prediction_log(home, *window); dt = time.perf_counter() - t0
            files = len(files_for_window(home, *window))
            print(f"  read {label:10s}: {files} file(s), {len(df):,} rows, {dt:.2f} s")
            reads.append({"window": label, "files": files, "rows": len(df), "seconds": dt})
    write_results(json_path, {"rows": n, "threads": threads, "buffered_per_s": rate_buf, "durable_per_s": rate_dur,
                              "fsync_rows": len(small), "fsync_per_s": rate_sync, "durable_over_buffered": rate_dur / rate_buf,
                              "close_s": t_close, "reads": reads})


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log-cost", action="store_true", help="append throughput durable vs buffered, and window reads")
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--threads", type=int, default=1)
    add_json_option(ap, "predlog")
    a = ap.parse_args()
    if not a.log_cost: ap.error("nothing to do: pass --log-cost")
    log_cost(a.rows, a.threads, a.json)
