"""Lineage both ways on the embedded store: model version → data build, table hashes with sources/params, features, code,
run, parents; data version → model versions; diffs between versions; the CLI; and bad input."""
import json
import shutil

import pytest

from test_registry_support import home, registry_template, stable_hash  # noqa: F401  (fixtures)

from churnops import lineage as L
from churnops import registry
from churnops.cli import main
from churnops.config import Paths


def test_lineage_of_a_version(home):
    registry.promote(home, "churn", 2)
    registry.promote(home, "churn", 3)
    lin = L.lineage(home, "churn", "champion")
    assert (lin["version"], lin["semver"], lin["aliases"], lin["family"]) == (3, "1.1.0", ["champion"], "logreg")
    assert lin["data"]["build_id"] == "build-2"
    assert lin["data"]["build"]["tables"] == {t: stable_hash("build-2", t) for t in ("customers", "transactions")}
    cust = lin["data"]["tables"]["customers"]
    assert cust["hash"] == stable_hash("build-2", "customers") and cust["rows"] == 100
    assert cust["sources"][0]["query"] == "SELECT * FROM customers" and cust["params"]["build"] == "build-2"
    assert lin["features"] == {"feature_set_version": "fs-tenure-charges-tickets", "columns": ["tenure", "charges", "tickets"]}
    assert lin["code"] == {"git_commit": "0123abc", "churnops_version": "0.1.0"}
    assert lin["parents"]["replaced_champion"] == 2 and lin["parents"]["previous_version"] == 2
    assert [(p["action"], p["from_version"], p["to_version"]) for p in lin["promotions"]] == [("promote", 2, 3)]
    assert lin["run"]["run_id"] == registry.registry_client(home).get_model_version("churn", "3").run_id
    text = L.format_lineage(lin)
    for s in ("churn version 3  semver 1.1.0", "data build      build-2", "SELECT * FROM customers", "git 0123abc",
              "replaced champion v2"):
        assert s in text
    png = home / "lin.png"
    L.plot_lineage(lin, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_missing_manifests_are_tolerated(home):
    shutil.rmtree(Paths(home).data)
    lin = L.lineage(home, "churn", 1)
    assert lin["data"]["build"] is None
    assert all(m["manifest"] is None and m["rows"] is None for m in lin["data"]["tables"].values())
    assert "no manifest" in L.format_lineage(lin)
    L.plot_lineage(lin, home / "x.png")                                             # still draws


def test_models_for_data_both_ways(home):
    h2 = stable_hash("build-2", "customers")
    df = L.models_for_data(home, h2)
    assert df.version.tolist() == [2, 3, 4, 5] and set(df.table) == {"customers"}
    assert L.models_for_data(home, h2[:8]).version.tolist() == [2, 3, 4, 5]         # a prefix works
    assert L.models_for_data(home, "build-3").version.tolist() == [6, 7]
    assert L.models_for_data(home, "0" * 16).empty
    with pytest.raises(registry.RegistryError, match="too short"):
        L.models_for_data(home, "ab")
    # and back up: every model found from the data names that data in its own lineage
    for v in df.version:
        assert L.lineage(home, "churn", int(v))["data"]["tables"]["customers"]["hash"] == h2


def test_diff_between_versions(home):
    d = L.diff(home, "churn", 2, 5)
    assert d["family"] == ("logreg", "rf")
    assert d["features"]["added"] == ["tickets"] and d["features"]["removed"] == []
    assert d["params"].set_index("param").to_dict("index") == {
        "model_C": {"a": "1.0", "b": None}, "model_n_estimators": {"a": None, "b": "3"}, "model_family": {"a": "logreg", "b": "rf"}}
    assert not d["data"]["tables"].changed.any() and d["data"]["build"] == ("build-2", "build-2")
    d = L.diff(home, "churn", 1, 6)
    m = d["metrics"].set_index("metric")
    assert m.loc["recall", "change"] == pytest.approx(-0.31) and m.loc["precision", "change"] == 0
    assert d["data"]["tables"].changed.all()
    text = L.format_diff(d)
    assert "recall                  0.8100 → 0.5000  (-0.3100)" in text and "build build-1 → build-3" in text
    with pytest.raises(registry.RegistryError, match="has no version 42"):
        L.diff(home, "churn", 1, 42)


def test_cli_lineage_and_diff(home, capsys):
    H = str(home)
    assert main(["lineage", "--home", H, "--model", "churn", "--version", "4"]) == 0
    out = capsys.readouterr().out
    assert "churn version 4" in out and (Paths(home).reports / "lineage_churn_v4.png").exists()
    assert main(["lineage", "--home", H, "--data", stable_hash("build-1", "transactions")]) == 0
    out = capsys.readouterr().out
    assert "churn" in out and "transactions" in out
    assert main(["lineage", "--home", H, "--data", "build-2", "--json"]) == 0
    assert [r["version"] for r in json.loads(capsys.readouterr().out)] == [2, 3, 4, 5]
    assert main(["lineage", "--home", H, "--data", "f" * 12]) == 1
    assert "no registered model version was trained on" in capsys.readouterr().out
    assert main(["lineage", "--home", H, "--model", "churn"]) == 2                   # neither --version nor --data
    assert main(["diff", "--home", H, "--model", "churn", "3", "4"]) == 0
    assert "model_C                 1.0 → 10.0" in capsys.readouterr().out
    assert main(["diff", "--home", H, "--model", "churn", "1", "2", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["data"]["build"] == ["build-1", "build-2"] and d["params"] == []
    assert main(["lineage", "--home", H, "--model", "nope", "--version", "1"]) == 1
    assert "unknown model 'nope'" in capsys.readouterr().err
