"""The SQL path on a real PostgreSQL server: the world written there and built from there gives the same data versions
as from SQLite; bad input on PostgreSQL gives the same clear errors."""
import pandas as pd
import pytest
import sqlalchemy as sa

from churnops import data
from churnops.simulate import simulate_world

pytestmark = pytest.mark.postgres


def test_postgres_world_builds_same_versions_as_sqlite(postgres_url, tmp_path):
    kw = dict(customers=120, days=25, seed=8)
    simulate_world(tmp_path / "lite", **kw)
    w = simulate_world(tmp_path / "pg", db_url=postgres_url, **kw)
    assert w.db_url == postgres_url
    eng = sa.create_engine(postgres_url)
    with eng.connect() as c:
        assert c.exec_driver_sql("select count(*) from customers").scalar() == 120
        cols = {r[0]: r[1] for r in c.exec_driver_sql(
            "select column_name, data_type from information_schema.columns where table_name = 'transactions'")}
    eng.dispose()
    assert cols["event_timestamp"].startswith("timestamp") and cols["amount"] == "double precision"
    lite = data.build(tmp_path / "lite")
    pg = data.build(tmp_path / "pg", db_url=postgres_url)          # the world.json hides passwords, so pass the URL
    assert pg.tables == lite.tables
    # bound parameters on PostgreSQL: the window is applied by the server
    late = data.extract_sql(postgres_url, "SELECT transaction_id, event_timestamp FROM transactions WHERE event_timestamp >= :start_date",
                            start_date="2024-01-20")
    assert len(late) and (pd.to_datetime(late.event_timestamp) >= "2024-01-20").all()
    assert len(late) < pg.reports["transactions"]["rows_in"]


def test_postgres_bad_input(postgres_url, tmp_path):
    simulate_world(tmp_path, customers=40, days=10, seed=1, db_url=postgres_url)
    eng = sa.create_engine(postgres_url)
    with eng.begin() as c:
        c.exec_driver_sql("DROP TABLE support_tickets")
        c.exec_driver_sql("ALTER TABLE subscriptions DROP COLUMN plan")
    eng.dispose()
    with pytest.raises(data.SourceError, match=r"table 'support_tickets': query failed: UndefinedTable: .*tables in the database"):
        data.extract_sql(postgres_url, "SELECT ticket_id FROM support_tickets", table="support_tickets")
    with pytest.raises(data.SourceError, match=r"table 'subscriptions' lacks column\(s\) \['plan'\]"):
        data.build(tmp_path, db_url=postgres_url)
    assert not (tmp_path / "data").exists()
    bad = postgres_url.rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(data.SourceError, match=r"table 'customers': connecting failed: OperationalError"):
        data.build(tmp_path, db_url=bad)
