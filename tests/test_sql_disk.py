"""The SQL cache's disk tier: table versions cached by one engine serve the next engines (and
processes) from local DuckDB files, never stale, within a byte budget, and a lake's SQL reads
no other lake's files."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time

import duckdb
import pyarrow as pa
import pytest

import lakecore
from lakecore.errors import QueryError
from lakecore.query import QueryEngine
from lakecore.query._disk import DiskTier
from lakecore.tables import Delete
from tests._sql_lake import populate

HISTOGRAM = "SELECT label, count(*) AS n FROM boxes GROUP BY label ORDER BY label"
JOIN = (
    "SELECT d.split, count(*) AS n FROM annotation_records r JOIN datums d USING (datum_id) "
    "GROUP BY d.split ORDER BY d.split"
)


@pytest.fixture
def small(lake):
    return populate(lake)


def _expected_histogram(lake: lakecore.Lake) -> list[dict[str, object]]:
    records = lake.table("annotation_records", filter="kind = 'bbox'")
    labels = records["label"].to_pylist()
    return [{"label": k, "n": labels.count(k)} for k in sorted(set(labels))]


def _sources(engine: QueryEngine) -> dict[str, str]:
    return {e["key"][1]: e["source"] for e in engine.cache.info()["entries"]}


def test_a_fresh_engine_reads_what_an_earlier_one_cached(lake, small):
    first = QueryEngine(lake, background=False)
    want = first.sql(JOIN)
    assert first.sql(HISTOGRAM).to_pylist() == _expected_histogram(lake)
    first.cache.wait()  # the disk copies are written in the background
    folder = first._disk.folder
    assert len(list(folder.glob("*.duckdb"))) == 2  # annotation_records, datums
    first.close()

    second = QueryEngine(lake, background=False)
    assert second.sql(JOIN).equals(want)
    assert second.sql(HISTOGRAM).to_pylist() == _expected_histogram(lake)
    assert _sources(second) == {"annotation_records": "disk", "datums": "disk"}
    plan = " ".join(second.sql(f"EXPLAIN {JOIN}")["explain_value"].to_pylist())
    assert "lc_disk_" in plan and "Arrow" not in plan  # not a Lance scan
    # look-ups by the sort key (records: datum_id) go through an ART index, copies included
    indexes = second.sql("SELECT database_name, sql FROM duckdb_indexes()").to_pylist()
    assert {i["database_name"].startswith("lc_disk_") for i in indexes} == {True}
    assert [i["sql"].split("(")[-1] for i in indexes] == ["datum_id);"] * 2
    second.close()


def test_a_new_table_version_is_never_read_from_an_old_copy(lake, small):
    first = QueryEngine(lake, background=False)
    first.sql(HISTOGRAM)
    first.cache.wait()
    first.close()
    aid = lake.assets.add_many([b"another"], kind="blob")["asset_id"][0].as_py()
    one = {"asset_id": [aid], "kind": ["bbox"], "label": ["dog"], "bbox": [[1.0, 2.0, 3.0, 4.0]]}
    lake.annotations.add(small.gt, pa.table(one))
    second = QueryEngine(lake, background=False)
    assert second.sql(HISTOGRAM).to_pylist() == _expected_histogram(lake)
    assert _sources(second) == {"annotation_records": "memory"}  # built: not on disk yet
    second.close()


def test_an_unreadable_copy_is_removed_and_the_table_scanned(lake, small, caplog):
    first = QueryEngine(lake, background=False)
    first.sql(HISTOGRAM)
    first.cache.wait()
    [path] = first._disk.folder.glob("*.duckdb")
    first.close()
    path.write_bytes(b"not a duckdb file" * 100)
    second = QueryEngine(lake, background=False)
    with caplog.at_level(logging.WARNING, logger="lakecore.query._cache"):
        assert second.sql(HISTOGRAM).to_pylist() == _expected_histogram(lake)
    assert "cannot read" in caplog.text
    second.cache.wait()
    assert _sources(second) == {"annotation_records": "memory"}
    assert path.exists() and path.stat().st_size > 1700  # rewritten from the rebuilt table
    second.close()


def test_disk_cache_off(lake, small, monkeypatch):
    monkeypatch.setenv("LAKECORE_SQL_DISK_CACHE", "off")
    engine = QueryEngine(lake, background=False)
    engine.sql(HISTOGRAM)
    engine.cache.wait()
    assert engine._disk is None
    assert _sources(engine) == {"annotation_records": "memory"}
    engine.close()
    assert QueryEngine(lake, disk_cache=False)._disk is None
    memory = lakecore.connect("memory://no-disk-tier")
    assert QueryEngine(memory)._disk is None


def test_the_budget_keeps_the_most_recently_used_files(tmp_path):
    tier = DiskTier(tmp_path, "lake-a", budget=1)
    con = duckdb.connect()
    sizes = {}
    for i in range(3):
        con.execute(f"CREATE TABLE t{i} AS SELECT range AS x FROM range({(i + 1) * 50_000})")
        path = tier.store(con, f"t{i}", ("table", f"t{i}", "f"))
        sizes[i] = path.stat().st_size
        assert tier.find(("table", f"t{i}", "f")) == path  # the newest is always kept
    assert [tier.find(("table", f"t{i}", "f")) is None for i in range(3)] == [True, True, False]
    tier.budget = sizes[2] + sizes[1] + 1
    path1 = tier.store(con, "t1", ("table", "t1", "f"))
    old = time.time() - 60
    os.utime(path1, (old, old))
    tier.find(("table", "t2", "f"))  # t2 used: t1 is now the least recently used
    tier.store(con, "t0", ("table", "t0", "f"))
    assert tier.find(("table", "t1", "f")) is None
    assert tier.find(("table", "t0", "f")) is not None
    assert tier.usage() <= tier.budget
    assert not list(tmp_path.rglob("*.part*"))  # no temporary files left behind
    attached = duckdb.connect()
    attached.execute(f"ATTACH '{tier.path(('table', 't0', 'f'))}' AS c (READ_ONLY)")
    assert attached.sql("SELECT count(*) FROM c.t").fetchall() == [(50_000,)]


def test_a_lake_reads_no_other_lakes_files(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKECORE_SQL_DISK_CACHE", str(tmp_path / "cache"))
    lakes = [lakecore.connect(tmp_path / name) for name in ("a", "b")]
    engines = [QueryEngine(lk, background=False) for lk in lakes]
    for lk, engine in zip(lakes, engines, strict=True):
        populate(lk, n=3)
        engine.sql("SELECT count(*) FROM datums")
        engine.cache.wait()
    own, other = (e._disk.folder for e in engines)
    assert own != other and own.parent == other.parent
    for folder in (other, other.parent):
        with pytest.raises(QueryError):
            engines[0].sql(f"SELECT * FROM read_blob('{folder}/*')")
    # its own folder holds only what its SQL can read anyway
    assert engines[0].sql(f"SELECT count(*) AS n FROM read_blob('{own}/*')")["n"][0].as_py() >= 1
    for engine in engines:
        engine.close()


def test_another_process_reads_the_copies(tmp_path):
    """A script caches and exits; an engine in this process then reads its copies."""
    root = tmp_path / "lake"
    populate(lakecore.connect(root), n=4)
    script = textwrap.dedent(
        f"""
        import lakecore
        lake = lakecore.connect({str(root)!r})
        assert lake.sql("SELECT count(*) AS n FROM datums")["n"][0].as_py() == 4
        lake.wait()
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    engine = QueryEngine(lakecore.connect(root), background=False)
    assert engine.sql("SELECT count(*) AS n FROM datums")["n"][0].as_py() == 4
    assert _sources(engine) == {"datums": "disk"}
    engine.close()


