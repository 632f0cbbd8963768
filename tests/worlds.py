"""A second churn world that shares no name with the simulator's: a music service's members, plays, payments and terminations.

Members have string ids ("M0001"), the warehouse is a SQLite file outside the home whose timestamps are ISO text (with a
`+09:00` offset, or naive Tokyo time for `joined_at`), and plays sit in a parquet lake partitioned `dt=YYYY-MM-DD` with epoch
milliseconds. Churn is planted: members whose plays fall off terminate far more often, a month or so after the fall starts.
`make_world` writes it and the declaration that describes it (no API source); tests use it to show churnops runs on data
that is not the simulator's.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

START = pd.Timestamp("2024-01-01", tz="UTC")
TOKYO = "+09:00"
TIERS = ["free", "premium", "family"]
PRICE = {"free": 0.0, "premium": 9.99, "family": 14.99}
ORPHAN = "M9999"                                     # plays by a member the members table does not know
PLAYS_SCHEMA = pa.schema([("member_id", pa.string()), ("played_at", pa.int64()), ("seconds_played", pa.float64())])


@dataclass
class World2:
    "What `make_world` wrote: the home (holding only the declaration), the sources outside it, and the truth in UTC."
    home: Path
    db_path: Path
    lake: Path
    declaration: dict
    truth: dict = field(default_factory=dict)        # table -> frame with UTC timestamps, as written
    orphan_plays: int = 0


def _iso(ts: pd.Series, offset: str = TOKYO) -> pd.Series:
    "UTC timestamps as ISO text in local time with its offset, e.g. 2024-01-05T10:00:00+09:00."
    hours = int(offset[:3])
    return (ts + pd.Timedelta(hours=hours)).dt.strftime("%Y-%m-%dT%H:%M:%S") + offset


def _members(rng, n: int, days: int) -> pd.DataFrame:
    "One row per member with the hidden behaviour: base play rate, whether and when plays fall off."
    joined = np.where(rng.random(n) < 0.6, -rng.integers(1, 200, n), rng.integers(0, days // 2, n))
    declines = rng.random(n) < 0.4
    return pd.DataFrame({
        "member_id": [f"M{i:04d}" for i in range(1, n + 1)], "join_day": joined,
        "joined_at": START + pd.to_timedelta(joined, unit="D") + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s"),
        "birth_year": np.where(rng.random(n) < 0.05, np.nan, rng.integers(1950, 2006, n)),
        "city": np.where(rng.random(n) < 0.05, None, rng.choice(["tokyo", "osaka", "nagoya", "sapporo"], n)),
        "tier": rng.choice(TIERS, n, p=[0.5, 0.35, 0.15]),
        "rate": rng.lognormal(0.3, 0.5, n), "declines": declines,
        "decline_day": np.where(declines, rng.integers(0, days, n), 10**6)})


def _simulate(rng, M: pd.DataFrame, days: int) -> tuple[np.ndarray, list, list]:
    "Day by day: plays (falling after a member's decline), monthly payments, and terminations (the planted signal)."
    n = len(M); end = np.full(n, 10**6)
    first = np.maximum(M.join_day.to_numpy(), 0); dday = M.decline_day.to_numpy()
    plays, pays = [], []
    for t in range(days):
        active = (t >= first) & (end == 10**6)
        fall = np.exp(-np.clip(t - dday, 0, None) / 15.0)
        k = rng.poisson(M.rate.to_numpy() * fall * active)
        who = np.repeat(np.arange(n), k)
        plays.append((t, who, rng.integers(0, 86_400_000, len(who)), np.round(rng.lognormal(5.0, 0.6, len(who)), 1)))
        bill = active & ((t - M.join_day.to_numpy()) % 30 == 0)
        for i in np.flatnonzero(bill):
            declined = rng.random() < (0.25 if t > dday[i] else 0.03)
            pays.append((M.member_id[i], t, int(rng.integers(0, 86_400)), 0.0 if declined else PRICE[M.tier[i]]))
        hazard = 0.0015 + 0.03 * (t > dday + 20)
        end[active & (rng.random(n) < hazard)] = t
    return end, plays, pays


def _write_sql(path: Path, members: pd.DataFrame, payments: pd.DataFrame, terms: pd.DataFrame) -> None:
    "The warehouse: ISO text timestamps (naive Tokyo time for joined_at, +09:00 offsets elsewhere)."
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists(): path.unlink()
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE members (member_id TEXT PRIMARY KEY, joined_at TEXT, birth_year INTEGER, city TEXT, tier TEXT);
        CREATE TABLE payments (payment_id INTEGER PRIMARY KEY, member_id TEXT, paid_at TEXT, amount_usd REAL);
        CREATE TABLE terminations (member_id TEXT, ended_at TEXT);""")
    local = (members.joined_at + pd.Timedelta(hours=9)).dt.strftime("%Y-%m-%d %H:%M:%S")
    con.executemany("INSERT INTO members VALUES (?, ?, ?, ?, ?)", zip(
        members.member_id, local, [None if pd.isna(b) else int(b) for b in members.birth_year], members.city, members.tier))
    con.executemany("INSERT INTO payments VALUES (?, ?, ?, ?)", zip(
        payments.payment_id.tolist(), payments.member_id, _iso(payments.paid_at), payments.amount_usd.tolist()))
    con.executemany("INSERT INTO terminations VALUES (?, ?)", zip(terms.member_id, _iso(terms.ended_at)))
    con.commit(); con.close()


