import sqlalchemy as sa


def test_postgres_server_accepts_parameterised_sql(postgres_url):
    eng = sa.create_engine(postgres_url)
    with eng.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (k int, v text)")
        c.execute(sa.text("INSERT INTO t VALUES (:k, :v)"), [{"k": 1, "v": "a"}, {"k": 2, "v": "b"}])
        rows = c.execute(sa.text("SELECT v FROM t WHERE k > :k"), {"k": 1}).fetchall()
    assert rows == [("b",)]
