"""Deployment strategies against a real `churnops serve` process under a real load loop: blue-green switch and rollback
with zero failed requests, a version that fails to load, canary stickiness / steps / auto-rollback, shadow, SIGTERM."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import free_port_number
from test_serve_helpers import template_home, LoadLoop, build_template, copy_home, record, running_server

pytestmark = pytest.mark.server


@pytest.fixture(scope="session")
def serve_template():
    return template_home()


@pytest.fixture(scope="module")
def server(serve_template, tmp_path_factory):
    home = copy_home(serve_template[0], tmp_path_factory.mktemp("serve_deploy"))
    # the config's p99 guardrail is impossible to meet: a canary that does not override it must roll back by itself
    (home / "churnops.yaml").write_text("system_metrics:\n  p99_latency_ms: 0.001\n")
    with running_server(home, free_port_number()) as srv:
        yield srv


def cli(home, *args):
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    return subprocess.run([sys.executable, "-c", "import sys; from churnops.cli import main; sys.exit(main())", *args, "--home", str(home)],
                          capture_output=True, text=True, timeout=120, env=env)


def audit_actions(home):
    from churnops import registry
    df = registry.history(home, "churn")
    return list(df["action"]) if len(df) else []


def wait_state(srv, pred, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = srv.admin("GET", "/admin/state").json()
        if pred(st): return st
        time.sleep(0.05)
    raise AssertionError(f"state never reached: {st}")


def test_blue_green_switch_failed_load_and_rollback_under_load(server, serve_template):
    with LoadLoop(server.url, threads=4) as load:
        load.wait_for(50)
        r = server.admin("POST", "/admin/deploy", {"strategy": "blue-green", "version": serve_template[1]["broken"]})
        assert r.status_code == 409 and "could not load" in r.json()["detail"], r.text   # corrupt model file: refused
        load.wait_for(50)
        r = cli(server.home, "deploy", "--strategy", "blue-green", "--version", "2")
        assert r.returncode == 0, r.stderr
        after_switch = len(load.results)
        load.wait_for(100)
        before_rollback = len(load.results)
        r = cli(server.home, "deploy", "rollback")
        assert r.returncode == 0, r.stderr
        after_rollback = len(load.results)
        load.wait_for(100)
    assert load.failures == [], load.failures[:5]
    versions = [v for _, v, _, _ in load.results]
    inflight = load.threads          # answers that were on the wire when a switch returned may carry the old version
    assert set(versions[:50]) == {1}
    assert set(versions[after_switch + inflight:before_rollback]) == {2}
    assert set(versions[after_rollback + inflight:]) == {1} and len(versions) - after_rollback > 50
    st = server.admin("GET", "/admin/state").json()
    assert st["champion"]["version"] == 1 and [e["event"] for e in st["events"]][-3:] == ["load_failed", "switch", "rollback"]
    time.sleep(0.5)
    acts = audit_actions(server.home)
    assert {"deploy_failed", "deploy", "deploy_rollback"} <= set(acts), acts


def test_canary_is_sticky_per_customer_and_steps_to_the_challenger(server):
    r = server.admin("POST", "/admin/deploy", {"strategy": "canary", "percent": 30, "steps": [100], "step_seconds": 3600,
                                               "guardrails": {"max_p99_ms": 60000}})
    assert r.status_code == 200, r.text
    with httpx.Client(base_url=server.url) as c:
        first = {i: c.post("/predict", json=record(i, customer_id=i)).json() for i in range(120)}
        again = {i: c.post("/predict", json=record(i + 7, customer_id=i)).json() for i in range(120)}
    assert {i: a["variant"] for i, a in first.items()} == {i: a["variant"] for i, a in again.items()}   # sticky
    share = sum(a["variant"] == "challenger" for a in first.values()) / 120
    assert 0.15 < share < 0.45, share
    assert all(a["version"] == (2 if a["variant"] == "challenger" else 1) for a in first.values())
    # a short step: the healthy canary moves to 100% and the challenger becomes the champion
    r = server.admin("POST", "/admin/deploy", {"strategy": "canary", "percent": 30, "steps": [100], "step_seconds": 0.2,
                                               "guardrails": {"max_p99_ms": 60000, "min_requests": 5}})
    with LoadLoop(server.url, threads=2) as load:
        st = wait_state(server, lambda s: s["canary"] is None)
    assert load.failures == []
    assert st["champion"]["version"] == 2 and st["events"][-1]["event"] == "canary_complete"
    assert server.admin("POST", "/admin/rollback").json()["state"]["champion"]["version"] == 1


def test_canary_rolls_back_by_itself_when_the_config_guardrail_breaks(server):
    r = cli(server.home, "deploy", "--strategy", "canary", "--percent", "50")
    assert r.returncode == 0, r.stderr
    with LoadLoop(server.url, threads=2) as load:
        st = wait_state(server, lambda s: s["canary"] is None)
    assert load.failures == []
    ev = st["events"][-1]
    assert ev["event"] == "rollback" and ev["reason"].startswith("auto: challenger p99 latency"), ev
    with httpx.Client(base_url=server.url) as c:
        assert {c.post("/predict", json=record(i, customer_id=i)).json()["variant"] for i in range(30)} == {"champion"}
    time.sleep(0.5)
    assert "canary" in audit_actions(server.home)


def test_shadow_scores_a_copy_that_is_never_returned(server):
    from churnops.predlog import read_prediction_log
    r = server.admin("POST", "/admin/deploy", {"strategy": "shadow"})
    assert r.status_code == 200, r.text
    with httpx.Client(base_url=server.url) as c:
        answers = [c.post("/predict", json=record(i, customer_id=5000 + i)).json() for i in range(40)]
    assert {(a["version"], a["variant"]) for a in answers} == {(1, "champion")}
    ids = {a["request_id"] for a in answers}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        log = read_prediction_log(server.home)
        shadow = log[(log.variant == "shadow") & log.request_id.isin(ids)]
        if len(shadow) == 40: break
        time.sleep(0.2)
    assert len(shadow) == 40 and set(shadow.model_version) == {2}
    served = log[(log.variant == "champion") & log.request_id.isin(ids)]
    assert len(served) == 40 and set(served.model_version) == {1}
    assert server.admin("POST", "/admin/rollback").status_code == 200
    assert server.admin("GET", "/admin/state").json()["shadow"] is False


def test_sigterm_during_load_flushes_the_prediction_log(server):
    "Last test of the module: it stops the module's server."
    from churnops.predlog import read_prediction_log
    with LoadLoop(server.url, threads=4) as load:
        load.wait_for(300)
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught: exit status -SIGTERM, not a crash
    assert server.proc.returncode in (0, -signal.SIGTERM), server.log.read_text()[-2000:]
    assert "Traceback" not in server.log.read_text()
    answered = {rid for _, _, _, rid in load.results}
    assert len(answered) >= 300
    logged = set(read_prediction_log(server.home).request_id)
    assert answered <= logged, f"{len(answered - logged)} answered requests missing from the log"
    assert not list((Path(server.home) / "predictions").glob(".*.tmp"))
