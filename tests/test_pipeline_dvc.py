"""The pipeline runner end to end on tiny job notebooks: real git, real DVC, real papermill."""
import json
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
