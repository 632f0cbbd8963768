"""Registry end to end on the embedded SQLite store: promote, promote, rollback, history with semantic versions, gate refusals,
forced promotions, challenger alias, deploy records, and the CLI."""
import json

import pandas as pd
import pytest

from test_registry_support import home, registry_template  # noqa: F401  (fixtures)

from churnops import registry
from churnops.cli import main


def _alias(home, alias="champion", model="churn"):
    c = registry.registry_client(home)
    return int(c.get_model_version_by_alias(model, alias).version)


def test_promote_rollback_history_with_semver(home):
    # the seed's table: 1.0.0 first release, 1.0.1 retrain, 1.1.0 new features, 1.2.0 tuning, 2.0.0 new family
    got = [registry.promote(home, "churn", v, actor="ana") for v in (1, 2, 3, 4, 5)]
    assert [e["semver"] for e in got] == ["1.0.0", "1.0.1", "1.1.0", "1.2.0", "2.0.0"]
    assert got[1]["semver_reason"].startswith("PATCH: same configuration retrained on new data")
    assert got[2]["semver_reason"] == "MINOR: features added: ['tickets']"
    assert got[3]["semver_reason"] == "MINOR: hyperparameters changed: model_C: 1.0 → 10.0"
    assert got[4]["semver_reason"].startswith("MAJOR: model family logreg → rf")
    assert [e["from_version"] for e in got] == [None, 1, 2, 3, 4]
    assert _alias(home) == 5
    assert registry.rollback(home, "churn", reason="bad latency", actor="ben")["to_version"] == 4
    assert _alias(home) == 4
    assert registry.rollback(home, "churn")["to_version"] == 3      # twice = two steps back
    assert _alias(home) == 3 and registry.champion(home, "churn") == 3

    h = registry.history(home, "churn")
    assert h.action.tolist() == ["promote"] * 5 + ["rollback"] * 2
    assert h.to_version.tolist() == [1, 2, 3, 4, 5, 4, 3]
    assert h.from_version.tolist()[-2:] == [5, 4]
    assert h.semver.tolist() == ["1.0.0", "1.0.1", "1.1.0", "1.2.0", "2.0.0", "1.2.0", "1.1.0"]
    assert h.actor.tolist()[:6] == ["ana"] * 5 + ["ben"] and h.reason.iloc[5] == "bad latency"
    assert (h.status == "done").all() and h.seq.is_monotonic_increasing and h.time.is_monotonic_increasing
    assert h.gates_passed.tolist()[:5] == [1] * 5 and "accuracy ✓" in h.gates.iloc[0]

    # mirrored on the model-version tags
    c = registry.registry_client(home)
    mv = c.get_model_version("churn", "5")
    assert mv.tags["churnops.semver"] == "2.0.0" and "MAJOR" in mv.tags["churnops.semver_reason"]
    mirrored = [json.loads(v) for k, v in mv.tags.items() if k.startswith("churnops.audit.")]
    assert sorted((e["action"], e["from_version"], e["to_version"]) for e in mirrored) == [("promote", 4, 5), ("rollback", 5, 4)]
    # re-promoting keeps the first semantic version; a new candidate bumps the highest issued, never reusing a number
    assert registry.promote(home, "churn", 5)["semver"] == "2.0.0"


def test_gate_refusal_force_and_missing_metrics(home):
    registry.promote(home, "churn", 1)
    with pytest.raises(registry.GateFailure) as e:
        registry.promote(home, "churn", 6)
    msg = str(e.value)
    assert "refusing to promote 'churn' version 6" in msg
    for gate in ("accuracy: accuracy = 0.7000 < 0.85", "recall: recall = 0.5000 < 0.75", "roc_auc: roc_auc = 0.7500 < 0.85"):
        assert gate in msg
    assert "precision:" not in msg                                  # passing gates are not listed as failures
    assert _alias(home) == 1
    with pytest.raises(registry.RegistryError, match="--force needs a --reason"):
        registry.promote(home, "churn", 6, force=True)
    ev = registry.promote(home, "churn", 6, force=True, reason="business override", actor="cto")
    assert (ev["forced"], ev["gates_passed"], ev["to_version"]) == (1, 0, 6) and _alias(home) == 6

    with pytest.raises(registry.GateFailure) as e:                  # v7's run has no metrics at all
        registry.promote(home, "churn", 7)
    assert "has no logged metrics" in str(e.value) and "metric 'accuracy' missing" in str(e.value)

    h = registry.history(home, "churn")
    assert h[["action", "to_version", "status"]].values.tolist() == [
        ["promote", 1, "done"], ["promote", 6, "failed"], ["promote", 6, "done"], ["promote", 7, "failed"]]
    assert h.forced.tolist() == [False, False, True, False]
    assert h.note.iloc[1] == "refused by the quality gates" and "recall ✗" in h.gates.iloc[1]
    assert registry.champion(home, "churn") == 6


