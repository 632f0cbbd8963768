"""The prediction log keeps every answered record through SIGKILL of a real `churnops serve` process, recovers what a dead
writer left exactly once, compacts its parts by hour, and reads a window from that window's files only."""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pandas as pd
import pytest

from churnops.config import Paths
from churnops.predlog import LOG_COLUMNS, PredictionLog, files_for_window, read_prediction_log, recover_dead_writers

from conftest import free_port_number
from test_serve_helpers import copy_home, record, running_server, template_home

UTC = timezone.utc
T0 = datetime(2024, 3, 1, tzinfo=UTC)


def row(i, ts, as_of=None, status=200):
    r = (ts, f"r{i}", i, 1, "champion", 1.0, status, 0.5, True, "{}")
    return r if as_of is None else (*r, as_of)


def parquet_files(directory):
    return sorted(p for p in Path(directory).rglob("*.parquet"))


# ---- through a real service -----------------------------------------------------------------------------------------

def answer(url, n, threads=4):
    "Post n single-record requests from `threads` clients; the request ids of the 200 answers."
    def one(k):
        with httpx.Client(timeout=20) as c:
            out = []
            for i in range(k, n, threads):
                r = c.post(url + "/predict", json=record(i, customer_id=10_000 + i))
                assert r.status_code == 200, r.text
                out.append(r.json()["request_id"])
            return out
    with ThreadPoolExecutor(threads) as ex:
        return [rid for part in ex.map(one, range(threads)) for rid in part]


@pytest.fixture
def home(tmp_path):
    return copy_home(template_home()[0], tmp_path / "home")


@pytest.mark.server
@pytest.mark.parametrize("n,recovered_by", [(150, "reader"), (400, "restart")])
def test_sigkill_right_after_answers_loses_none(home, n, recovered_by):
    with running_server(home, free_port_number()) as srv:
        answered = answer(srv.url, n)
        srv.proc.send_signal(signal.SIGKILL); srv.proc.wait(10)
    assert len(answered) == n
    if recovered_by == "restart":                          # the next service's writer recovers the dead one's segments
        with running_server(home, free_port_number()):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                logged = read_prediction_log(home, recover=False).request_id
                if len(logged) >= n: break
                time.sleep(0.2)
    else:                                                  # a reader recovers them
        logged = read_prediction_log(home).request_id
    assert sorted(logged) == sorted(answered)              # exactly the answered ids, each once
    assert list((Paths(home).predictions / "wal").glob("*.jsonl")) == []   # no dead writer's segment left
    again = read_prediction_log(home)
    assert sorted(again.request_id) == sorted(answered) and (again.status == 200).all()


@pytest.mark.server
def test_sigkill_under_load_keeps_every_answer(home):
    stop = threading.Event()
    answered, lock = [], threading.Lock()

    def client(k, url):
        with httpx.Client(timeout=20) as c:
            i = k
            while not stop.is_set():
                try: r = c.post(url + "/predict", json=record(i, customer_id=i))
                except httpx.HTTPError: return                   # the service died under this request
                if r.status_code == 200:
                    with lock: answered.append(r.json()["request_id"])
                i += 4

    with running_server(home, free_port_number()) as srv:
        ts = [threading.Thread(target=client, args=(k, srv.url)) for k in range(4)]
        for t in ts: t.start()
        deadline = time.monotonic() + 60
        while len(answered) < 300 and time.monotonic() < deadline: time.sleep(0.01)
        srv.proc.send_signal(signal.SIGKILL); srv.proc.wait(10)
        stop.set()
        for t in ts: t.join(30)
    logged = read_prediction_log(home).request_id
    assert len(answered) >= 300
    assert logged.is_unique
    assert set(answered) <= set(logged)
    assert len(set(logged) - set(answered)) <= 4           # at most the requests in flight when it died


# ---- compaction -----------------------------------------------------------------------------------------------------

def test_an_open_hour_stays_a_few_files_and_a_closed_one_becomes_one(tmp_path):
    d = tmp_path / "log"
    now = datetime.now(UTC)
    plog = PredictionLog(d, flush_seconds=3600, fanin=4, grace_seconds=3600)   # nothing closes while we look
    ts = now.replace(minute=0, second=0, microsecond=0) + (now - now.replace(minute=0, second=0, microsecond=0)) / 2
    for k in range(40):
        for j in range(5): plog.append(row(k * 5 + j, ts))
        plog.flush()
        assert len(parquet_files(d)) <= 3 * 3 + 1          # (fanin - 1) per tier, three tiers for 40 parts
    plog.close()
    files = parquet_files(d)
    assert len(files) == 1                                  # closed: one file for the hour for this writer
    got = pd.read_parquet(files[0])
    assert sorted(got.request_id) == sorted(f"r{i}" for i in range(200))


