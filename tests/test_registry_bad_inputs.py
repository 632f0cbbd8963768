"""Bad input for the registry: unknown model/version/alias, empty history, corrupt/locked/mis-shaped audit store, a lock held
by another process, a missing tracking store and an unreachable tracking server. Each error must say what is wrong."""
import sqlite3
import subprocess
import sys
import time

import pytest

from test_registry_support import home, registry_template  # noqa: F401  (fixtures)

from churnops import registry
from churnops.cli import main
from churnops.config import Paths


def test_unknown_model_version_alias(home):
    with pytest.raises(registry.RegistryError, match=r"unknown model 'nope'; registered models: \['churn'\]"):
        registry.promote(home, "nope", 1)
    with pytest.raises(registry.RegistryError, match="unknown model 'nope'"):
        registry.rollback(home, "nope")
    with pytest.raises(registry.RegistryError, match="unknown model 'nope'"):
        registry.history(home, "nope")
    with pytest.raises(registry.RegistryError, match=r"has no version 99; versions: \[1, 2, 3, 4, 5, 6, 7\]"):
        registry.promote(home, "churn", 99)
    with pytest.raises(registry.RegistryError, match="has no alias 'challenger'; aliases: none"):
        registry.promote(home, "churn", "challenger")
    with pytest.raises(registry.RegistryError, match="has no alias 'staging'"):
        registry.set_alias(home, "churn", "challenger", "staging")
    registry.promote(home, "churn", 1)
    with pytest.raises(registry.RegistryError, match="version 1 is already the champion"):
        registry.promote(home, "churn", 1)
    assert registry.history(home, "churn").action.tolist() == ["promote"]     # refusals of bad input leave no rows


def test_rollback_with_empty_or_single_history(home, capsys):
    with pytest.raises(registry.RegistryError, match="nothing to roll back to for model 'churn': no version was ever promoted"):
        registry.rollback(home, "churn")
    registry.promote(home, "churn", 2)
    with pytest.raises(registry.RegistryError, match="the champion is version 2 and there is no earlier champion"):
        registry.rollback(home, "churn")
    assert main(["rollback", "--home", str(home), "--model", "churn"]) == 1
    assert "nothing to roll back to" in capsys.readouterr().err


def test_corrupt_audit_store(home, capsys):
    Paths(home).audit_db.write_bytes(b"\x00garbage, not SQLite" * 200)
    for fn in (lambda: registry.promote(home, "churn", 1), lambda: registry.history(home, "churn"),
               lambda: registry.record(home, "churn", "deploy", to_version=1)):
        with pytest.raises(registry.AuditStoreError, match=r"registry_audit.db is corrupt or unreadable \(file is not a database\)"):
            fn()
    assert main(["history", "--home", str(home), "--model", "churn"]) == 1
    assert "corrupt" in capsys.readouterr().err
    c = registry.registry_client(home)
    assert "champion" not in c.get_registered_model("churn").aliases        # nothing moved


def test_audit_store_with_unexpected_schema(home):
    with sqlite3.connect(Paths(home).audit_db) as conn:
        conn.execute("CREATE TABLE events(seq INTEGER PRIMARY KEY, what TEXT)")
    with pytest.raises(registry.AuditStoreError, match=r"table events has columns \['seq', 'what'\], expected"):
        registry.history(home, "churn")


def _hold(code: str, marker: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == marker
    return p


def test_locked_audit_store(home):
    registry.promote(home, "churn", 1)
    holder = _hold(f"import sqlite3, time; c = sqlite3.connect({str(Paths(home).audit_db)!r}, isolation_level=None); "
                   "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(60)", "locked")
    try:
        t0 = time.monotonic()
        with pytest.raises(registry.AuditStoreError, match=r"is locked by another process \(waited 0.5s\)"):
            registry.record(home, "churn", "deploy", to_version=1, timeout=0.5)
        with pytest.raises(registry.AuditStoreError, match="is locked by another process"):
            registry.promote(home, "churn", 2, timeout=0.5)
        assert time.monotonic() - t0 < 60                                      # it gave up rather than hanging
    finally:
        holder.kill(); holder.wait()
    c = registry.registry_client(home)
    assert int(c.get_model_version_by_alias("churn", "champion").version) == 1
    assert registry.promote(home, "churn", 2)["to_version"] == 2               # usable again once released


def test_registry_lock_held_by_another_process(home):
    holder = _hold(f"import time; from churnops.registry import registry_lock\n"
                   f"with registry_lock({str(home)!r}):\n    print('held', flush=True); time.sleep(60)", "held")
    try:
        with pytest.raises(registry.AuditStoreError, match=rf"held by another process \(pid {holder.pid}\) for more than 0.5s"):
            registry.promote(home, "churn", 1, timeout=0.5)
    finally:
        holder.kill(); holder.wait()
    assert registry.promote(home, "churn", 1)["to_version"] == 1               # the kernel released the dead holder's lock


def test_no_tracking_store(tmp_path):
    for fn in (registry.promote, registry.history):
        with pytest.raises(registry.RegistryError, match="no tracking store at .*mlflow.db: train and register a model first"):
            fn(tmp_path / "empty", "churn", *([1] if fn is registry.promote else []))
    assert not Paths(tmp_path / "empty").audit_db.exists()


def test_unreachable_tracking_server(home, tracking_env, free_port, capsys):
    registry.promote(home, "churn", 1)                                         # a trail written while the store was up
    tracking_env(f"http://127.0.0.1:{free_port}")
    t0 = time.monotonic()
    for fn in (lambda: registry.promote(home, "churn", 2), lambda: registry.rollback(home, "churn"),
               lambda: registry.set_alias(home, "churn", "challenger", 2)):
        with pytest.raises(registry.RegistryError, match=rf"tracking server http://127.0.0.1:{free_port} is unreachable"):
            fn()
    assert time.monotonic() - t0 < 30                                          # no minutes of client retries
    assert registry.history(home, "churn").action.tolist() == ["promote"]      # the trail is readable offline
    registry.record(home, "churn", "deploy", to_version=1)                     # and serving can still record
    assert main(["promote", "--home", str(home), "--model", "churn", "--version", "2"]) == 1
    assert "unreachable" in capsys.readouterr().err