def _write_lake(root: Path, plays: pd.DataFrame, days: int) -> None:
    "One `dt=YYYY-MM-DD` partition per UTC day (empty days too), played_at in epoch milliseconds."
    for d in range(days):
        day = (START + pd.Timedelta(days=d)).strftime("%Y-%m-%d")
        part = plays[plays.day == d]
        folder = root / "plays" / f"dt={day}"; folder.mkdir(parents=True, exist_ok=True)
        ms = (part.played_at - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(milliseconds=1)
        pq.write_table(pa.table({"member_id": part.member_id.tolist(), "played_at": ms.astype("int64").tolist(),
                                 "seconds_played": part.seconds_played.tolist()}, schema=PLAYS_SCHEMA), folder / "part-0.parquet")


def declaration(db_path: Path, lake: Path) -> dict:
    "The declaration of the second world: every name its own."
    window = "julianday({c}) >= julianday(:start_date) AND julianday({c}) < julianday(:end_date)"   # ISO text with offsets
    return {
        "entity": {"key": "member_id", "dtype": "string"},
        "sources": {"warehouse": {"kind": "sql", "url": f"sqlite:///{db_path}"},
                    "plays_lake": {"kind": "lake", "url": str(lake), "partition": "dt={date:%Y-%m-%d}"}},
        "tables": {
            "members": {"source": "warehouse", "query": "SELECT * FROM members", "key": ["member_id"], "timezone": "Asia/Tokyo",
                        "columns": {"member_id": "str", "joined_at": "timestamp", "birth_year": "int", "city": "str", "tier": "str"},
                        "rules": {"fill": {"city": "unknown", "birth_year": "median"}, "ranges": {"birth_year": [1900, 2025]},
                                  "allowed": {"tier": TIERS}}},
            "plays": {"source": "plays_lake", "path": "plays", "time": "played_at", "time_unit": "ms",
                      "columns": {"member_id": "str", "played_at": "timestamp", "seconds_played": "float"},
                      "rules": {"fill": {"seconds_played": "median"}, "cap": ["seconds_played"], "ranges": {"seconds_played": [0, 86_400]}}},
            "payments": {"source": "warehouse", "query": "SELECT * FROM payments WHERE " + window.format(c="paid_at"),
                         "key": ["payment_id"], "time": "paid_at",
                         "columns": {"payment_id": "int", "member_id": "str", "paid_at": "timestamp", "amount_usd": "float"},
                         "rules": {"ranges": {"amount_usd": [0, 1000]}}},
            "terminations": {"source": "warehouse", "query": "SELECT * FROM terminations WHERE " + window.format(c="ended_at"),
                             "key": ["member_id"], "time": "ended_at",
                             "columns": {"member_id": "str", "ended_at": "timestamp"}, "rules": {"min_rows": 0}}},
        "population": {"table": "members", "since": "joined_at"},
        "label": {"table": "terminations", "horizon_days": 30},
        "features": [
            {"table": "plays", "aggregate": "count", "windows": ["7d", "30d"]},
            {"table": "plays", "column": "seconds_played", "aggregate": ["sum", "mean"], "windows": ["30d"]},
            {"table": "plays", "aggregate": "trend", "windows": ["30d"]},
            {"table": "plays", "aggregate": "days_since_last"},
            {"table": "payments", "aggregate": "count", "windows": ["90d"], "where": "amount_usd == 0", "name": "declined_payments_90d"},
            {"table": "members", "columns": ["tier", "city", "birth_year"]},
            {"name": "plays_per_day_30d", "expr": "plays_count_30d / 30"}],
    }


def make_world(root: str | Path,        # a folder: the home goes in root/home, the sources beside it (outside the home)
               members: int = 300,      # number of members
               days: int = 120,         # days of events from 2024-01-01
               seed: int = 0,
              ) -> World2:
    "Write the second world's warehouse and lake, and its declaration into a fresh home."
    root = Path(root); rng = np.random.default_rng(seed)
    M = _members(rng, members, days)
    end, plays, pays = _simulate(rng, M, days)
    P = pd.DataFrame({"day": np.concatenate([np.full(len(w), t) for t, w, _, _ in plays]),
                      "member_id": M.member_id.to_numpy()[np.concatenate([w for _, w, _, _ in plays])],
                      "played_at": START + pd.to_timedelta(np.concatenate([t * 86_400_000 + ms for t, _, ms, _ in plays]), unit="ms"),
                      "seconds_played": np.concatenate([s for _, _, _, s in plays])})
    orphans = pd.DataFrame({"day": [3, 4], "member_id": [ORPHAN] * 2, "seconds_played": [60.0, 90.0],
                            "played_at": [START + pd.Timedelta(days=3, hours=5), START + pd.Timedelta(days=4, hours=7)]})
    P = pd.concat([P, orphans], ignore_index=True)
    pay = pd.DataFrame(pays, columns=["member_id", "day", "second", "amount_usd"])
    pay["paid_at"] = START + pd.to_timedelta(pay.day * 86_400 + pay.second, unit="s")
    pay["payment_id"] = np.arange(1, len(pay) + 1)
    gone = end < days
    T = pd.DataFrame({"member_id": M.member_id[gone].to_numpy(),
                      "ended_at": START + pd.to_timedelta(end[gone] * 86_400 + rng.integers(0, 86_400, int(gone.sum())), unit="s")})
    db, lake, home = root / "warehouse" / "crm.db", root / "lake", root / "home"
    _write_sql(db, M, pay, T)
    _write_lake(lake, P, days)
    decl = declaration(db, lake)
    home.mkdir(parents=True, exist_ok=True)
    (home / "declaration.yaml").write_text(yaml.safe_dump(decl, sort_keys=False))
    truth = {"members": M, "plays": P, "payments": pay[["payment_id", "member_id", "paid_at", "amount_usd"]], "terminations": T}
    return World2(home, db, lake, decl, truth, len(orphans))
