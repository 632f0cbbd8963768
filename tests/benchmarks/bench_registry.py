"""What the audit trail costs: a churnops promote/rollback versus a bare MLflow alias move, and reading a long trail.

Run: python tests/benchmarks/bench_registry.py [--json PATH]  (prints ratios against references measured in the same run)
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

from test_registry_support import GOOD, build_home  # noqa: E402

from churnops import registry  # noqa: E402
from _results import add_json_option, write_results  # noqa: E402


def main(n: int = 20, trail_rows: int = 2_000, json_path: str | None = None) -> None:
    home = Path(tempfile.mkdtemp()) / "home"
    build_home(home, [(["a", "b"], f"build-{i}", "logreg", 1.0, GOOD) for i in range(2)])
    c = registry.registry_client(home)
    c.set_registered_model_alias("churn", "bench", "1")          # warm up
    t0 = time.perf_counter()
    for i in range(n): c.set_registered_model_alias("churn", "bench", str(1 + i % 2))
    bare = (time.perf_counter() - t0) / n

    registry.promote(home, "churn", 1); registry.promote(home, "churn", 2)
    t0 = time.perf_counter()
    for i in range(n // 2):
        registry.rollback(home, "churn")
        registry.promote(home, "churn", 2)                          # re-promote: gates + semver lookup + alias + tags
    ours = (time.perf_counter() - t0) / n

    t0 = time.perf_counter()
    for i in range(trail_rows): registry.record(home, "churn", "deploy", to_version=2, details={"i": i})
    rec = (time.perf_counter() - t0) / trail_rows
    t0 = time.perf_counter(); h = registry.history(home, "churn"); hist = time.perf_counter() - t0
    print(f"bare MLflow alias move (SQLite store): {bare * 1000:.1f} ms  [reference = 1.0]")
    print(f"churnops promote/rollback (lock, reconcile, gates, intent, alias, tags, done): {ours * 1000:.1f} ms  = {ours / bare:.1f}x")
    print(f"registry.record (one audit row, no tracking server): {rec * 1000:.2f} ms  = {rec / bare:.2f}x")
    print(f"history() of {len(h)} events: {hist * 1000:.0f} ms  = {hist / bare:.1f}x one alias move")
    write_results(json_path, {"alias_moves": n, "bare_alias_move_ms": bare * 1000, "promote_rollback_ms": ours * 1000,
                              "promote_rollback_ratio": ours / bare, "record_ms": rec * 1000, "record_ratio": rec / bare,
                              "history_events": len(h), "history_ms": hist * 1000, "history_ratio": hist / bare})


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moves", type=int, default=20); ap.add_argument("--trail-rows", type=int, default=2_000)
    add_json_option(ap, "registry"); a = ap.parse_args()
    main(a.moves, a.trail_rows, a.json)
