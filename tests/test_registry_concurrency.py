"""Concurrency and crash consistency of the registry, with real processes: parallel promotes serialise on the lock and
are all recorded in order; a promote killed between its steps is rolled forward by the next call; an alias moved behind the
registry's back is restored from the trail; an alias set before any trail is adopted."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from test_registry_support import home, registry_template  # noqa: F401  (fixtures)

from churnops import registry

PROMOTER = r"""
import os, sys, time
from pathlib import Path
import mlflow                                  # import the heavy parts before the start signal
from churnops import registry
home, version, sync = sys.argv[1], sys.argv[2], Path(sys.argv[3])
(sync / f"ready-{version}").touch()
while not (sync / "go").exists(): time.sleep(0.002)
ev = registry.promote(home, os.environ.get("CHURNOPS_TEST_MODEL", "churn"), version, actor=f"proc-{version}")
print(ev["seq"], ev["from_version"], ev["to_version"], ev["semver"])
"""


def run_parallel_promotes(home: Path, versions, tmp_path: Path, env=None) -> list[subprocess.CompletedProcess]:
    sync = tmp_path / "sync"
    sync.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", PROMOTER, str(home), str(v), str(sync)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env or os.environ.copy()) for v in versions]
    deadline = time.monotonic() + 120
    while len(list(sync.glob("ready-*"))) < len(versions):
        assert time.monotonic() < deadline, "promoter processes did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs if p.poll() is not None]
        time.sleep(0.01)
    (sync / "go").touch()                       # all start promoting at the same moment
    return [subprocess.CompletedProcess(p.args, p.wait(120), *p.communicate()) for p in procs]


def check_consistent_chain(h, versions, alias_version):
    promos = h[h.action == "promote"]
    assert sorted(promos.to_version.tolist()) == sorted(versions)           # every promote recorded
    assert (promos.status == "done").all()
    assert pd.isna(promos.from_version.iloc[0])
    assert promos.from_version.tolist()[1:] == promos.to_version.tolist()[:-1]  # serial: each from = previous to
    assert promos.to_version.iloc[-1] == alias_version                      # the last recorded one won
    assert promos.semver.is_unique


def test_parallel_promotes_are_serialised_and_all_recorded(home, tmp_path):
    results = run_parallel_promotes(home, [1, 2, 3], tmp_path)
    for r in results: assert r.returncode == 0, r.stderr[-2000:]
    seqs = sorted(int(r.stdout.split()[0]) for r in results)
    assert seqs == list(range(seqs[0], seqs[0] + 3))
    c = registry.registry_client(home)
    alias = int(c.get_model_version_by_alias("churn", "champion").version)
    h = registry.history(home, "churn")
    check_consistent_chain(h, [1, 2, 3], alias)
    assert registry.champion(home, "churn") == alias
    assert set(h.actor) == {"proc-1", "proc-2", "proc-3"}


@pytest.mark.parametrize("point,alias_before_recovery", [("after_intent", 1), ("after_alias", 2)])
def test_crash_between_steps_is_rolled_forward(home, point, alias_before_recovery):
    registry.promote(home, "churn", 1)
    code = f"from churnops import registry; registry.promote({str(home)!r}, 'churn', 2, actor='crasher')"
    r = subprocess.run([sys.executable, "-c", code], env={**os.environ, "CHURNOPS_REGISTRY_CRASH_AT": point},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 86, r.stderr[-2000:]
    with registry.audit_store(home) as conn:
        raw = registry._events(conn, "churn")
    assert [e["status"] for e in raw] == ["done", "pending"]          # the intent survived the crash
    c = registry.registry_client(home)
    assert int(c.get_model_version_by_alias("churn", "champion").version) == alias_before_recovery
    h = registry.history(home, "churn")                                # any registry call reconciles
    assert h.status.tolist() == ["done", "done"]
    assert h.note.iloc[-1].startswith("completed on recovery")
    assert int(c.get_model_version_by_alias("churn", "champion").version) == 2
    assert c.get_model_version("churn", "2").tags["churnops.semver"] == "1.0.1"
    assert registry.rollback(home, "churn")["to_version"] == 1         # and the trail keeps working


def test_alias_moved_outside_is_repaired_from_the_trail(home):
    registry.promote(home, "churn", 1)
    registry.promote(home, "churn", 2)
    c = registry.registry_client(home)
    c.set_registered_model_alias("churn", "champion", "4")             # someone used the MLflow UI
    assert registry.champion(home, "churn") == 2
    assert int(c.get_model_version_by_alias("churn", "champion").version) == 2
    last = registry.history(home, "churn").iloc[-1]
    assert (last.action, last.from_version, last.to_version) == ("repair", 4, 2)
    assert "alias was 4 but the trail says 2" in last.note
    c.delete_registered_model_alias("churn", "champion")               # deleted: put back too
    assert registry.champion(home, "churn") == 2
    assert registry.history(home, "churn").action.tolist() == ["promote", "promote", "repair", "repair"]


def test_existing_alias_is_adopted_so_rollback_can_return_to_it(home):
    c = registry.registry_client(home)
    c.set_registered_model_alias("churn", "champion", "3")             # set before churnops managed it
    ev = registry.promote(home, "churn", 4)
    assert (ev["from_version"], ev["semver"]) == (3, "1.1.0")          # 3 adopted as 1.0.0; tuning → MINOR
    h = registry.history(home, "churn")
    assert h[["action", "to_version", "semver"]].values.tolist() == [["adopt", 3, "1.0.0"], ["promote", 4, "1.1.0"]]
    assert registry.rollback(home, "churn")["to_version"] == 3
