"""Online A/B tests through real processes: `churnops ab start` makes a real 2-worker `churnops serve` route customers by
the same sticky hash as `validate.assign_variant` and log the variants by name; feedback with a planted difference goes
through `/feedback`; `churnops ab analyze` builds the outcomes from the prediction log and the feedback, concludes with
the planted winner (audit trail, deployment record, promotion) and serving returns to the champion; `churnops ab stop`
ends a running experiment."""
import json

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import free_port_number
from test_serve_deploy import audit_actions, cli
from test_serve_helpers import copy_home, record, running_server, template_home

pytestmark = pytest.mark.server
WORKERS = 2
T0 = pd.Timestamp("2025-03-01", tz="UTC")          # the world's time the requests are about (event time)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = copy_home(template_home()[0], tmp_path_factory.mktemp("ab_online"))
    # the tiny test models log no quality metrics but the baseline's: no offline gates, so a winner can be promoted
    (home / "churnops.yaml").write_text("offline_gates: {}\nconstraints:\n  latency_ms: 60000\n")
    return home


@pytest.fixture(scope="module")
def server(home):
    with running_server(home, free_port_number(), workers=WORKERS) as srv:
        yield srv


def design(path, name, promote=False):
    ab = {"experiment": name, "variants": {"control": {"model_version": "churn@champion", "traffic": 50},
                                           "treatment": {"model_version": "churn/2", "traffic": 50}},
          "min_sample_size": 100, "baseline_rate": 0.4, "mde": 0.2, "duration_days": 60,
          "stop": {"on_significance": True, "promote_winner": promote}}
    path.write_text(yaml.safe_dump(ab))
    return ab


def predict(srv, records):
    r = httpx.post(srv.url + "/predict", json=records, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def wait_for_variants(srv, names, customer=999_999, tries=300):
    "Wait until every worker serves the experiment (new connections land on either worker)."
    seen = 0
    for _ in range(tries):
        v = predict(srv, record(0, customer_id=customer))["variant"]
        seen = seen + 1 if v in names else 0
        if seen >= 20: return
    raise AssertionError(f"the service did not switch to {names}")


def test_online_experiment_routes_by_assign_variant_and_concludes_with_the_planted_winner(server, home):
    from churnops.validate import assign_variant
    cfg = home / "ab_test.yaml"
    ab = design(cfg, "online-exp", promote=True)
    r = cli(home, "ab", "start", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["strategy"] == "experiment" and rec["experiment"] == "online-exp"
    assert {n: v["version"] for n, v in rec["variants"].items()} == {"control": 1, "treatment": 2}
    wait_for_variants(server, {"control", "treatment"})

    customers = list(range(1000, 1400))
    shares = {n: v["traffic"] for n, v in ab["variants"].items()}
    seen: dict[int, set] = {}
    for rnd in range(3):                              # every customer three times, in batches and alone
        for k in range(0, len(customers), 50):
            batch = [record(c, customer_id=c, as_of=(T0 + pd.Timedelta(days=rnd)).isoformat()) for c in customers[k:k + 50]]
            for a in predict(server, batch): seen.setdefault(a["customer_id"], set()).add((a["variant"], a["version"]))
        for c in customers[:20]:
            a = predict(server, record(c, customer_id=c, as_of=(T0 + pd.Timedelta(days=rnd)).isoformat()))
            seen[c].add((a["variant"], a["version"]))
    assert all(len(s) == 1 for s in seen.values()), [c for c, s in seen.items() if len(s) > 1][:5]
    version = {"control": 1, "treatment": 2}
    for c in customers:
        (variant, v), = seen[c]
        assert variant == assign_variant("online-exp", c, shares) and v == version[variant], (c, variant, v)
    arms = {v: [c for c in customers if next(iter(seen[c]))[0] == v] for v in version}
    assert min(len(a) for a in arms.values()) > 150

    # planted outcomes: 50 % of the control's customers churn, 10 % of the treatment's; stayers are known past the horizon
    rng = np.random.default_rng(0)
    fb = []
    for v, rate in (("control", 0.5), ("treatment", 0.1)):
        for c in arms[v]:
            churn = bool(rng.random() < rate)
            fb.append({"customer_id": c, "churned": churn, "time": (T0 + pd.Timedelta(days=10 if churn else 45)).isoformat()})
    assert httpx.post(server.url + "/feedback", json=fb, timeout=60).json()["stored"] == len(fb)

    out = home / "analysis.json"
    r = cli(home, "ab", "analyze", "--config", str(cfg), "--json", str(out))
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["decision"] == "ship treatment", r.stdout
    c = res["conclusion"]
    assert (c["stop"], c["winner"], c["ended_now"], c["promoted"], c["pending_customers"]) == (True, "treatment", True, 2, 1)   # 1: the warm-up customer has no feedback
    by_variant = {v["variant"]: v for v in res["variants"]}
    assert {k: by_variant[k]["customers"] for k in version} == {k: len(arms[k]) for k in version}
    comp = res["comparisons"][0]
    assert comp["churn_reduction"] > 0.5 and comp["target_churn_reduction"] == 0.3
    assert {g["guardrail"] for g in res["guardrails"]} == {"p99_latency_ms", "error_rate"}
    acts = audit_actions(home)
    assert acts.index("ab_start") < acts.index("ab_concluded") < len(acts) - 1 - acts[::-1].index("promote")

    from churnops import deploy, registry
    assert deploy.current_deployment(home, "churn")["strategy"] == "none" and registry.champion(home, "churn") == 2
    wait_for_variants(server, {"champion"})
    assert predict(server, record(0, customer_id=1000))["version"] == 2

    # analysing the ended experiment again reports, and changes nothing
    r = cli(home, "ab", "analyze", "--config", str(cfg))
    assert r.returncode == 0 and "ship treatment" in r.stdout, r.stdout + r.stderr
    assert audit_actions(home).count("ab_concluded") == 1


def test_ab_stop_returns_serving_to_the_champion(server, home):
    cfg = home / "ab_test_2.yaml"
    design(cfg, "second-exp")
    from churnops import registry
    champ = registry.champion(home, "churn")
    r = cli(home, "ab", "start", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert cli(home, "ab", "start", "--config", str(cfg)).returncode == 1          # one experiment at a time
    wait_for_variants(server, {"control", "treatment"})
    r = cli(home, "ab", "analyze", "--config", str(cfg), "--no-conclude")
    assert r.returncode == 0 and "underpowered" in r.stdout, r.stdout + r.stderr
    r = cli(home, "ab", "stop", "--reason", "enough")
    assert r.returncode == 0, r.stderr
    wait_for_variants(server, {"champion"})
    assert predict(server, record(0, customer_id=5))["version"] == champ
    assert audit_actions(home)[-2:] == ["ab_start", "ab_stop"]
    assert cli(home, "ab", "stop").returncode == 1                                  # nothing running any more
