"""A declaration with one of every problem is refused when loaded, every problem listed in one error (key path, value found,
what was expected), and nothing of the home is touched."""
import pytest
import yaml

from churnops.declaration import DeclarationError, load_declaration

BAD = {
    "entity": {"key": "member_id", "dtype": "string", "kind": "person"},            # misspelt key (a model error)
    "sources": {"warehouse": {"kind": "sql", "url": "sqlite:///crm.db"},
                "lake": {"kind": "lake", "url": "/data/plays", "partition": "dt={date:%Y-%m-%d}"},
                "partner": {"kind": "ftp", "url": "ftp://x"}},                        # not a kind (a model error)
    "tables": {
        "members": {"source": "warehouse", "query": "SELECT * FROM members", "key": ["member_id"],
                    "columns": {"member_id": "str", "joined_at": "timestamp", "tier": "str", "city": "str"},
                    "rules": {"fill": {"country": "unknown"}, "ranges": {"tier": [0, 3]}}},   # unknown column; range on text
        "plays": {"source": "plays_lake", "time": "played_at",                                 # unknown source
                  "columns": {"member_id": "str", "played_at": "timestamp", "secs": "float", "genre": "str"}},
        "payments": {"source": "warehouse", "query": "SELECT * FROM payments WHERE paid_at >= :start_date",   # no :end_date
                     "key": ["payment_no"], "time": "paid",                                   # unknown key and time columns
                     "columns": {"payment_id": "int", "member_id": "str", "paid_at": "timestamp", "amount": "float"}},
        "terminations": {"source": "warehouse", "query": "SELECT * FROM terminations", "key": ["member_id"],   # no time column
                         "columns": {"member_id": "str", "ended_at": "timestamp"}}},
    "population": {"table": "members", "since": "signed_up"},                                  # unknown column
    "label": {"table": "terminations", "horizon_days": 30},
    "features": [
        {"table": "plays", "aggregate": "count", "windows": ["7d", "a month"]},               # not a duration
        {"table": "plays", "column": "genre", "aggregate": ["sum", "nunique"], "windows": ["30d"]},   # sum of text
        {"table": "listens", "aggregate": "count"},                                           # unknown table
        {"table": "plays", "column": "seconds", "aggregate": "mean"},                         # unknown column
        {"table": "members", "columns": ["tier", "country"]},                                 # unknown column
        {"table": "plays", "aggregate": "count", "windows": ["7d"]},                          # plays_count_7d again
        {"name": "tier", "expr": "plays_count_7d / 7"},                                       # tier again
        {"name": "per_day", "expr": "plays_count_90d / 90"},                                  # no such feature
    ],
}

EXPECTED = {
    "entity.kind", "sources.partner.kind",
    "tables.members.rules.fill.country", "tables.members.rules.ranges.tier",
    "tables.plays.source",
    "tables.payments.key.0", "tables.payments.time", "tables.payments.query",
    "tables.terminations.time",
    "population.since",
    "features.0.windows.1", "features.1.aggregate", "features.2.table", "features.3.column", "features.4.columns.1",
    "features.5", "features.6", "features.7.expr",
}


