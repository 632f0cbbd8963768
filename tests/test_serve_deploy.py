"""The registry drives what is served: a real 2-worker `churnops serve` under a bounded load follows `churnops promote`,
`rollback`, `deploy` (a canary to 100 %, which promotes in the registry; a canary that breaks a guardrail and is rolled
back by itself) with 0 failed requests, refuses a version that cannot load, resumes the recorded deployment after a
restart, and answers /metrics for both workers."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import free_port_number
from test_serve_helpers import template_home, LoadLoop, copy_home, record, running_server

pytestmark = pytest.mark.server
WORKERS = 2


@pytest.fixture(scope="session")
def serve_template():
    return template_home()


@pytest.fixture(scope="module")
def home(serve_template, tmp_path_factory):
    home = copy_home(serve_template[0], tmp_path_factory.mktemp("serve_deploy"))
    # the tiny test models log no quality metrics but the baseline's; latency is judged by the canary, not the gate
    (home / "churnops.yaml").write_text("offline_gates: {}\nconstraints:\n  latency_ms: 60000\n")
    return home


@pytest.fixture(scope="module")
def server(home):
    with running_server(home, free_port_number(), workers=WORKERS) as srv:
        yield srv


def cli(home, *args):
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-c", "import sys; from churnops.cli import main; sys.exit(main())", *args, "--home", str(home)],
                          capture_output=True, text=True, timeout=180, env=env)


def audit_actions(home):
    from churnops import registry
    return list(registry.history(home, "churn").action)


def wait_until_only(load, version, timeout=60, variant="champion"):
    "Wait until 200 answers in a row came from `version`; returns seconds waited."
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        tail = load.results[-200:]
        if len(tail) == 200 and {(v, var) for _, v, var, _ in tail} == {(version, variant)}: return time.monotonic() - t0
        time.sleep(0.1)
    raise AssertionError(f"still not only v{version}: {sorted({(v, var) for _, v, var, _ in load.results[-200:]})}")


def worker_states(srv, tries=200):
    "/admin/state from each worker (a new connection each time lands on either; collected by pid)."
    seen = {}
    for _ in range(tries):
        st = httpx.get(srv.url + "/admin/state", headers=srv.admin_headers(), timeout=10).json()
        seen[st["pid"]] = st
        if len(seen) == WORKERS: break
    return seen


def test_promote_rollback_and_deploy_reach_every_worker_under_load(server, serve_template):
    from churnops import registry
    with LoadLoop(server.url, threads=4) as load:
        load.wait_for(100)
        r = cli(server.home, "promote", "--version", "2")
        assert r.returncode == 0, r.stderr
        t_promote = wait_until_only(load, 2)
        r = cli(server.home, "rollback", "--reason", "test")
        assert r.returncode == 0, r.stderr
        t_rollback = wait_until_only(load, 1)
        r = cli(server.home, "deploy", "--strategy", "blue-green", "--version", str(serve_template[1]["broken"]))
        assert r.returncode == 1 and "could not load" in r.stderr, r.stderr          # refused before anything moved
        load.wait_for(100)
    assert load.failures == [], load.failures[:5]
    assert {v for _, v, _, _ in load.results[-100:]} == {1}
    assert registry.champion(server.home, "churn") == 1
    states = worker_states(server)
    assert len(states) == WORKERS and {s["champion"]["version"] for s in states.values()} == {1}, states
    print(f"followed promote in {t_promote:.2f}s, rollback in {t_rollback:.2f}s ({len(load.results)} answers, 0 failed)")


def test_canary_to_100_percent_promotes_in_the_registry(server):
    from churnops import registry
    with LoadLoop(server.url, threads=4) as load:
        load.wait_for(50)
        r = cli(server.home, "deploy", "--strategy", "canary", "--version", "2", "--percent", "30", "--steps", "60,100",
                "--step-seconds", "1", "--min-requests", "5", "--max-p99-ms", "60000")
        assert r.returncode == 0, r.stderr
        mark = len(load.results)
        deadline = time.monotonic() + 30
        while registry.champion(server.home, "churn") != 2 and time.monotonic() < deadline: time.sleep(0.2)
        wait_until_only(load, 2)
    assert load.failures == [], load.failures[:5]
    during = load.results[mark:]
    assert {var for _, _, var, _ in during} >= {"challenger", "champion"}        # the canary really split traffic
    assert registry.champion(server.home, "churn") == 2
    acts = audit_actions(server.home)
    assert "canary" in acts, acts
    tail = acts[len(acts) - 1 - acts[::-1].index("canary"):]
    assert tail[:4] == ["canary", "canary_step", "canary_complete", "promote"], acts
    from churnops import deploy
    assert deploy.current_deployment(server.home, "churn")["strategy"] == "none"


def test_canary_breaking_a_guardrail_is_rolled_back_and_recorded(server):
    from churnops import deploy, registry
    with LoadLoop(server.url, threads=4) as load:
        load.wait_for(50)
        st, body = server.admin("POST", "/admin/deploy", {"strategy": "canary", "version": 1, "percent": 50, "step_seconds": 3600,
                                                           "guardrails": {"max_p99_ms": 0.001, "min_requests": 5}}).status_code, None
        assert st == 200
        deadline = time.monotonic() + 20
        while deploy.current_deployment(server.home, "churn")["strategy"] == "canary" and time.monotonic() < deadline: time.sleep(0.1)
        wait_until_only(load, 2)
    assert load.failures == [], load.failures[:5]
    rec = deploy.current_deployment(server.home, "churn")
    assert rec["strategy"] == "none" and rec["reason"].startswith("auto: challenger p99 latency"), rec
    assert registry.champion(server.home, "churn") == 2
    assert audit_actions(server.home)[-1] == "deploy_rollback"


def test_a_restart_resumes_the_recorded_deployment_and_metrics_count_every_worker(server):
    "Last test of the module: it stops the module's server and starts another on the same home."
    from churnops import deploy
    r = cli(server.home, "deploy", "--strategy", "canary", "--version", "1", "--percent", "50", "--steps", "100",
            "--step-seconds", "3600", "--max-p99-ms", "60000")
    assert r.returncode == 0, r.stderr
    server.proc.send_signal(signal.SIGTERM); server.proc.wait(30)
    assert "Traceback" not in server.log.read_text(), server.log.read_text()[-3000:]
    with running_server(server.home, free_port_number(), workers=WORKERS) as srv:
        n = 300
        with LoadLoop(srv.url, threads=4, max_requests=n) as load:
            load.join()
        assert load.failures == [] and len(load.results) == n
        assert {(v, var) for _, v, var, _ in load.results} == {(2, "champion"), (1, "challenger")}     # the canary resumed
        states = worker_states(srv)
        assert len(states) == WORKERS and all(s["strategy"] == "canary" for s in states.values())
        text = httpx.get(srv.url + "/metrics").text
        total = sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith("churnops_requests_total{"))
        assert total == n, text
        pids = {p.name.split("_")[-1] for p in (Path(srv.home) / "serve" / "prometheus").glob("counter_*.db")}
        assert len(pids) == WORKERS, pids                                                            # both workers answered
        assert deploy.rollback_deployment(srv.home, "churn")["strategy"] == "none"
