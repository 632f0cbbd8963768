"""The registry and lineage flows against a real `mlflow server` (started by the session fixture): promote, promote, refuse,
rollback, history with semantic versions, parallel promotes from processes, lineage both ways and diff. The audit trail stays
in SQLite under the home; the model-version tags on the server mirror it."""
import json
import uuid

import pytest

from test_registry_concurrency import check_consistent_chain, run_parallel_promotes
from test_registry_support import BAD, GOOD, build_home, stable_hash

from churnops import lineage as L
from churnops import registry

pytestmark = pytest.mark.server

SERVER_VERSIONS = [
    (["tenure", "charges"], "build-1", "logreg", 1.0, GOOD),            # v1 1.0.0
    (["tenure", "charges"], "build-2", "logreg", 1.0, GOOD),            # v2 1.0.1
    (["tenure", "charges", "tickets"], "build-2", "logreg", 1.0, GOOD),  # v3 1.1.0
    (["tenure", "charges", "tickets"], "build-3", "logreg", 1.0, BAD),   # v4 refused
]


@pytest.fixture
def server_home(mlflow_server, tracking_env, tmp_path):
    "A home whose tracking store is the real server, with SERVER_VERSIONS registered under a fresh model name."
    tracking_env(mlflow_server)
    name = f"churn-{uuid.uuid4().hex[:8]}"
    home = tmp_path / "home"
    build_home(home, SERVER_VERSIONS, model=name)
    return home, name


def test_flow_against_server(server_home):
    home, name = server_home
    assert registry.registry_client(home).tracking_uri.startswith("http://127.0.0.1:")
    assert [registry.promote(home, name, v)["semver"] for v in (1, 2, 3)] == ["1.0.0", "1.0.1", "1.1.0"]
    with pytest.raises(registry.GateFailure, match="recall: recall = 0.5000 < 0.75"):
        registry.promote(home, name, 4)
    assert registry.rollback(home, name)["to_version"] == 2
    assert registry.rollback(home, name)["to_version"] == 1
    with pytest.raises(registry.RegistryError, match="nothing to roll back to"):
        registry.rollback(home, name)
    c = registry.registry_client(home)
    assert int(c.get_model_version_by_alias(name, "champion").version) == 1
    h = registry.history(home, name)
    assert h[["action", "to_version", "status"]].values.tolist() == [
        ["promote", 1, "done"], ["promote", 2, "done"], ["promote", 3, "done"], ["promote", 4, "failed"],
        ["rollback", 2, "done"], ["rollback", 1, "done"]]
    assert h.semver.tolist() == ["1.0.0", "1.0.1", "1.1.0", None, "1.0.1", "1.0.0"]
    mv = c.get_model_version(name, "3")                                    # the server holds the mirror
    assert mv.tags["churnops.semver"] == "1.1.0"
    assert sorted(json.loads(v)["action"] for k, v in mv.tags.items() if k.startswith("churnops.audit.")) == ["promote", "rollback"]  # 2→3, 3→2
    with pytest.raises(registry.RegistryError, match=f"has no version 9"):
        registry.promote(home, name, 9)

    # lineage both ways, and diff, on the server
    lin = L.lineage(home, name, 3)
    assert lin["data"]["build_id"] == "build-2" and lin["data"]["tables"]["customers"]["rows"] == 100
    assert lin["parents"]["replaced_champion"] == 2
    found = L.models_for_data(home, stable_hash("build-2", "customers"))
    assert found[found.model == name].version.tolist() == [2, 3]
    d = L.diff(home, name, 1, 3)
    assert d["features"]["added"] == ["tickets"] and d["semver"] == ("1.0.0", "1.1.0")


def test_parallel_promotes_against_server(server_home, tmp_path):
    home, name = server_home
    import os
    results = run_parallel_promotes(home, [1, 2], tmp_path, env={**os.environ, "CHURNOPS_TEST_MODEL": name})
    for r in results: assert r.returncode == 0, r.stderr[-2000:]
    c = registry.registry_client(home)
    alias = int(c.get_model_version_by_alias(name, "champion").version)
    check_consistent_chain(registry.history(home, name), [1, 2], alias)