def test_every_problem_in_one_error(tmp_path):
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(BAD, sort_keys=False))
    (tmp_path / "churnops.yaml").write_text("declaration: mine.yaml\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(DeclarationError) as e:
        load_declaration(tmp_path)
    err = e.value
    keys = [p["key"] for p in err.problems]
    assert set(keys) == EXPECTED, (set(keys) ^ EXPECTED)
    assert len(keys) == len(EXPECTED)                          # each once
    msg = str(err)
    assert msg.startswith(f"{tmp_path / 'mine.yaml'}: {len(EXPECTED)} problem(s)")
    by = {p["key"]: p for p in err.problems}
    # each line says where, what was found and what was expected
    assert "features.0.windows.1: found 'a month'; expected a duration such as '30d'" in msg
    assert by["tables.plays.source"]["found"] == "plays_lake" and "['lake', 'warehouse']" in by["tables.plays.source"]["expected"]
    assert "numeric aggregate" in by["features.1.aggregate"]["expected"] and "genre is str" in by["features.1.aggregate"]["expected"]
    assert ":end_date" in by["tables.payments.query"]["expected"]
    assert by["tables.terminations.time"]["expected"].startswith("a time column")
    assert by["features.5"]["found"] == "plays_count_7d" and "features.0 makes it too" in by["features.5"]["expected"]
    assert by["features.6"]["found"] == "tier"
    assert "plays_count_90d" in by["features.7.expr"]["expected"]
    assert by["sources.partner.kind"]["found"] == "ftp"
    assert sorted(p.name for p in tmp_path.iterdir()) == before          # loading wrote nothing


def test_inline_declaration_and_missing_one(tmp_path):
    (tmp_path / "churnops.yaml").write_text(yaml.safe_dump({"declaration": {"sources": {}, "tables": {}}}))
    with pytest.raises(DeclarationError) as e:
        load_declaration(tmp_path)
    assert {p["key"] for p in e.value.problems} >= {"sources", "tables", "population", "label"}
    assert "churnops.yaml: declaration" in str(e.value)
    with pytest.raises(DeclarationError, match="declaration.yaml"):
        load_declaration(tmp_path / "empty")


def test_feature_vocabulary_problems_in_one_error(tmp_path):
    """time, delay, hidden, hour/weekday, where and expr functions: each misuse named, all at once."""
    d = {k: BAD[k] for k in ("sources", "population", "label")} | {"entity": {"key": "member_id", "dtype": "string"}}
    d["sources"] = {"lake": {"kind": "lake", "url": "/data"}}
    d["population"] = {"table": "members", "since": "joined_at"}
    d["tables"] = {
        "members": {"source": "lake", "key": ["member_id"], "columns": {"member_id": "str", "joined_at": "timestamp", "tier": "str"}},
        "plays": {"source": "lake", "time": "played_at", "columns": {"member_id": "str", "played_at": "timestamp", "secs": "float", "genre": "str"}},
        "terminations": {"source": "lake", "time": "ended_at", "key": ["member_id"], "columns": {"member_id": "str", "ended_at": "timestamp"}}}
    d["features"] = [
        {"table": "plays", "aggregate": "count", "time": "secs", "name": "a"},                 # time not a timestamp
        {"table": "plays", "aggregate": "count", "delay": "genre", "name": "b"},               # delay not a number
        {"table": "plays", "aggregate": "count", "delay": "wait", "name": "c"},                # delay not a column
        {"table": "members", "column": "joined_at", "aggregate": "days_since", "time": "joined_at", "name": "d"},   # no events
        {"table": "members", "column": "hour", "aggregate": "max", "name": "e"},               # hour of a profile table
        {"table": "members", "column": "joined_at", "aggregate": "days_since", "where": "tier == 'free'", "name": "f"},
        {"table": "plays", "aggregate": "count", "windows": ["30d"], "hidden": True},          # hidden, used by nothing
        {"name": "g", "expr": "log(a + b)"},                                                   # not an allowed function
        {"table": "plays", "column": "hour", "aggregate": "mean", "where": "weekday >= 5", "name": "fine"},   # all right
        {"name": "h", "expr": "where(a > b, max(a, c), min(b, 0))", "hidden": False},          # all right
    ]
    (tmp_path / "declaration.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
    with pytest.raises(DeclarationError) as e:
        load_declaration(tmp_path)
    by = {p["key"]: p for p in e.value.problems}
    assert sorted(by) == ["features.0.time", "features.1.delay", "features.2.delay", "features.3.time", "features.4.column",
                          "features.5.where", "features.6.hidden", "features.7.expr"], sorted(by)
    assert by["features.0.time"]["found"] == "secs (float)" and "timestamp" in by["features.0.time"]["expected"]
    assert by["features.1.delay"]["found"] == "genre (str)" and "int or float" in by["features.1.delay"]["expected"]
    assert "members has no time column" in by["features.3.time"]["expected"]
    assert "hour and weekday only on a table with a time column" in by["features.4.column"]["expected"]
    assert by["features.6.hidden"]["found"] == ["plays_count_30d"]
    assert "['log']" in by["features.7.expr"]["expected"]
    d["features"] = d["features"][8:] + [{"table": "plays", "aggregate": "count", "name": "a"}, {"table": "plays", "aggregate": "count", "name": "b"},
                                         {"table": "plays", "aggregate": "count", "delay": "secs", "delay_unit": "m", "name": "c", "hidden": True}]
    (tmp_path / "declaration.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
    decl = load_declaration(tmp_path)                                   # the same words, well used, load
    assert decl.features[4].delay == "secs" and decl.features[4].hidden