def test_an_append_takes_the_table_over_while_its_copy_is_written(lake, small, monkeypatch):
    """The copy is written from a snapshot: once taken, the next version's query extends the
    cached table in place (no rebuild), and the file still holds the version it is named by."""
    import threading

    from lakecore.query import _disk

    snapshot_taken, go_on = threading.Event(), threading.Event()
    store = _disk.DiskTier.store

    def slow_store(self, cursor, relation, key, pinned=None, **options):  # type: ignore[no-untyped-def]
        def hold() -> None:
            if pinned is not None:
                pinned()
            snapshot_taken.set()
            assert go_on.wait(60)

        return store(self, cursor, relation, key, hold, **options)

    monkeypatch.setattr(_disk.DiskTier, "store", slow_store)
    engine = QueryEngine(lake, background=False)
    query = "SELECT count(*) AS n FROM annotation_records"
    before = engine.sql(query)["n"][0].as_py()
    assert snapshot_taken.wait(30)
    [(old_key, table)] = [(e["key"], e["table"]) for e in engine.cache.info()["entries"]]
    aid = lake.assets.add_many([b"more"], kind="blob")["asset_id"][0].as_py()
    one = {"asset_id": [aid], "kind": ["bbox"], "label": ["dog"], "bbox": [[1.0, 2.0, 3.0, 4.0]]}
    lake.annotations.add(small.gt, pa.table(one))
    assert engine.sql(query)["n"][0].as_py() == before + 1
    [(new_key, same)] = [(e["key"], e["table"]) for e in engine.cache.info()["entries"]]
    assert new_key != old_key and same == table  # extended in place while the copy runs
    go_on.set()
    engine.cache.wait()
    copy = duckdb.connect()
    copy.execute(f"ATTACH '{engine._disk.path(old_key)}' AS c (READ_ONLY)")
    assert copy.sql("SELECT count(*) FROM c.t").fetchall() == [(before,)]
    engine.close()