def test_a_past_hour_is_compacted_while_the_writer_runs(tmp_path):
    d = tmp_path / "log"
    plog = PredictionLog(d, flush_seconds=3600, grace_seconds=0)
    past = datetime.now(UTC) - timedelta(hours=3)
    for k in range(3):
        plog.append(row(k, past)); plog.flush()
    assert len(parquet_files(d)) == 1
    plog.close()


def test_a_kill_between_merge_and_cleanup_reads_each_row_once(tmp_path):
    "Both the merged file and the parts it absorbed on disk (the compactor died before removing them): no duplicates."
    home = tmp_path / "home"; d = Paths(home).predictions
    plog = PredictionLog(d, flush_seconds=3600, grace_seconds=1e10)    # 2024's hours stay open while we look
    for k in range(3):
        plog.append(row(k, T0 + timedelta(minutes=k))); plog.flush()
    saved = tmp_path / "saved"; saved.mkdir()
    parts = parquet_files(d)
    assert len(parts) == 3
    for p in parts: shutil.copy2(p, saved / p.name)
    plog.close()                                            # merges the three into one
    for p in parts: shutil.copy2(saved / p.name, p)         # ...and they come back, as after a kill before the unlink
    assert len(parquet_files(d)) == 4
    merged = [f for f in parquet_files(d) if ".00000001-00000003." in f.name]
    assert len(merged) == 1 and files_for_window(home) == merged
    got = read_prediction_log(home)
    assert got.request_id.tolist() == ["r0", "r1", "r2"]


def test_recovery_run_twice_counts_each_row_once(tmp_path):
    "A recovery that dies after writing parts and before removing the segment is run again: same rows, once."
    home = tmp_path / "home"; d = Paths(home).predictions
    code = f"""
import os, signal, datetime as dt
from churnops.predlog import PredictionLog
log = PredictionLog({str(d)!r}, flush_seconds=3600)
t = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
for i in range(30): log.append((t + dt.timedelta(minutes=i * 5), f"k{{i}}", i, 1, "champion", 1.0, 200, 0.5, True, "{{}}"))
log.flush()
for i in range(30, 60): log.append((t + dt.timedelta(minutes=i * 5), f"k{{i}}", i, 1, "champion", 1.0, 200, 0.5, True, "{{}}"))
os.kill(os.getpid(), signal.SIGKILL)
"""
    subprocess.run([sys.executable, "-c", code], env=dict(os.environ), check=False)
    wal = d / "wal"
    kept = tmp_path / "kept"; shutil.copytree(wal, kept)
    assert recover_dead_writers(d) == 30
    assert recover_dead_writers(d) == 0                    # nothing left to recover
    for p in kept.iterdir(): shutil.copy2(p, wal / p.name)  # as if the first recovery died before its cleanup
    assert recover_dead_writers(d) == 30
    got = read_prediction_log(home)
    assert sorted(got.request_id) == sorted(f"k{i}" for i in range(60))
    hours = {f.name[:18] for f in parquet_files(d)}
    assert len(parquet_files(d)) == len(hours)             # a dead writer's hours end as one file each


def test_reads_while_a_writer_rotates_and_compacts_see_each_row_once(tmp_path):
    home = tmp_path / "home"; d = Paths(home).predictions
    plog = PredictionLog(d, flush_seconds=0.005, fanin=2, grace_seconds=3600)
    done = threading.Event(); count = [0]

    def write():
        now = datetime.now(UTC)
        while not done.is_set() and count[0] < 30_000:
            plog.append(row(count[0], now)); count[0] += 1
            if count[0] % 50 == 0: time.sleep(0.002)

    t = threading.Thread(target=write); t.start()
    try:
        for _ in range(15):
            before = count[0]
            got = read_prediction_log(home).request_id
            assert got.is_unique
            assert len(got) >= before                       # every row appended before the read began
    finally:
        done.set(); t.join()
    plog.close()
    got = read_prediction_log(home).request_id
    assert sorted(got, key=lambda s: int(s[1:])) == [f"r{i}" for i in range(count[0])]


# ---- windows and event time -----------------------------------------------------------------------------------------

