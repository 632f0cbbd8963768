"""End to end: `churnops simulate` + `churnops data build` from the three real sources, content-hash identity, diffs,
incremental builds, and the lake read through fsspec (local and memory://)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import fsspec
import pandas as pd
import pytest
import sqlalchemy as sa

from churnops import data
from churnops.config import Paths
from churnops.declaration import load_declaration
from churnops.simulate import ApiServer, simulate_world

import conftest

DAILY = "date={date:%Y-%m-%d}"                   # the simulated lake's partitions


def churnops(*args, check=True):
    r = subprocess.run(["churnops", *args],
                       capture_output=True, text=True, timeout=300)
    if check: assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def cli_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("cli")
    churnops("simulate", "--home", str(home), "--customers", "150", "--days", "45", "--seed", "3", "--quiet")
    return home


def test_cli_simulate_and_build(cli_home):
    r = churnops("data", "build", "--home", str(cli_home), "--quiet")
    latest = json.loads((Paths(cli_home).data / "latest.json").read_text())
    assert f"build {latest['build_id']}" in r.stdout
    assert list(latest["tables"]) == list(load_declaration(cli_home).tables)
    # every version is a folder named by its hash, with parquet parts and a manifest
    for t, v in latest["tables"].items():
        d = Paths(cli_home).data / t / v
        m = json.loads((d / "manifest.json").read_text())
        assert m["hash"].startswith(v) and m["rows"] == sum(pd.read_parquet(d / p).shape[0] for p in m["parts"])
        assert {"schema", "stats", "sources", "params", "created", "rules", "transform_report"} <= set(m)
    m = json.loads((Paths(cli_home).data / "external" / latest["tables"]["external"] / "manifest.json").read_text())
    assert m["sources"]["api"].startswith("in-process API")          # the default build went through HTTP
    tabs = data.load_build(cli_home)
    assert len(tabs["customers"]) == 150 and len(tabs["external"]) == 150
    assert tabs["customers"].age.notna().all()                        # the world's missing ages were filled


def test_same_sources_same_hash_and_order_independence(cli_home, tmp_path):
    b1 = data.build(cli_home)
    b2 = data.build(cli_home)
    assert b1.build_id == b2.build_id and b1.hashes == b2.hashes and b2.new_versions == []
    # rewrite the customers table in reverse order: the logical content, hence the hash, is unchanged
    eng = sa.create_engine(f"sqlite:///{Paths(cli_home).source_db}")
    c = pd.read_sql("select * from customers", eng)
    with eng.begin() as conn:
        conn.exec_driver_sql("DELETE FROM customers")
    c.iloc[::-1].to_sql("customers", eng, if_exists="append", index=False)
    eng.dispose()
    assert data.build(cli_home).build_id == b1.build_id


def test_changed_source_new_hash_and_diff(cli_home):
    before = data.build(cli_home)
    eng = sa.create_engine(f"sqlite:///{Paths(cli_home).source_db}")
    with eng.begin() as conn:
        conn.exec_driver_sql("DELETE FROM support_tickets WHERE ticket_id % 10 = 0")
    eng.dispose()
    after = data.build(cli_home)
    assert after.build_id != before.build_id and after.new_versions == ["support_tickets"]
    r = churnops("data", "diff", before.build_id, after.build_id, "--home", str(cli_home))
    assert f"support_tickets: {before.tables['support_tickets']} → {after.tables['support_tickets']}" in r.stdout
    assert "customers: unchanged" in r.stdout
    d = next(x for x in data.diff(cli_home, before.build_id, after.build_id) if x["table"] == "support_tickets")
    assert d["rows"][1] < d["rows"][0]
    r = churnops("data", "versions", "--home", str(cli_home))
    assert r.stdout.count("support_tickets") >= 2
    with pytest.raises(data.DataError, match="not found"):
        data.load_table(cli_home, "customers", "ffffffffffff")


def test_build_against_external_api_server_process(cli_home):
    """`churnops sources serve-api` in its own process, with injected failures the client retries through."""
    port = conftest.free_port_number()
    proc = subprocess.Popen(["churnops", "sources", "serve-api", "--home", str(cli_home), "--port", str(port), "--fail-first", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        conftest.wait_for_port(port, timeout=60, proc=proc)
        r = churnops("data", "build", "--home", str(cli_home), "--api-url", f"http://127.0.0.1:{port}", "--quiet")
        assert "build " in r.stdout
        m = json.loads((Paths(cli_home).data / "latest.json").read_text())
        ext = data.load_table(cli_home, "external", m["tables"]["external"])
        assert len(ext) == 150
        r = churnops("data", "build", "--home", str(cli_home), "--api-url", f"http://127.0.0.1:{conftest.free_port_number()}",
                     "--api-retries", "1", "--quiet", check=False)
        assert r.returncode == 1 and "failed after 2 attempt(s)" in r.stderr
    finally:
        proc.terminate(); proc.wait(timeout=20)


def test_incremental_equals_full(tmp_path):
    home = tmp_path / "inc"
    simulate_world(home, customers=120, days=30, seed=5)
    # the full build and the incremental one fit their cleaning rules on the same window
    full = data.build(home, fit_until="2024-01-16")
    shutil.rmtree(Paths(home).data)
    first = data.build(home, end_date="2024-01-16")
    assert first.build_id != full.build_id
    inc = data.build(home, since="auto", end_date="2024-01-31")
    assert inc.reports["sessions"]["rows_kept_from_previous"] > 0
    assert inc.tables == full.tables                              # same content, same versions
    # only the new dates were extracted
    assert inc.reports["sessions"]["rows_in"] < inc.reports["sessions"]["rows_out"]
    with pytest.raises(data.DataError, match="needs a previous build"):
        data.build(tmp_path / "empty", since="auto")


def test_lake_through_memory_filesystem(tmp_path):
    home = tmp_path / "mem"
    w = simulate_world(home, customers=60, days=12, seed=2)
    local = data.extract_lake(w.lake_url + "/events", DAILY)
    fs = fsspec.filesystem("memory")
    fs.put(str(Path(w.lake_url) / "events"), "/lake-copy/events", recursive=True)
    mem = data.extract_lake("memory://lake-copy/events", DAILY)
    pd.testing.assert_frame_equal(local, mem)
    b_local = data.build(home)
    b_mem = data.build(home, lake_url="memory://lake-copy")
    assert b_mem.tables["sessions"] == b_local.tables["sessions"]
    fs.rm("/lake-copy/events/date=2024-01-04", recursive=True)
    with pytest.raises(data.SourceError, match="date=2024-01-04"):
        data.extract_lake("memory://lake-copy/events", DAILY, "2024-01-01", "2024-01-13")
    fs.rm("/lake-copy", recursive=True)


def test_simulate_writes_lake_to_memory(tmp_path):
    w = simulate_world(tmp_path / "m2", customers=40, days=5, seed=1, lake_url="memory://sim-lake")
    fs = fsspec.filesystem("memory")
    assert len(fs.glob("/sim-lake/events/date=*/part-0.parquet")) == 5
    assert len(data.extract_lake("memory://sim-lake/events", DAILY)) == w.counts["sessions"]
    fs.rm("/sim-lake", recursive=True)


from hypothesis import given, settings, strategies as st
import numpy as np


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=False, width=32), st.sampled_from(["a", "b", None])),
                min_size=1, max_size=30), st.randoms())
def test_content_hash_is_order_independent_and_content_sensitive(rows, rnd):
    df = pd.DataFrame(rows, columns=["i", "x", "s"]).astype({"i": "int64", "x": "float64", "s": "str"})
    perm = list(range(len(df))); rnd.shuffle(perm)
    assert data.content_hash(df) == data.content_hash(df.iloc[perm].reset_index(drop=True))
    changed = df.copy(); changed.loc[0, "i"] = changed.loc[0, "i"] + 100
    assert data.content_hash(changed) != data.content_hash(df)
    assert data.content_hash(df.iloc[1:]) != data.content_hash(df)          # a dropped row (the multiset counts duplicates)


def test_bucket_count_changes_no_hash_and_no_table(cli_home, tmp_path):
    "The same sources built with 1 and with 4 buckets: the same build id and hashes, the same tables read back."
    one = data.build(cli_home)
    home = tmp_path / "four"
    shutil.copytree(Paths(cli_home).sources, Paths(home).sources)
    shutil.copy(Paths(cli_home).home / "declaration.yaml", home / "declaration.yaml")
    (home / "churnops.yaml").write_text("compute: {bucket_entities: 40}\n")     # 150 customers: 4 buckets
    four = data.build(home)
    assert (four.build_id, four.hashes) == (one.build_id, one.hashes)
    assert data.read_build(home)["buckets"] == 4 and data.read_build(cli_home)["buckets"] == 1
    key = "customer_id"
    for t, v in four.tables.items():
        m = json.loads((Paths(home).data / t / v / "manifest.json").read_text())
        assert m["buckets"] == 4 and [ps[0].split("/")[0] for ps in m["bucket_parts"]] == [f"bucket={b:03d}" for b in range(4)]
        whole = data.load_table(home, t)
        pd.testing.assert_frame_equal(whole, data.load_table(cli_home, t))     # whole tables equal, rows in the same order
        parts = [data.load_table(home, t, buckets=[b]) for b in range(4)]
        assert sum(map(len, parts)) == len(whole)
        for b, p in enumerate(parts):                                           # a bucket holds whole entities
            assert set(data.bucket_of(p[key], 4)) <= {b}
        pd.testing.assert_frame_equal(parts[1], data.load_table(cli_home, t, buckets=[1], of=4))   # selected by hash: the same rows