def test_latency_and_size_are_measured_when_not_logged(home, tmp_path):
    import mlflow
    saved = mlflow.get_registry_uri()
    mlflow.set_registry_uri((tmp_path / "elsewhere").as_uri())     # the process-wide registry points elsewhere:
    try:                                                           # the home's client must still be used
        _measured(home)
    finally:
        mlflow.set_registry_uri(saved)


def _measured(home):
    c = registry.registry_client(home)
    metrics, source = registry.gate_metrics(c, c.get_model_version("churn", "7"))   # v7 logged no metrics
    assert source == {"p99_latency_ms": "measured at promote", "throughput_rps": "measured at promote", "model_size_mb": "measured at promote"}
    assert metrics["p99_latency_ms"] > 0 and metrics["throughput_rps"] > 0 and 0 < metrics["model_size_mb"] < 5
    metrics, source = registry.gate_metrics(c, c.get_model_version("churn", "1"))   # v1 logged them: no measuring
    assert source["p99_latency_ms"] == "run" and metrics["p99_latency_ms"] == 3.0


def test_challenger_alias_and_records(home):
    registry.promote(home, "churn", 1)
    ev = registry.set_alias(home, "churn", "challenger", 3, reason="A/B")
    assert (ev["action"], ev["to_version"]) == ("set_alias", 3) and _alias(home, "challenger") == 3
    registry.promote(home, "churn", "challenger")                   # promote by alias
    assert _alias(home) == 3
    registry.set_challenger(home, "churn", 4, reason="shadow", actor="pipeline")
    assert _alias(home, "challenger") == 4
    registry.set_alias(home, "churn", "challenger", None)           # remove
    with pytest.raises(registry.RegistryError, match="has no alias 'challenger'"):
        registry.promote(home, "churn", "challenger")
    with pytest.raises(registry.RegistryError, match="only through promote and rollback"):
        registry.set_alias(home, "churn", "champion", 2)
    registry.record(home, "churn", "deploy", from_version=1, to_version=3, actor="serve", details={"strategy": "canary", "share": 0.1})
    with pytest.raises(registry.RegistryError, match="reserved"):
        registry.record(home, "churn", "promote", to_version=2)
    h = registry.history(home, "churn")
    assert h.action.tolist() == ["promote", "set_alias", "promote", "set_alias", "remove_alias", "deploy"]
    assert h.alias.tolist()[:5] == ["champion", "challenger", "champion", "challenger", "challenger"]
    assert h.from_version.iloc[4] == 4 and pd.isna(h.to_version.iloc[4])          # removal: 4 → nothing
    assert registry.rollback(home, "churn")["to_version"] == 1       # deploy/challenger events do not disturb the champion stack


def test_cli_promote_rollback_history(home, capsys):
    H = str(home)
    assert main(["promote", "--home", H, "--model", "churn", "--version", "1"]) == 0
    assert main(["promote", "--home", H, "--model", "churn", "--version", "3", "--reason", "new features"]) == 0
    out = capsys.readouterr().out
    assert "promoted churn: champion v1 → v3  semver 1.1.0" in out
    assert main(["promote", "--home", H, "--model", "churn", "--version", "6"]) == 1
    err = capsys.readouterr().err
    assert "gate(s) failed" in err and "recall" in err
    assert main(["promote", "--home", H, "--model", "churn", "--version", "6", "--force", "--reason", "override"]) == 0
    assert main(["rollback", "--home", H, "--model", "churn"]) == 0
    assert "rolled back churn: champion v6 → v3" in capsys.readouterr().out
    assert main(["history", "--home", H, "--model", "churn"]) == 0
    out = capsys.readouterr().out
    for s in ("1.0.0", "1.1.0", "rollback", "forced", "FAIL", "refused by the quality gates"):
        assert s in out
    assert main(["history", "--home", H, "--model", "churn", "--json", "--limit", "1"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0]["action"] == "rollback" and rows[0]["to_version"] == 3
    assert main(["rollback", "--home", H, "--model", "churn"]) == 0    # 3 → 1
    assert main(["rollback", "--home", H, "--model", "churn"]) == 1    # nothing left
    assert "nothing to roll back to" in capsys.readouterr().err