@pytest.fixture
def three_hours(tmp_path):
    home = tmp_path / "home"
    plog = PredictionLog(Paths(home).predictions, flush_seconds=3600)
    for h in range(3):
        for i in range(10):
            plog.append(row(h * 10 + i, T0 + timedelta(hours=h, minutes=5 * i), as_of=datetime(2023, 6, 1 + h, tzinfo=UTC)))
        plog.flush()
    plog.close()
    return home


def test_a_window_read_plans_only_its_hours_files(three_hours):
    home = three_hours
    assert len(files_for_window(home)) == 3
    one = files_for_window(home, T0 + timedelta(hours=1), T0 + timedelta(hours=2))
    assert [f.name[:18] for f in one] == ["part-2024-03-01T01"]
    part = files_for_window(home, T0 + timedelta(hours=1, minutes=30), T0 + timedelta(hours=2, minutes=10))
    assert [f.name[:18] for f in part] == ["part-2024-03-01T01", "part-2024-03-01T02"]
    got = read_prediction_log(home, T0 + timedelta(hours=1, minutes=30), T0 + timedelta(hours=2, minutes=10))
    assert got.request_id.tolist() == [f"r{i}" for i in (16, 17, 18, 19, 20, 21)]
    assert files_for_window(home, "2030-01-01", "2030-01-02") == []


def test_windows_by_event_time(three_hours):
    home = three_hours
    f = files_for_window(home, "2023-06-02", "2023-06-03", time_column="as_of")
    assert [x.name[:18] for x in f] == ["part-2024-03-01T01"]
    got = read_prediction_log(home, "2023-06-02", "2023-06-03", time_column="as_of")
    assert got.request_id.tolist() == [f"r{i}" for i in range(10, 20)]
    assert read_prediction_log(home, "2023-06-02", "2023-06-03").empty   # by wall time that window is empty
    with pytest.raises(ValueError, match="time_column"):
        read_prediction_log(home, time_column="event")


def test_pending_rows_are_read_and_windowed(tmp_path):
    home = tmp_path / "home"
    plog = PredictionLog(Paths(home).predictions, flush_seconds=3600)
    plog.append(row(1, T0)); plog.append(row(2, T0 + timedelta(hours=5)))
    files = files_for_window(home, T0, T0 + timedelta(hours=1))
    assert [f.suffix for f in files] == [".jsonl"]          # nothing in parquet yet: the live segment
    assert read_prediction_log(home, T0, T0 + timedelta(hours=1)).request_id.tolist() == ["r1"]
    plog.close()
    assert read_prediction_log(home).request_id.tolist() == ["r1", "r2"]


def test_old_logs_without_as_of_still_read(tmp_path):
    home = tmp_path / "home"; d = Paths(home).predictions; d.mkdir(parents=True)
    old = pd.DataFrame({c: [v] for c, v in zip(LOG_COLUMNS[:-1], row(9, T0))})
    old["ts"] = pd.to_datetime(old["ts"], utc=True); old["customer_id"] = old["customer_id"].astype(str)
    old.to_parquet(d / "part-1709251200000000000-42-000001.parquet")
    plog = PredictionLog(d, flush_seconds=3600); plog.append(row(10, T0 + timedelta(hours=1), as_of="2023-01-01")); plog.close()
    got = read_prediction_log(home)
    assert list(got.columns) == LOG_COLUMNS
    assert got.request_id.tolist() == ["r9", "r10"]
    assert got.as_of.iloc[0] == got.ts.iloc[0]
    assert read_prediction_log(home, "2023-01-01", "2023-01-02", time_column="as_of").request_id.tolist() == ["r10"]


def test_bad_rows_are_refused_before_anything_is_written(tmp_path):
    plog = PredictionLog(tmp_path / "log", flush_seconds=3600)
    with pytest.raises(ValueError, match="found 3"):
        plog.append((T0, "x", 1))
    assert plog.pending == 0
    plog.close()


def test_fsync_option(tmp_path, monkeypatch):
    monkeypatch.setenv("CHURNOPS_PREDLOG_FSYNC", "true")
    plog = PredictionLog(tmp_path / "log", flush_seconds=3600)
    assert plog.fsync is True
    plog.append(row(1, T0)); plog.close()
    assert read_prediction_log(tmp_path / "log").request_id.tolist() == [] and len(parquet_files(tmp_path / "log")) == 1
    other = PredictionLog(tmp_path / "log2", fsync=False)
    assert other.fsync is False
    other.close()
