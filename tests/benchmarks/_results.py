"""Where a benchmark's figures go: one small JSON file per benchmark, read by `nbs/95_benchmarks.ipynb`.

Every script calls `add_json_option(parser, name)` and, at the end, `write_results(path, figures)`. The file holds the
figures and how they were measured: the UTC date, the git commit (and the tracked files changed since it), the load average
when the script started and when it wrote, the CPU count and the command line. It is written atomically (a temporary file
in the same folder, then a rename), so the chapter never reads half a file."""
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
LOAD_AT_START = os.getloadavg()          # taken when the script imports this module, before it measures anything


def add_json_option(parser, name: str) -> None:
    "Add `--json PATH` (default `tests/benchmarks/results/<name>.json`; `--json ''` writes nothing)."
    parser.add_argument("--json", default=str(RESULTS / f"{name}.json"), metavar="PATH",
                        help=f"where to write the figures as JSON (default: {RESULTS.relative_to(ROOT) / (name + '.json')}; '' for none)")


def _git(*args: str) -> str:
    try: return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired): return ""


def run_info() -> dict:
    "How and where this run measured: date, commit, load average before and now, CPU count, command line."
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": _git("rev-parse", "HEAD").strip(),
            "changed": [l[3:] for l in _git("status", "--porcelain", "--untracked-files=no").splitlines()][:20],
            "loadavg_start": [round(x, 2) for x in LOAD_AT_START], "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "cpu_count": os.cpu_count(), "command": " ".join([Path(sys.executable).name, *sys.argv])}


def _plain(x):
    "numpy scalars and arrays, paths and tuples as JSON values."
    if hasattr(x, "tolist"): return x.tolist()
    if isinstance(x, Path): return str(x)
    raise TypeError(f"cannot write {type(x).__name__} to a benchmark result: {x!r}")


def write_results(path: str | None, figures: dict) -> Path | None:
    "Write `{'run': run_info(), 'figures': figures}` to `path` atomically; None or '' writes nothing."
    if not path: return None
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"run": run_info(), "figures": figures}, indent=1, default=_plain, allow_nan=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f: f.write(text + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True); raise
    print(f"figures written to {path}")
    return path
