"""The pipeline runner end to end on tiny job notebooks: real git, real DVC, real papermill."""
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from churnops import pipeline


def _job(path: Path, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("home = ''\nrun_id = ''\nresult_path = ''\nvalue = 1\nfail = False")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nbformat.write(nb, path)


BODY = """import json, pathlib
if fail: raise ValueError("stage asked to fail")
out = pathlib.Path(home) / "outputs" / "trace.log"
with open(out, "a") as f: f.write(STAGE + "\\n")
json.dump({"value": value}, open(result_path, "w"))
"""


@pytest.fixture
def workspace(tmp_path):
    home = tmp_path / "ws"
    pipeline.init_workspace(home)
    for stage in ("a", "b"):
        _job(home / "jobs" / f"toy_{stage}.ipynb", f"STAGE = {stage!r}\n" + BODY)
    spec = {"name": "toy", "schedule": "0 2 * * *", "promotion": "none",
            "stages": {"a": {"notebook": "toy_a", "params": {"value": 1}},
                       "b": {"notebook": "toy_b", "params": {"value": 10}}}}
    (home / "training_pipeline.yaml").write_text(yaml.safe_dump(spec))
    return home


def _trace(home):
    p = home / "outputs" / "trace.log"
    return p.read_text().split() if p.exists() else []


def test_repro_skips_unchanged_and_reruns_dependents(workspace):
    s1 = pipeline.run_pipeline(workspace, quiet=True)
    assert s1["ran"] == ["a", "b"] and _trace(workspace) == ["a", "b"]
    assert (workspace / "runs" / s1["run_id"] / "a.ipynb").exists()
    assert (workspace / "runs" / s1["run_id"] / "b.html").exists()
    s2 = pipeline.run_pipeline(workspace, quiet=True)
    assert s2["ran"] == [] and s2["skipped"] == ["a", "b"] and _trace(workspace) == ["a", "b"]
    spec = yaml.safe_load((workspace / "training_pipeline.yaml").read_text())
    spec["stages"]["b"]["params"]["value"] = 11          # only b depends on this
    (workspace / "training_pipeline.yaml").write_text(yaml.safe_dump(spec))
    assert "b" in pipeline.pipeline_status(workspace)
    s3 = pipeline.run_pipeline(workspace, quiet=True)
    assert s3["ran"] == ["b"] and _trace(workspace) == ["a", "b", "b"]
    assert json.loads((workspace / "outputs" / "b.json").read_text())["value"] == 11
    assert "11" in pipeline.pipeline_diff(workspace, "HEAD~1")


def test_failing_stage_stops_later_stages_and_keeps_notebook(workspace):
    spec = yaml.safe_load((workspace / "training_pipeline.yaml").read_text())
    spec["stages"]["a"]["params"]["fail"] = True         # the first stage fails: the second must not run
    (workspace / "training_pipeline.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(pipeline.PipelineError) as e:
        pipeline.run_pipeline(workspace, quiet=True)
    assert "stage asked to fail" in str(e.value) or "failed" in str(e.value)
    assert _trace(workspace) == []                       # b never ran
    kept = list((workspace / "runs").glob("*/a.ipynb"))
    assert kept, "the failing stage's executed notebook is kept"
    assert "stage asked to fail" in kept[0].read_text()


def test_cli_status_and_errors(workspace):
    r = subprocess.run([sys.executable, "-m", "churnops.cli", "pipeline", "status", "--home", str(workspace)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "a:" in r.stdout and "b:" in r.stdout            # both stages are stale before the first run
    r = subprocess.run([sys.executable, "-m", "churnops.cli", "pipeline", "run", "--home", str(workspace / "nope")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "not a churnops workspace" in r.stderr
    r = subprocess.run([sys.executable, "-m", "churnops.cli", "schedule", "install", "--print-only", "--home", str(workspace)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("0 2 * * * ") and "pipeline run --home" in r.stdout


def _git(home, *args) -> str:
    return subprocess.run(["git", *args], cwd=home, capture_output=True, text=True, check=True).stdout


def test_admin_token_never_enters_git(workspace):
    from churnops.files import write_text_atomic
    from churnops.serve import server_info_path
    token = "tok-" + "x9" * 20
    write_text_atomic(server_info_path(workspace), json.dumps({"host": "127.0.0.1", "port": 1, "token": token}), private=True)
    write_text_atomic(workspace / "serve" / "admin_token", token, private=True)
    pipeline.run_pipeline(workspace, quiet=True)
    assert not [f for f in _git(workspace, "ls-files").splitlines() if f.startswith("serve/")]
    assert token not in _git(workspace, "log", "-p", "--all")
    # a workspace made before serve/ was ignored, with the token already tracked: the next run stops tracking it
    gi = workspace / ".gitignore"
    gi.write_text("\n".join(l for l in gi.read_text().splitlines() if l != "serve/") + "\n")
    _git(workspace, "add", "-A"); _git(workspace, "commit", "-q", "-m", "old workspace")
    assert "serve/server.json" in _git(workspace, "ls-files")
    pipeline.run_pipeline(workspace, quiet=True)
    assert "serve/" in gi.read_text().split()
    assert not [f for f in _git(workspace, "ls-files").splitlines() if f.startswith("serve/")]
    assert (workspace / "serve" / "server.json").exists()        # untracked, not deleted


def test_triggered_run_that_finds_nothing_says_so(workspace):
    from churnops.monitor import RetrainingTrigger
    s1 = pipeline.run_pipeline(workspace, quiet=True)
    assert s1["ran"] == ["a", "b"] and not s1["ran_nothing"] and s1["reasons"] == []
    # the monitor's trigger fires and launches the pipeline command, as `monitor --retrain` does
    trigger = RetrainingTrigger(workspace)
    decision = trigger.evaluate(accuracy=0.1, now="2025-01-01")
    assert decision.retrain and decision.reasons == ["accuracy_degradation"]
    res = trigger.fire(decision, launch=[sys.executable, "-m", "churnops.cli", "pipeline", "run", "--home", str(workspace)], wait=True)
    out = Path(res["log"]).read_text()
    assert res["returncode"] == 0, out
    assert "ran nothing — no new data: all 2 stages up to date" in out and "accuracy_degradation" in out
    rec = pipeline.read_run(workspace)
    assert rec["ran_nothing"] is True and rec["skipped"] == ["a", "b"] and rec["ran"] == []
    assert rec["reasons"] == ["accuracy_degradation"] and rec["run_id"] != s1["run_id"]
    assert rec == json.loads((workspace / "runs" / rec["run_id"] / "run.json").read_text())
    last = pipeline.triggered_runs(workspace)[-1]                 # beside the trigger's decisions: what its launch did
    assert last["pid"] == trigger.state["launch"]["pid"] == res["pid"]
    assert last["run_id"] == rec["run_id"] and last["ran_nothing"] is True and last["reasons"] == ["accuracy_degradation"]


def test_pipeline_runs_from_a_venv_that_is_not_activated(workspace):
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if k != "PATH"}
    env["PATH"] = os.pathsep.join(p for p in ["/usr/bin", "/bin"] if Path(p).is_dir())   # git, sh; no dvc, no churnops
    probe = subprocess.run(["sh", "-c", "command -v dvc || command -v churnops || true"], env=env, capture_output=True, text=True)
    assert probe.stdout.strip() == "", "the stripped PATH still finds dvc/churnops: the test would prove nothing"
    r = subprocess.run([str(bin_dir / "churnops"), "pipeline", "run", "--home", str(workspace)], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "ran ['a', 'b']" in r.stdout and _trace(workspace) == ["a", "b"]
    line = pipeline.schedule_line(workspace)
    assert str(bin_dir / "churnops") in line and "--reason schedule" in line
