"""Lake SQL is read-only: every writing or file-touching statement is refused with a QueryError
carrying the SQL, nothing changes, and no local file can be read — local disk and S3."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _sql_lake import populate

from lakecore.errors import QueryError
from lakecore.query import QueryEngine

FORBIDDEN = {
    "copy to": "COPY datums TO '{tmp}/out.csv'",
    "copy select to": "COPY (SELECT * FROM datums) TO '{tmp}/out.parquet' (FORMAT parquet)",
    "copy from": "COPY datums FROM '{tmp}/in.csv'",
    "copy database": "COPY FROM DATABASE memory TO lc_cache",
    "attach": "ATTACH '{tmp}/other.duckdb' AS other",
    "attach memory": "ATTACH ':memory:' AS other",
    "detach": "DETACH lc_cache",
    "install": "INSTALL httpfs",
    "load": "LOAD httpfs",
    "create table": "CREATE TABLE t AS SELECT * FROM datums",
    "create temp table": "CREATE TEMP TABLE t AS SELECT 1",
    "create view": "CREATE VIEW v AS SELECT 1",
    "create or replace view": "CREATE OR REPLACE VIEW datums AS SELECT 1 AS x",
    "create macro": "CREATE MACRO f(x) AS x",
    "create secret": "CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')",
    "create schema": "CREATE SCHEMA s",
    "create sequence": "CREATE SEQUENCE seq",
    "create type": "CREATE TYPE mood AS ENUM ('a', 'b')",
    "insert": "INSERT INTO datums SELECT * FROM datums",
    "insert cte": "WITH x AS (SELECT 1) INSERT INTO datums SELECT * FROM datums",
    "update": "UPDATE datums SET split = 'x'",
    "delete": "DELETE FROM datums",
    "merge": "MERGE INTO datums USING datums AS s ON (datums.datum_id = s.datum_id) "
    "WHEN MATCHED THEN DELETE",
    "drop": "DROP TABLE datums",
    "drop cache": "DROP TABLE lc_cache.t1",
    "drop macro": "DROP MACRO iou",
    "alter": "ALTER TABLE datums ADD COLUMN x INTEGER",
    "set": "SET enable_external_access = true",
    "set threads": "SET threads = 1",
    "reset": "RESET lock_configuration",
    "set variable": "SET VARIABLE x = 1",
    "use": "USE lc_cache",
    "pragma set": "PRAGMA threads = 1",
    "pragma profiling": "PRAGMA enable_profiling",
    "call": "CALL pragma_table_info('datums')",
    "checkpoint": "CHECKPOINT",
    "export": "EXPORT DATABASE '{tmp}/dump'",
    "import": "IMPORT DATABASE '{tmp}/dump'",
    "vacuum": "VACUUM",
    "analyze": "ANALYZE",
    "begin": "BEGIN TRANSACTION",
    "commit": "COMMIT",
    "prepare": "PREPARE q AS SELECT 1",
    "execute": "EXECUTE q",
    "explain analyze insert": "EXPLAIN ANALYZE INSERT INTO datums SELECT * FROM datums",
    "explain create": "EXPLAIN CREATE TABLE t AS SELECT 1",
    "two statements": "SELECT 1; DROP TABLE datums",
    "select then set": "SELECT 1; SET enable_external_access = true",
    "pivot statement": "PIVOT datums ON split USING count(*)",
}


@pytest.fixture(scope="module", params=["local", "s3"])
def shared(request, tmp_path_factory):
    """One small lake per backend for the whole module: nothing here may change it."""
    from conftest import Where

    if request.param == "local":
        where = Where("local", str(tmp_path_factory.mktemp("safety") / "lake"), None)
    else:
        server = request.getfixturevalue("s3_server")
        where = Where("s3", f"s3://{server.bucket()}/lake", server.options)
    lake = where.connect()
    populate(lake, n=4)
    eng = QueryEngine(lake, background=False)
    eng.sql("SELECT count(*) FROM datums")  # the cache holds a table now (lc_cache.t1)
    yield lake, eng
    eng.close()


@pytest.fixture
def lake(shared):
    return shared[0]


@pytest.fixture
def engine(shared):
    return shared[1]


def _state(lake):
    return lake.snapshot().pins, {n: lake.table(n).num_rows for n in lake.table_names}


@pytest.mark.parametrize("kind", sorted(FORBIDDEN))
def test_writing_statements_are_refused(lake, engine, kind, tmp_path):
    before = _state(lake)
    (tmp_path / "in.csv").write_text("datum_id\nx\n")
    query = FORBIDDEN[kind].format(tmp=tmp_path)
    with pytest.raises(QueryError) as err:
        engine.sql(query)
    assert err.value.details["sql"] == query
    assert "read-only" in str(err.value) or "one statement" in str(err.value)
    with pytest.raises(QueryError):
        engine.sql_reader(query)
    assert _state(lake) == before
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "out.parquet").exists()
    # the engine is intact: settings locked, external access off, macros and cache in place
    settings = engine.sql(
        "SELECT current_setting('enable_external_access') AS ext, "
        "current_setting('lock_configuration') AS locked, iou(0, 0, 1, 1, 0, 0, 1, 1) AS one"
    ).to_pylist()
    assert settings == [{"ext": False, "locked": True, "one": 1.0}]
    assert engine.sql("SELECT count(*) AS n FROM datums")["n"][0].as_py() == 4


@pytest.fixture
def files(tmp_path):
    csv = tmp_path / "secret.csv"
    csv.write_text("a,b\n1,2\n")
    parquet = tmp_path / "secret.parquet"
    pq.write_table(pa.table({"a": [1]}), parquet)
    (tmp_path / "secret.json").write_text('{"a": 1}')
    return tmp_path


READS = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv_auto('{tmp}/secret.csv')",
    "SELECT * FROM '{tmp}/secret.csv'",
    "SELECT * FROM '{tmp}/secret.parquet'",
    "SELECT * FROM read_parquet('{tmp}/secret.parquet')",
    "SELECT * FROM parquet_metadata('{tmp}/secret.parquet')",
    "SELECT * FROM read_json('{tmp}/secret.json')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/hostname')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "WITH x AS (SELECT * FROM read_csv('/etc/passwd')) SELECT count(*) FROM x",
    "SELECT (SELECT count(*) FROM read_text('/etc/passwd')) AS n",
    "DESCRIBE SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_parquet('s3://bucket/x.parquet')",
    "SELECT * FROM read_csv('https://example.com/x.csv')",
    "SELECT * FROM query_table('{tmp}/secret.csv')",
]


@pytest.mark.parametrize("query", READS)
def test_reading_files_is_refused(lake, engine, files, query):
    query = query.format(tmp=files)
    with pytest.raises(QueryError) as err:
        engine.sql(query)
    assert err.value.details["sql"] == query
    assert "root:" not in str(err.value)  # nothing of the file leaks into the message


def test_python_variables_are_not_scanned(engine):
    secret_frame = pa.table({"password": ["hunter2"]})  # noqa: F841 - what a replacement scan finds
    with pytest.raises(QueryError):
        engine.sql("SELECT * FROM secret_frame")


@pytest.mark.parametrize(
    "query",
    [
        "SELECT count(*) FROM datums",
        "WITH d AS (SELECT * FROM datums) SELECT count(*) FROM d",
        "FROM datums SELECT datum_id",
        "VALUES (1, 'a'), (2, 'b')",
        "DESCRIBE datums",
        "DESCRIBE SELECT * FROM boxes",
        "SHOW datums",
        "SHOW TABLES",
        "SHOW ALL TABLES",
        "SUMMARIZE datums",
        "EXPLAIN SELECT * FROM boxes WHERE label = 'cat'",
        "EXPLAIN ANALYZE SELECT count(*) FROM boxes",
        "PRAGMA table_info('annotation_records')",
        "PRAGMA show_tables",
        "SELECT * FROM (PIVOT datums ON split IN ('train', 'val') USING count(*))",
        "SELECT * FROM information_schema.columns WHERE table_name = 'datums'",
        "SELECT 1;",
    ],
)
def test_reading_statements_are_allowed(engine, query):
    assert engine.sql(query).num_rows >= 1


def test_show_tables_lists_every_view(lake, engine):
    names = set(engine.sql("SHOW TABLES")["name"].to_pylist())
    assert set(lake.table_names) | {"boxes", "annotations", "datum_assets"} <= names


@pytest.mark.parametrize("query", ["", "   ", "-- only a comment", "SELEC 1", "SELECT (1"])
def test_bad_or_empty_sql_is_a_query_error(engine, query):
    with pytest.raises(QueryError) as err:
        engine.sql(query)
    assert err.value.details["sql"] == query


def test_params_cannot_smuggle_statements(lake, engine):
    before = _state(lake)
    evil = "x'; DROP TABLE datums; --"
    assert (
        engine.sql("SELECT count(*) AS n FROM datums WHERE datum_id = ?", [evil])["n"][0].as_py()
        == 0
    )
    with pytest.raises(QueryError):
        engine.sql("SELECT $1", "not a list")
    assert _state(lake) == before
