"""Bad input to the data pipeline: each case gives a clear error and leaves no data version, build record or temp folder.

Every case runs against real sources: a SQLite file, parquet files on disk, and the API served by uvicorn on 127.0.0.1.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from churnops import data
from churnops.config import ConfigError, Paths, load_config
from churnops.simulate import ApiServer, simulate_world

FAST_API = {"retries": 2, "backoff": 0.01, "timeout": 0.5}


@pytest.fixture(scope="module")
def world_template(tmp_path_factory):
    home = tmp_path_factory.mktemp("world")
    simulate_world(home, customers=80, days=20, seed=7)
    return home


@pytest.fixture
def home(world_template, tmp_path):
    """A fresh copy of the tiny world (sources and declaration), with world.json pointing at the copy."""
    h = tmp_path / "home"
    shutil.copytree(world_template / "sources", h / "sources")
    shutil.copy(world_template / "declaration.yaml", h / "declaration.yaml")     # its paths are relative to the home
    w = json.loads((h / "sources/world.json").read_text())
    w["db_url"] = f"sqlite:///{h / 'sources/world.db'}"
    w["lake_url"] = str(h / "sources/lake")
    (h / "sources/world.json").write_text(json.dumps(w))
    return h


def sql(home, statement):
    eng = sa.create_engine(f"sqlite:///{Paths(home).source_db}")
    with eng.begin() as c:
        c.exec_driver_sql(statement)
    eng.dispose()


def assert_nothing_written(home):
    d = Paths(home).data
    leftovers = [str(p.relative_to(d)) for p in d.rglob("*")] if d.exists() else []
    assert not [p for p in leftovers if not Path(p).name.startswith(".") or ".tmp-" in p], leftovers
    assert not (d / "latest.json").exists()


def build_fails(home, exc, match, **kw):
    with pytest.raises(exc, match=match) as info:
        data.build(home, **kw)
    assert_nothing_written(home)
    return info.value


def rules(err):
    return {(f["table"], f["column"], f["rule"]) for f in err.report}


def test_clean_world_builds(home):
    b = data.build(home)
    assert list(b.tables) == ["customers", "subscriptions", "transactions", "support_tickets", "cancellations", "sessions", "external"]


def test_missing_database(home):
    os.remove(Paths(home).source_db)
    build_fails(home, data.SourceError, r"database file .*world\.db not found")
    assert not Paths(home).source_db.exists()          # read-only open: SQLite did not create an empty file


def test_unreadable_database(home):
    Paths(home).source_db.write_bytes(b"this is not a sqlite database" * 100)
    build_fails(home, data.SourceError, r"table 'customers': query failed: DatabaseError: file is not a database")


def test_missing_table(home):
    sql(home, "DROP TABLE support_tickets")
    build_fails(home, data.SourceError, r"table 'support_tickets': query failed: OperationalError: no such table: support_tickets "
                                        r"\(tables in the database: \[")


def test_missing_column(home):
    sql(home, "ALTER TABLE customers DROP COLUMN region")
    build_fails(home, data.SourceError, r"table 'customers' lacks column\(s\) \['region'\]")


def test_empty_result(home):
    sql(home, "DELETE FROM transactions")
    err = build_fails(home, data.ValidationFailed, "row_count")
    assert ("transactions", "*", "row_count") in rules(err)


def test_empty_window(home):
    # the SQL extract of a window past the data is empty (with its columns); the build stops at the lake's missing partitions
    empty = data.extract_sql(f"sqlite:///{Paths(home).source_db}", "SELECT transaction_id, amount FROM transactions WHERE event_timestamp >= :start_date",
                             start_date="2030-01-01")
    assert empty.empty and list(empty.columns) == ["transaction_id", "amount"]
    build_fails(home, data.SourceError, r"partition\(s\) missing", start_date="2030-01-01", end_date="2030-01-03")


def test_api_down(home):
    from churnops.simulate import free_port
    url = f"http://127.0.0.1:{free_port()}"              # nothing listens there
    err = build_fails(home, data.SourceError, r"failed after 3 attempt\(s\): ConnectError", api_url=url, api_options=FAST_API)
    assert "/v1/external page 1" in str(err)


def test_api_500_after_retries(home):
    with ApiServer(home, fail_first=100) as url:
        build_fails(home, data.SourceError, r"page 1: failed after 3 attempt\(s\): HTTP 500", api_url=url, api_options=FAST_API)


def test_api_transient_500_is_retried(home):
    with ApiServer(home, fail_first=2) as url:           # two failures, then success: within 2 retries
        b = data.build(home, api_url=url, api_options=FAST_API | {"page_size": 30})
    assert len(data.load_table(home, "external", b.tables["external"])) == 80


def test_api_seeded_fail_rate_is_retried(home):
    with ApiServer(home, fail_rate=0.3, seed=1) as url:
        b = data.build(home, api_url=url, api_options={"retries": 5, "backoff": 0.01, "page_size": 10})
    assert len(data.load_table(home, "external", b.tables["external"])) == 80


def test_api_timeout_after_retries(home):
    with ApiServer(home, fail_first=100, fault="slow") as url:
        build_fails(home, data.SourceError, r"failed after 2 attempt\(s\): timed out",
                    api_url=url, api_options={"retries": 1, "backoff": 0.01, "timeout": 0.2})


def test_api_malformed_json(home):
    with ApiServer(home, fail_first=100, fault="malformed") as url:
        build_fails(home, data.SourceError, r"malformed JSON", api_url=url, api_options=FAST_API)


def test_missing_lake_partition(home):
    shutil.rmtree(Paths(home).lake / "events/date=2024-01-05")
    build_fails(home, data.SourceError, r"1 partition\(s\) missing .*date=2024-01-05")


def test_missing_last_lake_partition(home):
    shutil.rmtree(Paths(home).lake / "events/date=2024-01-20")  # a window to the world's end expects the last one too
    build_fails(home, data.SourceError, r"date=2024-01-20", end_date="2024-01-21")


def test_corrupt_parquet(home):
    part = Paths(home).lake / "events/date=2024-01-03/part-0.parquet"
    part.write_bytes(b"PAR1 garbage garbage")
    build_fails(home, data.SourceError, r"cannot read .*date=2024-01-03/part-0\.parquet")


def test_wrong_dtypes(home):
    sql(home, "UPDATE customers SET age = 'old' WHERE customer_id <= 3")
    sql(home, "UPDATE transactions SET event_timestamp = '2024-01-05 not a time' WHERE transaction_id = 1")
    err = build_fails(home, data.ValidationFailed, "dtype")
    assert {("customers", "age", "dtype"), ("transactions", "event_timestamp", "dtype")} <= rules(err)
    age = next(f for f in err.report if f["column"] == "age" and f["rule"] == "dtype")
    assert "3 value(s) not convertible" in age["observed"] and "'old'" in age["observed"] and age["expected"] == "int64"


def test_all_null_column(home):
    sql(home, "UPDATE support_tickets SET category = NULL")
    err = build_fails(home, data.ValidationFailed, "null_ratio")
    f = next(f for f in err.report if (f["table"], f["column"], f["rule"]) == ("support_tickets", "category", "null_ratio"))
    assert f["observed"] == 1.0 and f["expected"] == "< 0.1"


def test_null_ratio_threshold_from_argument(home):
    sql(home, "UPDATE customers SET gender = NULL WHERE customer_id <= 12")   # 15%
    build_fails(home, data.ValidationFailed, r"customers\.gender: null_ratio: observed 0\.15")
    b = data.build(home, max_null_ratio=0.2)                                  # a looser rule lets it through, filled
    assert (data.load_table(home, "customers", b.tables["customers"]).gender == "unknown").sum() >= 12


def test_out_of_range_values(home):
    sql(home, "UPDATE transactions SET amount = -5 WHERE transaction_id % 3 = 0")
    sql(home, "UPDATE customers SET age = 250 WHERE customer_id = 4")
    err = build_fails(home, data.ValidationFailed, "range")
    assert {("transactions", "amount", "range"), ("customers", "age", "range")} <= rules(err)


def test_duplicate_customer_ids(home):
    ext = pd.read_parquet(Paths(home).sources / "external.parquet")
    pd.concat([ext, ext.head(2)]).to_parquet(Paths(home).sources / "external.parquet", index=False)
    sql(home, "INSERT INTO cancellations SELECT * FROM cancellations LIMIT 1")
    err = build_fails(home, data.ValidationFailed, "unique")
    assert {("external", "customer_id", "unique"), ("cancellations", "customer_id", "unique")} <= rules(err)


def test_all_failures_reported_together(home):
    sql(home, "UPDATE support_tickets SET category = NULL")
    sql(home, "UPDATE customers SET age = 250 WHERE customer_id = 4")
    sql(home, "UPDATE subscriptions SET contract_type = 'lifetime' WHERE rowid = 1")
    err = build_fails(home, data.ValidationFailed, "3 validation rule")
    assert rules(err) == {("support_tickets", "category", "null_ratio"), ("customers", "age", "range"),
                          ("subscriptions", "contract_type", "allowed_values")}
    assert all(set(f) == {"table", "column", "rule", "observed", "expected"} for f in err.report)


def test_crash_mid_load_leaves_no_version(home):
    env = dict(os.environ, CHURNOPS_FAULT="load-after-part")
    code = "from churnops import data; import sys; data.build(sys.argv[1])"
    r = subprocess.run([sys.executable, "-c", code, str(home)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 70, r.stderr
    d = Paths(home).data
    assert [p.name for p in (d / "customers").iterdir()][0].startswith(".tmp-")   # the crash left only a hidden temp folder
    assert data.versions(home).empty and data.latest_build(home) is None
    with pytest.raises(data.DataError, match="no data build"):
        data.load_build(home)
    b = data.build(home)                                                          # a rerun completes normally
    assert len(data.load_build(home, b.build_id)) == 7


def test_config_with_unknown_key(home, tmp_path):
    bad = tmp_path / "churnops.yaml"
    bad.write_text("data_requirements:\n  max_nul_ratio: 0.2\n")
    with pytest.raises(ConfigError, match=r"data_requirements\.max_nul_ratio: unknown key"):
        load_config(bad)
    (Path(home) / "churnops.yaml").write_text("data_requirements:\n  max_null_ratio: lots\n")
    build_fails(home, ConfigError, r"data_requirements\.max_null_ratio")


def test_lake_partition_with_nulls_or_other_schema(home):
    """Partitions that are not uniform take the general Arrow path: nulls are counted and filled, extra columns reported."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    p = Paths(home).lake / "events/date=2024-01-02/part-0.parquet"
    t = pq.read_table(p)
    dur = pa.array([None] + t.column("session_duration_min").to_pylist()[1:], pa.float64())
    pq.write_table(t.set_column(2, "session_duration_min", dur).append_column("device", pa.array(["ios"] * t.num_rows)), p)
    daily = "date={date:%Y-%m-%d}"
    fast = data.extract_lake(str(Paths(home).lake / "events"), daily, "2024-01-04", "2024-01-05")   # uniform range: the fast path
    mixed = data.extract_lake(str(Paths(home).lake / "events"), daily, "2024-01-01", "2024-01-05")
    assert "device" in mixed and mixed.session_duration_min.isna().sum() == 1
    pd.testing.assert_frame_equal(mixed[mixed.event_timestamp >= "2024-01-03"].reset_index(drop=True)[fast.columns], fast)   # (both read the 3rd to the 5th)
    b = data.build(home)
    r = b.reports["sessions"]
    assert r["extra_columns"] == ["device"] and r["filled"] == {"session_duration_min": 1}
