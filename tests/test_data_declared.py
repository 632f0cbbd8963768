"""The data build on a world that is not the simulator's: every name, id type, time format and lake layout declared.

The world (tests/worlds.py) has string member ids, a SQLite warehouse outside the home with ISO-text timestamps at +09:00
(and naive Tokyo time), a `dt=`-partitioned parquet lake with epoch milliseconds, and no API.
"""
import sqlite3

import numpy as np
import pandas as pd
import pytest

from churnops import data
from churnops.config import Paths

from worlds import ORPHAN, make_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("w2"), members=200, days=60, seed=1)


@pytest.fixture(scope="module")
def built(world):
    return data.build(world.home, fit_until="2024-02-01")


def test_builds_every_declared_table(world, built):
    assert list(built.tables) == ["members", "plays", "payments", "terminations"]
    tabs = data.load_build(world.home)
    assert str(tabs["members"].member_id.dtype) == "str" and tabs["members"].member_id.iloc[0] == "M0001"
    assert len(tabs["members"]) == 200
    assert not (Paths(world.home).home / "sources").exists()            # the sources stayed where they are
    m = data.read_build(world.home)
    assert m["sources"]["warehouse"].endswith("crm.db") and m["sources"]["plays_lake"] == str(world.lake)


def test_timestamps_are_utc(world, built):
    tabs = data.load_build(world.home)
    for t, col in (("payments", "paid_at"), ("terminations", "ended_at"), ("plays", "played_at"), ("members", "joined_at")):
        assert str(tabs[t][col].dtype) == data.TS, t
    # ISO text at +09:00 in SQLite → the UTC instants the world was made of
    pay = tabs["payments"].merge(world.truth["payments"], on="payment_id", suffixes=("", "_true"))
    assert len(pay) == len(world.truth["payments"]) and (pay.paid_at == pay.paid_at_true).all()
    ends = tabs["terminations"].merge(world.truth["terminations"], on="member_id", suffixes=("", "_true"))
    assert len(ends) == len(world.truth["terminations"]) and (ends.ended_at == ends.ended_at_true).all()
    # naive Tokyo text (the table's timezone) and epoch milliseconds in the lake
    mem = tabs["members"].merge(world.truth["members"], on="member_id", suffixes=("", "_true"))
    assert (mem.joined_at == mem.joined_at_true.dt.floor("s")).all()
    plays = tabs["plays"].sort_values(["member_id", "played_at"]).reset_index(drop=True)
    truth = world.truth["plays"].query("member_id != @ORPHAN").sort_values(["member_id", "played_at"]).reset_index(drop=True)
    assert len(plays) == len(truth) and (plays.played_at == truth.played_at.dt.floor("ms")).all()


def test_fills_and_orphans(world, built):
    tabs = data.load_build(world.home)
    M = world.truth["members"]
    filled = tabs["members"].set_index("member_id").loc[M.member_id[M.city.isna()]]
    assert len(filled) > 0 and (filled.city == "unknown").all()
    rep = built.reports["members"]
    assert rep["filled"] == {"city": int(M.city.isna().sum()), "birth_year": int(M.birth_year.isna().sum())}
    median = M.loc[M.joined_at < pd.Timestamp("2024-02-01", tz="UTC"), "birth_year"].median()   # fitted on the training window
    by = tabs["members"].set_index("member_id").loc[M.member_id[M.birth_year.isna()], "birth_year"]
    assert (by == round(median)).all() and str(tabs["members"].birth_year.dtype) == "int64"
    assert built.reports["plays"]["dropped_orphans"] == world.orphan_plays and ORPHAN not in set(tabs["plays"].member_id)


def test_window_is_exact_in_utc(world, built):
    """The query filters ISO text through julianday; the build keeps [start, end) in UTC exactly, lake partitions pruned."""
    b = data.build(world.home, start_date="2024-01-10", end_date="2024-01-20")
    pay = data.load_table(world.home, "payments", b.tables["payments"])
    truth = world.truth["payments"]
    inside = truth[(truth.paid_at >= "2024-01-10") & (truth.paid_at < "2024-01-20")]
    assert sorted(pay.payment_id) == sorted(inside.payment_id)
    plays = data.load_table(world.home, "plays", b.tables["plays"])
    assert plays.played_at.min() >= pd.Timestamp("2024-01-10", tz="UTC") and plays.played_at.max() < pd.Timestamp("2024-01-20", tz="UTC")
    assert b.reports["plays"]["rows_in"] < built.reports["plays"]["rows_in"] / 3    # only the window's partitions (and a day each side)


def test_same_sources_same_versions(world, built):
    again = data.build(world.home, fit_until="2024-02-01")
    assert again.build_id == built.build_id and again.new_versions == []


def test_bad_value_is_refused_naming_table_column_rule(world, tmp_path):
    import shutil
    copy = tmp_path / "crm.db"
    shutil.copy(world.db_path, copy)
    con = sqlite3.connect(copy)
    con.execute("UPDATE payments SET amount_usd = -5 WHERE payment_id = 3")
    con.execute("UPDATE members SET tier = 'gold' WHERE member_id = 'M0002'")
    con.commit(); con.close()
    home = tmp_path / "home"; home.mkdir()
    shutil.copy(world.home / "declaration.yaml", home / "declaration.yaml")
    with pytest.raises(data.ValidationFailed) as e:
        data.build(home, db_url=f"sqlite:///{copy}")
    got = {(f["table"], f["column"], f["rule"]): f for f in e.value.report}
    assert set(got) == {("payments", "amount_usd", "range"), ("members", "tier", "allowed_values")}
    assert got["payments", "amount_usd", "range"]["expected"] == "[0, 1000]" and "min -5.0" in got["payments", "amount_usd", "range"]["observed"]
    assert "gold" in got["members", "tier", "allowed_values"]["observed"]
    assert not (home / "data").exists() or not any((home / "data").iterdir())     # nothing written


def test_orphans_as_an_error(world, tmp_path):
    import yaml
    home = tmp_path / "strict"; home.mkdir()
    decl = yaml.safe_load((world.home / "declaration.yaml").read_text())
    decl["tables"]["plays"]["rules"]["orphans"] = "error"
    (home / "declaration.yaml").write_text(yaml.safe_dump(decl))
    with pytest.raises(data.ValidationFailed, match=r"plays\.member_id: orphans: observed 2 row\(s\)"):
        data.build(home)


def test_requirements_checked_against_the_declared_world(world, tmp_path):
    import shutil
    home = tmp_path / "req"; home.mkdir()
    shutil.copy(world.home / "declaration.yaml", home / "declaration.yaml")
    (home / "churnops.yaml").write_text("data_requirements:\n  min_samples: 500\n  history_days: 400\n")
    with pytest.raises(data.RequirementsNotMet) as e:
        data.build(home, requirements="error")
    assert [s["requirement"] for s in e.value.shortfalls] == ["data_requirements.min_samples", "data_requirements.history_days"]
    assert "found 200 rows in members, required >= 500" in str(e.value)
    assert not (home / "data").exists()
    (home / "churnops.yaml").write_text("data_requirements:\n  min_samples: 100\n  history_days: 30\n")
    assert data.build(home, requirements="error").requirements == []


def test_planted_signal_is_there(world):
    """Members whose plays fell off terminate more: the signal the whole-loop test's model must find."""
    M, T = world.truth["members"], world.truth["terminations"]
    churned = M.member_id.isin(T.member_id)
    assert churned[M.declines].mean() > 2 * churned[~M.declines].mean()