def test_an_engine_keeps_few_files_attached(lake, small, monkeypatch):
    from lakecore.query import _cache

    first = QueryEngine(lake, background=False)
    for table in ("datums", "assets", "aliases"):
        first.sql(f"SELECT count(*) FROM {table}")
    first.cache.wait()
    first.close()
    monkeypatch.setattr(_cache, "MAX_ATTACHED", 1)
    second = QueryEngine(lake, background=False)
    for table in ("datums", "assets", "aliases"):
        assert second.sql(f"SELECT count(*) AS n FROM {table}")["n"][0].as_py() == 8
    assert list(_sources(second).values()) == ["disk"]  # the least recently used detached
    attached = second.sql("SELECT database_name FROM duckdb_databases()")["database_name"]
    assert sum(name.startswith("lc_disk_") for name in attached.to_pylist()) == 1
    second.close()


def test_copies_of_a_lake_never_read_each_others_files(tmp_path, monkeypatch):
    """A lake copied with its files (same id), then changed differently in each place."""
    import shutil

    monkeypatch.setenv("LAKECORE_SQL_DISK_CACHE", str(tmp_path / "cache"))
    a = lakecore.connect(tmp_path / "a")
    populate(a, n=6)
    warm = QueryEngine(a, background=False)
    warm.sql("SELECT count(*) FROM datums")
    warm.cache.wait()
    warm.close()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    b = lakecore.connect(tmp_path / "b")
    assert a.info.lake_id == b.info.lake_id
    ids = a.datums.table()["datum_id"].to_pylist()
    for lake, gone in ((a, ids[0]), (b, ids[1])):
        lake.commit([Delete("datums", f"datum_id = '{gone}'")])
    prints = {QueryEngine(lk)._describe(lk.snapshot(), "datums").fingerprint for lk in (a, b)}
    assert len(prints) == 2  # same data files, same count deleted: the deletion files differ
    for lake, gone in ((a, ids[0]), (b, ids[1])):
        engine = QueryEngine(lake, background=False)
        got = engine.sql("SELECT datum_id FROM datums ORDER BY datum_id")["datum_id"].to_pylist()
        assert got == sorted(set(ids) - {gone})
        engine.cache.wait()
        engine.close()


def test_a_table_appended_to_in_a_loop_is_copied_at_most_every_interval(lake, small):
    engine = QueryEngine(lake, background=False)
    query = "SELECT count(*) AS n FROM annotation_records"
    for i in range(3):
        aid = lake.assets.add_many([f"loop {i}".encode()], kind="blob")["asset_id"][0].as_py()
        one = {"asset_id": [aid], "kind": ["bbox"], "label": ["dog"], "bbox": [[1.0, 2, 3, 4]]}
        lake.annotations.add(small.gt, pa.table(one))
        assert engine.sql(query)["n"][0].as_py() == lake.annotations.count()
        engine.cache.wait()
    assert len(list(engine._disk.folder.glob("*.duckdb"))) == 1  # the first version only
    engine.close()


def test_a_process_that_exits_right_after_its_query_leaves_a_copy(tmp_path):
    """A CLI call's background build ends while the interpreter exits: the copy is written
    then (before, the build was thrown away), and the next process reads it."""
    root = tmp_path / "lake"
    populate(lakecore.connect(root), n=5)
    script = textwrap.dedent(
        f"""
        import lakecore
        from lakecore.query import QueryEngine
        engine = QueryEngine(lakecore.connect({str(root)!r}), sync_rows=0)  # builds: background
        assert engine.sql("SELECT count(*) AS n FROM datums")["n"][0].as_py() == 5
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode()
    engine = QueryEngine(lakecore.connect(root), background=False)
    assert engine.sql("SELECT count(*) AS n FROM datums")["n"][0].as_py() == 5
    assert _sources(engine) == {"datums": "disk"}
    engine.close()
