"""Job reports read as reports: real job notebooks run by papermill through `churnops.runner`, their HTML copies checked
for hidden code, no stderr or progress-bar noise, the verdict first and the figures kept; and churnops' MLflow experiments
carry the tag that opens them in MLflow 3's model-training view."""
import json
import os
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from churnops import monitor, runner
from churnops.config import Paths
from churnops.simulate import simulate_world
from churnops.tracking import EXPERIMENT_KIND_TAG, tracking_client

STDERR = 'data-mime-type="application/vnd.jupyter.stderr"'   # how nbconvert marks a rendered stderr stream


@pytest.fixture(autouse=True)
def _no_pinned_tracking_uri():
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


def cells(html: str) -> list[tuple[str, str]]:
    "The report's cells in order: (kind, markup), kind 'code' or 'markdown'."
    out = []
    for chunk in html.split('<div class="jp-Cell ')[1:]:
        head = chunk.split(">", 1)[0]
        out.append(("code" if "jp-CodeCell" in head else "markdown", chunk))
    return out


def outputs(nb) -> list[dict]:
    return [o for c in nb.cells for o in c.get("outputs", [])]


def check_report(html: str, verdict_text: str, executed) -> None:
    "No input code, no stderr or progress noise, the verdict cell is the first output, under the Verdict heading."
    cs = cells(html)
    code = [k for k, (kind, _) in enumerate(cs) if kind == "code"]
    assert code, "the report shows no outputs"
    assert not [k for k in code if "jp-InputArea" in cs[k][1]], "a code cell shows its input"
    assert 'class="jp-CodeMirrorEditor' not in html and "hl-ipython3" not in html
    assert STDERR not in html and "IProgress" not in html and "Downloading artifacts" not in html
    for c in executed.cells:                           # no parameter cell's source, none of the code
        if c.cell_type == "code":
            first_line = c.source.strip().splitlines()[0] if c.source.strip() else ""
            if len(first_line) > 20: assert first_line not in html, first_line
    v = next(k for k, (_, m) in enumerate(cs) if 'id="Verdict"' in m)
    assert code[0] == v + 1, "the first output is not the verdict"
    assert verdict_text in cs[v + 1][1]


@pytest.fixture(scope="module")
def data_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("data")
    simulate_world(home, customers=150, days=45, seed=3)
    out, result = runner.run_job("data", home)
    return home, out, result


def test_data_job_report(data_run):
    home, out, result = data_run
    html = out.with_suffix(".html").read_text()
    executed = nbformat.read(out, as_version=4)
    check_report(html, f"build {result['build_id']}", executed)
    stderr = [o for o in outputs(executed) if o.get("name") == "stderr"]
    assert any("data requirements not met" in o.text for o in stderr)     # the notebook keeps its warnings ...
    assert "data requirements not met" not in html                         # ... the report does not show them
    assert "IProgress" not in "".join(o.text for o in stderr)              # the kernel ran under JOB_ENV
    assert "<table" in html and "customers" in html                        # the transform report table stays
    assert any("parameters" in c.metadata.get("tags", []) for c in executed.cells)   # the record keeps every cell


@pytest.fixture(scope="module")
def monitored(tmp_path_factory):
    "A registered model with a reference profile and a drifted prediction log (the monitoring job's test world)."
    import numpy as np
    from test_monitor_job import features, register_model, write_world
    rng = np.random.default_rng(1)
    home = tmp_path_factory.mktemp("monitor")
    register_model(home, features(rng, 3000))
    end = pd.Timestamp.now(tz="UTC") + pd.Timedelta(minutes=5)
    write_world(home, rng, 1500, end, 1.0, 0.35)
    res = monitor.run_monitor(home, end - pd.Timedelta(days=2, minutes=1), end)
    return home, res


def test_monitor_job_report_has_the_decision_first_and_its_figures(monitored):
    home, res = monitored
    nb_path, html = Path(res["notebook"]), Path(res["html"]).read_text()
    executed = nbformat.read(nb_path, as_version=4)
    check_report(html, "Retrain: " + ("yes" if res["trigger"]["retrain"] else "no"), executed)
    assert res["trigger"]["retrain"] is True and "data_drift" in html      # retrain, and why
    figures = sum("image/png" in o.get("data", {}) for o in outputs(executed))
    assert figures >= 2 and html.count("<img") == figures                   # every figure the job drew is in the report
    noise = "".join(o.get("text", "") for o in outputs(executed))
    assert "Downloading artifacts" not in noise and "IProgress" not in noise   # quiet kernel: not even in the record


def test_churnops_experiments_open_in_the_model_training_view(monitored):
    home, _ = monitored
    client = tracking_client(home)
    for name in ("churn", monitor.MONITOR_EXPERIMENT):      # made by setup_mlflow in the test world and in the job's kernel
        exp = client.get_experiment_by_name(name)
        assert exp is not None and exp.tags.get(EXPERIMENT_KIND_TAG) == "custom_model_development", name
    assert EXPERIMENT_KIND_TAG == "mlflow.experimentKind"
