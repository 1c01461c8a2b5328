"""Multi-table commit protocol: atomicity, kill -9 at each step, stalled writers, concurrency."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections import Counter

import lance
import pyarrow as pa
import pytest
from _workers import TABLES, commit_one, ops, writer_loop

from lakecore.catalog.commit import set_fault_hook
from lakecore.errors import CommitConflictError, TableNotFoundError, ValidationError
from lakecore.storage.options import filesystem
from lakecore.storage.uri import parse
from lakecore.tables import Delete, Reindex, Upsert, to_arrow
from lakecore.tables.write import Compact
from schemas import Alias

STEPS = [
    "lease_acquired",
    "catalog_read",
    "table_committed:assets",
    "table_committed:datums",
    "table_committed:annotation_records",
    "before_swap",
    "after_swap",
    "released",
]
VISIBLE_AFTER = {"after_swap", "released"}


def txns(snapshot, table: str) -> Counter[str]:
    """How many rows of each transaction a table shows in a snapshot."""
    key = {"assets": "asset_id", "datums": "datum_id", "annotation_records": "annotation_id"}[table]
    ids = snapshot.to_table(table, columns=[key])[key].to_pylist()
    return Counter(i.split("_")[1] for i in ids)


def assert_consistent(snapshot, expected: dict[str, int]) -> None:
    for table in TABLES:
        assert dict(txns(snapshot, table)) == expected, table


@pytest.fixture(autouse=True)
def _no_hook():
    yield
    set_fault_hook(None)


def test_multi_table_write_is_all_or_nothing(lake):
    before = lake.snapshot()
    lake.commit(ops("t0", 3))
    assert_consistent(before, {})  # an old snapshot keeps reading the old state
    assert_consistent(lake.snapshot(), {"t0": 3})


def test_failing_build_writes_nothing(lake):
    lake.commit(ops("t0", 2))
    pins = lake.snapshot().pins

    def build(snap):
        raise ValidationError("row 3: bad label", row=3)

    with pytest.raises(ValidationError, match="row 3"):
        lake.commit(ops("t1", 2), build=build)
    assert lake.snapshot().pins == pins
    assert_consistent(lake.snapshot(), {"t0": 2})


def test_a_commit_with_nothing_to_change_leaves_the_catalog_as_it_is(lake):
    """A build that finds nothing to do (an alias already set, indices already fresh) must not
    add an empty catalog version: time travel and history stay free of no-op versions."""
    lake.commit(ops("t0", 2))
    before = lake.snapshot()
    seen = []
    result = lake.commit(build=lambda snap: seen.append(snap.catalog_version) or [])
    assert seen == [before.catalog_version]
    assert result.tables == {} and result.snapshot.catalog_version == before.catalog_version
    after = lake.snapshot()
    assert (after.catalog_version, after.pins) == (before.catalog_version, before.pins)
    assert lake.commit(ops("t1", 1)).snapshot.catalog_version == before.catalog_version + 1


@pytest.mark.parametrize(
    "step", ["table_committed:assets", "table_committed:datums", "before_swap"]
)
def test_exception_mid_commit_leaves_lake_as_before(lake, step):
    lake.commit(ops("t0", 2))

    def boom(s):
        if s == step:
            raise RuntimeError("injected")

    set_fault_hook(boom)
    with pytest.raises(RuntimeError, match="injected"):
        lake.commit(ops("t1", 2))
    set_fault_hook(None)
    assert_consistent(lake.snapshot(), {"t0": 2})
    lake.commit(ops("t2", 2))  # the next writer rolls the strays back, without help
    assert_consistent(lake.snapshot(), {"t0": 2, "t2": 2})


def test_unknown_table_and_bad_rows_are_refused(lake):
    with pytest.raises(TableNotFoundError):
        lake.commit([Delete("nope", "true")])
    bad = ops("t0", 1)[0]
    bad.data = bad.data.drop_columns(["kind"])
    with pytest.raises(ValueError, match="missing \\['kind'\\]"):
        lake.commit([bad])
    assert_consistent(lake.snapshot(), {})


def test_upsert_and_delete_in_one_transaction(lake):
    lake.commit(ops("t0", 3))
    alias = to_arrow([Alias(alias="cam/latest", asset_id="asset_t0_0")], Alias)
    lake.commit([Upsert("aliases", alias), Delete("datums", "datum_id = 'datum_t0_2'")])
    snap = lake.snapshot()
    assert snap.count("datums") == 2
    repoint = to_arrow([Alias(alias="cam/latest", asset_id="asset_t0_1")], Alias)
    lake.commit([Upsert("aliases", repoint)])
    table = lake.table("aliases")
    assert table["asset_id"].to_pylist() == ["asset_t0_1"]


@pytest.mark.parametrize("step", STEPS)
def test_kill_9_at_each_step(where, step):
    lake = where.connect(lease_ttl=1.0)
    lake.commit(ops("t0", 2))
    ctx = mp.get_context("spawn")
    child = ctx.Process(
        target=commit_one,
        args=(where.uri, where.options, "t1", 2),
        kwargs={"kill_at": step, "ttl": 1.0},
    )
    child.start()
    child.join(120)
    assert child.exitcode == -9, "the writer should have been killed"
    expected = {"t0": 2, "t1": 2} if step in VISIBLE_AFTER else {"t0": 2}
    assert_consistent(lake.snapshot(), expected)
    # the next writer recovers without manual help (it waits out the dead writer's lease)
    started = time.monotonic()
    lake.commit(ops("t2", 2))
    assert time.monotonic() - started < 60
    assert_consistent(lake.snapshot(), {**expected, "t2": 2})
    assert_consistent(where.connect().snapshot(), {**expected, "t2": 2})


def test_stalled_writer_never_gets_rows_published(where):
    """A writer that stalls past its lease while others commit must not leak a mixed snapshot."""
    lake = where.connect(lease_ttl=1.0)
    lake.commit(ops("t0", 2))
    ctx = mp.get_context("spawn")
    zombie = ctx.Process(
        target=commit_one,
        args=(where.uri, where.options, "za", 2),
        kwargs={"stall_at": "table_committed:assets", "stall": 4.0, "ttl": 1.0},
    )
    zombie.start()
    deadline = time.monotonic() + 60
    while lake._tables.latest("assets").version == lake.snapshot().pins["assets"]:
        assert time.monotonic() < deadline, "the stalled writer never wrote its first table"
        time.sleep(0.05)
    lake.commit(ops("tb", 2))  # takes the expired lease, rolls the zombie's rows back
    assert_consistent(lake.snapshot(), {"t0": 2, "tb": 2})
    zombie.join(120)
    assert zombie.exitcode == 0
    # the zombie woke up, was fenced, and retried as a whole transaction: never half-visible
    final = lake.snapshot()
    assert_consistent(final, {"t0": 2, "tb": 2, "za": 2})
    lake.commit(ops("tc", 1))
    assert_consistent(lake.snapshot(), {"t0": 2, "tb": 2, "za": 2, "tc": 1})


def test_concurrent_writers_lose_nothing(where):
    writers, commits, n = 4, (6 if where.kind == "local" else 3), 4
    lake = where.connect()
    ctx = mp.get_context("spawn")
    start_at = time.time() + 4.0
    procs = [
        ctx.Process(target=writer_loop, args=(where.uri, where.options, w, commits, n, start_at))
        for w in range(writers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0] * writers
    snap = lake.snapshot()
    expected = {f"w{w}c{c}": n for w in range(writers) for c in range(commits)}
    assert_consistent(snap, {k.split("_")[0]: v for k, v in expected.items()})
    aliases = snap.to_table("aliases")["alias"].to_pylist()
    assert sorted(aliases) == sorted(f"shared/{i}" for i in range(n))  # no duplicate keys


def test_compaction_is_one_atomic_change_of_an_indexed_table(where):
    """Lance commits a compaction of an indexed table as two versions; the catalog accepts
    that (the rows are the same ones) and readers see one change with the same content."""
    lake = where.connect()
    for i in range(6):
        lake.commit(ops(f"t{i}", 2))
    lake.commit([Reindex("assets", merge=True)])  # indexed fragments: compaction remaps them
    before = lake.snapshot()
    fragments = len(before.dataset("assets").get_fragments())
    assert fragments >= 6
    assert before.dataset("assets").describe_indices(), "the table should be indexed"
    result = lake.commit([Compact("assets")], message="compact")
    after = lake.snapshot()
    assert after.catalog_version == before.catalog_version + 1
    assert result.tables == {"assets": after.pins["assets"]}
    assert len(after.dataset("assets").get_fragments()) < fragments
    assert (
        after.to_table("assets")
        .sort_by("asset_id")
        .equals(before.to_table("assets").sort_by("asset_id"))
    )
    assert_consistent(after, {f"t{i}": 2 for i in range(6)})
    one = before.to_table("assets", columns=["asset_id"])["asset_id"][3].as_py()
    assert after.count("assets", f"asset_id = '{one}'") == 1  # index lookups still answer
    lake.commit(ops("t9", 2))  # and the next writer goes on from there
    assert_consistent(lake.snapshot(), {**{f"t{i}": 2 for i in range(6)}, "t9": 2})


@pytest.mark.parametrize("change", ["append", "update"])
def test_a_compaction_that_meets_another_writer_is_fenced(lake, monkeypatch, change):
    """If rows changed under a compaction (a zombie writer appended, or updated values in
    place, which keeps Lance's stable row ids), the catalog refuses the result."""
    from lakecore.catalog import commit as commit_mod

    for i in range(3):
        lake.commit(ops(f"t{i}", 2))
    real = commit_mod.apply_op

    def sneaky(store, op, version):
        if isinstance(op, Compact):  # another writer changes the table right before
            row = store.at("assets", version).to_table().slice(0, 1)
            if change == "append":
                lance.write_dataset(
                    row.set_column(0, "asset_id", pa.array(["asset_zombie_1"])),
                    store.uri("assets"),
                    mode="append",
                    storage_options=store.options,
                )
            else:
                at = row.schema.get_field_index("size_bytes")
                row = row.set_column(at, "size_bytes", pa.array([123456789], pa.int64()))
                ds = lance.dataset(store.uri("assets"), storage_options=store.options)
                ds.merge_insert("asset_id").when_matched_update_all().execute(row)
        return real(store, op, version)

    monkeypatch.setattr(commit_mod, "apply_op", sneaky)
    lake._catalog.max_attempts = 2
    with pytest.raises(CommitConflictError):
        lake.commit([Compact("assets")])
    monkeypatch.undo()
    assert_consistent(lake.snapshot(), {f"t{i}": 2 for i in range(3)})
    lake.commit(ops("t3", 2))
    assert_consistent(lake.snapshot(), {**{f"t{i}": 2 for i in range(3)}, "t3": 2})


def test_each_snapshot_reads_the_latest_catalog(where):
    """A handle keeps its catalog open between reads and brings it up to date: what another
    handle commits shows in the next snapshot, and a lake deleted and made again at the same
    place reads as the new lake."""
    a, b = where.connect(), where.connect()
    seen = a.snapshot().catalog_version
    for i in range(3):
        b.commit(ops(f"t{i}", 1))
        snap = a.snapshot()
        assert snap.catalog_version > seen
        assert_consistent(snap, {f"t{j}": 1 for j in range(i + 1)})
        seen = snap.catalog_version
    a.commit(ops("t3", 2))  # a keeps what it wrote: the same pins a fresh read finds
    assert a.snapshot().pins == where.connect().snapshot().pins
    assert a.snapshot().catalog_version == b.snapshot().catalog_version
    assert_consistent(b.snapshot(), {"t0": 1, "t1": 1, "t2": 1, "t3": 2})
    assert_consistent(a.snapshot(), {"t0": 1, "t1": 1, "t2": 1, "t3": 2})

    root = parse(where.uri)
    filesystem(root, where.options).rm(root.uri, recursive=True)
    fresh = where.connect()
    fresh.commit(ops("t9", 1))
    assert a.snapshot().pins == fresh.snapshot().pins
    assert a.snapshot().catalog_version == fresh.snapshot().catalog_version
