"""Immutable dataset versions: build, resolve, read, diff, tag — local disk and S3."""

from __future__ import annotations

import multiprocessing as mp
import time

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from _dataset_workers import commit_version, race

from lakecore.catalog.commit import set_fault_hook
from lakecore.errors import (
    AlreadyExistsError,
    InUseError,
    ValidationError,
    VersionNotFoundError,
)
from lakecore.tables import Upsert


@pytest.fixture(autouse=True)
def _no_hook():
    yield
    set_fault_hook(None)


def populate(lake, n: int = 12):
    """n image assets + n datums (splits train/val) + one box record per datum."""
    assets = lake.assets.add_many([f"image-{i}".encode() for i in range(n)], kind="blob")
    aids = assets["asset_id"].to_pylist()
    datums = lake.datums.add_many(
        [
            {"assets": {"image": a}, "split": "val" if i % 4 == 0 else "train"}
            for i, a in enumerate(aids)
        ]
    )
    dids = datums["datum_id"].to_pylist()
    schema = lake.annotations.create_schema(
        "shapes", task_type="detection", labels=["cat", "dog"], allowed_kinds=["bbox"]
    )
    gt = lake.annotations.create_set("gt", schema_id=schema.schema_id)
    lake.annotations.add(
        gt.set_id,
        pa.table(
            {
                "datum_id": dids,
                "asset_id": aids,
                "kind": ["bbox"] * n,
                "label": ["cat" if i % 2 else "dog" for i in range(n)],
                "bbox": [[float(i), 1.0, 2.0, 3.0] for i in range(n)],
            }
        ),
    )
    return aids, dids, gt.set_id


def test_build_resolve_and_read(lake):
    _aids, dids, _ = populate(lake)
    v1 = (
        lake.datasets.builder("shapes")
        .add(dids[:8])
        .commit("1.0.0", message="first", author="ana", tags=["prod"])
    )
    assert v1.ref == "shapes@1.0.0" and v1.record.datum_count == 8
    table = v1.to_arrow()
    assert table.column_names == ["datum_id", "split", "assets", "metadata", "created_at"]
    assert sorted(table["datum_id"].to_pylist()) == sorted(dids[:8])
    again = lake.datasets.get("shapes", "1.0.0").to_arrow()  # the same order on every read
    assert again["datum_id"].to_pylist() == table["datum_id"].to_pylist()
    v2 = (
        lake.datasets.builder("shapes", parent="latest")
        .add(dids[8:], split="test")
        .remove(dids[:2])
        .set_split(dids[2:4], "val")
        .commit("1.1.0")
    )
    members = dict(zip(*v2.members().to_pydict().values(), strict=True))
    assert set(members) == set(dids[2:])
    assert all(members[d] == "test" for d in dids[8:]) and members[dids[2]] == "val"
    # resolve by version, tag and latest
    assert lake.datasets.get("shapes").version == "1.1.0"
    assert lake.datasets.get("shapes", "prod").version == "1.0.0"
    lake.datasets.tag("shapes", "prod", "1.1.0", by="bob")
    assert lake.datasets.get("shapes", "prod").version == "1.1.0"
    assert lake.datasets.tags("shapes") == {"prod": "1.1.0"}
    events = lake.datasets.history("shapes").to_pylist()
    assert [(e["event"], e["version"]) for e in events] == [
        ("commit", "1.0.0"),
        ("tag", "1.0.0"),
        ("commit", "1.1.0"),
        ("tag", "1.1.0"),
    ]
    assert lake.datasets.versions("shapes")["version"].to_pylist() == ["1.0.0", "1.1.0"]
    listed = lake.datasets.list().to_pylist()
    assert listed[0]["dataset_name"] == "shapes" and listed[0]["latest"] == "1.1.0"
    # reads
    assert v1.annotations().num_rows == 8
    assert v1.assets().num_rows == 8
    assert v1.payloads(dids[:2]) == [b"image-0", b"image-1"]
    assert v1.head(3).num_rows == 3
    stats = v1.stats()
    assert stats["datums"] == 8 and stats["labels"] == {"cat": 4, "dog": 4}
    assert stats["splits"] == {"val": 2, "train": 6}
    assert sum(b.num_rows for b in v1.to_batches(batch_size=3)) == 8
    assert v1.to_polars().height == 8
    seen, cursor = [], None
    while True:
        page = v2.page(cursor, limit=4)
        seen += page.rows["datum_id"].to_pylist()
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == sorted(dids[2:]) and len(seen) == len(set(seen))
    with pytest.raises(ValidationError, match="cursor"):
        v1.page(page.next_cursor or v2.page(limit=4).next_cursor)
    diff = lake.datasets.diff("shapes@1.0.0", "shapes@1.1.0")
    assert sorted(diff.added) == sorted(dids[8:]) and sorted(diff.removed) == sorted(dids[:2])
    assert sorted(diff.changed) == sorted(dids[2:4])  # split changed
    assert diff.summary()["labels"]["cat"]["b"] == v2.stats()["labels"]["cat"]


def test_version_content_is_frozen(lake):
    aids, dids, set_id = populate(lake)
    v1 = lake.datasets.builder("shapes").add(dids).commit("1.0.0")
    before = (v1.to_arrow(), v1.annotations(), v1.assets())
    # update a record, add records, change asset metadata, delete a datum: v1 reads the same
    rec = lake.annotations.table(filter=f"datum_id = '{dids[0]}'")
    changed = rec.set_column(rec.schema.get_field_index("label"), "label", pa.array(["cat"]))
    lake.commit([Upsert("annotation_records", changed)])
    lake.assets.update_metadata(aids[1], {"reviewed": True})
    lake.annotations.add(
        set_id,
        pa.table(
            {
                "datum_id": [dids[2]],
                "asset_id": [aids[2]],
                "kind": ["bbox"],
                "label": ["dog"],
                "bbox": [[0.0, 0.0, 1.0, 1.0]],
            }
        ),
    )
    lake.datasets.builder("other").add(dids[:1]).commit("x")
    again = lake.datasets.get("shapes", "1.0.0")
    for old, new in zip(
        before, (again.to_arrow(), again.annotations(), again.assets()), strict=True
    ):
        assert new.sort_by(new.column_names[0]).equals(old.sort_by(old.column_names[0]))
    # an asset a committed version uses cannot be deleted
    with pytest.raises(InUseError, match="retention"):
        lake.assets.delete([aids[5]])


def test_commit_writes_only_the_changes(lake):
    _, dids, _ = populate(lake, n=40)
    lake.datasets.builder("big").add(dids[:36]).commit("1")
    v2 = lake.datasets.builder("big", parent="latest").add(dids[36:]).remove(dids[:1]).commit("2")
    v1 = lake.datasets.get("big", "1")
    old = v1.snapshot.dataset("dataset_members")
    new = v2.snapshot.dataset("dataset_members")
    old_frags = {f.fragment_id for f in old.get_fragments()}
    written = sum(
        f.metadata.physical_rows for f in new.get_fragments() if f.fragment_id not in old_frags
    )
    assert written == 4  # the 4 added rows, not a copy of the 39 members
    assert v2.record.datum_count == 39


def test_bad_input_writes_nothing(lake):
    _, dids, _ = populate(lake, n=4)
    pins = lake.snapshot().pins
    with pytest.raises(ValidationError, match="does not exist"):
        lake.datasets.builder("s").add([dids[0], "datum_nope"]).commit("1")
    with pytest.raises(ValidationError, match="not in the dataset"):
        lake.datasets.builder("s").add(dids[:1]).remove(dids[1:2]).commit("1")
    with pytest.raises(ValidationError, match="do not exist"):
        lake.datasets.builder("s").add(dids[:1]).attach(["annset_missing"]).commit("1")
    with pytest.raises(ValueError, match="latest"):
        lake.datasets.builder("s").add(dids[:1]).commit("latest")
    with pytest.raises(ValueError, match="dataset_name"):
        lake.datasets.builder("bad name!")
    assert lake.snapshot().pins == pins
    lake.datasets.builder("s").add(dids).commit("1")
    with pytest.raises(AlreadyExistsError, match="s@1 exists"):
        lake.datasets.builder("s").add(dids).commit("1")
    with pytest.raises(VersionNotFoundError, match="s@9"):
        lake.datasets.get("s", "9")
    with pytest.raises(VersionNotFoundError, match="no dataset"):
        lake.datasets.get("nope")
    with pytest.raises(ValidationError, match="is a version"):
        lake.datasets.tag("s", "1", "1")


@pytest.mark.parametrize("step", ["catalog_read", "table_committed:dataset_members", "before_swap"])
def test_exception_at_each_step_leaves_no_trace(lake, step):
    _, dids, _ = populate(lake, n=6)
    lake.datasets.builder("s").add(dids[:3]).commit("1")

    def boom(s):
        if s == step:
            raise RuntimeError("injected")

    set_fault_hook(boom)
    with pytest.raises(RuntimeError):
        lake.datasets.builder("s", parent="latest").add(dids[3:]).commit("2")
    set_fault_hook(None)
    assert not lake.datasets.exists("s", "2")
    assert lake.datasets.get("s").record.datum_count == 3
    v2 = lake.datasets.builder("s", parent="latest").add(dids[3:]).commit("2")
    assert v2.record.datum_count == 6 and lake.datasets.get("s", "1").record.datum_count == 3


@pytest.mark.parametrize("step", ["table_committed:dataset_members", "before_swap", "after_swap"])
def test_kill_9_of_a_committer(where, step):
    lake = where.connect(lease_ttl=1.0)
    _, dids, _ = populate(lake, n=6)
    ctx = mp.get_context("spawn")
    child = ctx.Process(
        target=commit_version,
        args=(where.uri, where.options, "s", "1", dids),
        kwargs={"kill_at": step, "ttl": 1.0},
    )
    child.start()
    child.join(120)
    assert child.exitcode == -9
    visible = step == "after_swap"
    assert lake.datasets.exists("s", "1") == visible
    if visible:
        assert lake.datasets.get("s", "1").record.datum_count == 6
    else:
        lake.datasets.builder("s").add(dids[:2]).commit("1")
        assert lake.datasets.get("s", "1").members().num_rows == 2


def test_two_writers_same_version_exactly_one_wins(where):
    lake = where.connect()
    _, dids, _ = populate(lake, n=4)
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        out = manager.dict()
        start = time.time() + 3.0
        procs = [
            ctx.Process(target=race, args=(where.uri, where.options, "s", "1", ids, start, out))
            for ids in (dids[:2], dids[2:])
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        results = sorted(out.values())
    assert results == ["AlreadyExistsError", "ok"]
    assert lake.datasets.get("s", "1").members().num_rows == 2


def test_from_a_query_and_another_dataset(lake):
    _, dids, _ = populate(lake, n=8)
    q = lake.datums.table(columns=["datum_id", "split"])
    val = q.filter(pc.equal(q["split"], "val"))
    v = lake.datasets.builder("val-only").add(val).commit("1")
    assert v.record.datum_count == 2 and set(v.members()["split"].to_pylist()) == {"val"}
    sub = (
        lake.datasets.builder("derived", parent="val-only@1")
        .remove(val["datum_id"][:1])
        .commit("1")
    )
    assert sub.record.parent_version_id == v.record.version_id
    assert sub.record.datum_count == 1
    with pytest.raises(ValidationError, match="not in the dataset"):
        lake.datasets.builder("derived", parent="latest").set_split([dids[1]], "x").commit("2")


def test_datum_in_a_dataset_cannot_be_deleted(lake):
    _, dids, _ = populate(lake, n=3)
    lake.annotations.delete(lake.annotations.table(columns=["annotation_id"])["annotation_id"])
    lake.datasets.builder("s").add(dids[:2]).commit("1")
    with pytest.raises(InUseError, match="dataset s"):
        lake.datums.delete([dids[0]])
    lake.datasets.builder("s", parent="latest").remove(dids[:1]).commit("2")
    lake.datums.delete([dids[0]])  # no longer held by the current membership
    assert lake.datasets.get("s", "1").to_arrow().num_rows == 2  # version 1 still reads it


def test_removals_hit_the_right_rows_after_other_writers_and_compaction(lake):
    """Removed members are deleted by the stable row ids read at the parent: other datasets'
    commits and a compaction of the membership table in between must not shift them."""
    _, dids, _ = populate(lake, n=30)
    lake.datasets.builder("a").add(dids[:20]).commit("1")
    lake.datasets.builder("b").add(dids[10:]).commit("1")  # shares dids[10:20] with "a"
    lake.datasets.builder("b", parent="latest").remove(dids[25:]).commit("2")
    lake.optimize()  # compacts dataset_members: rows move to new files, their ids stay
    v2 = lake.datasets.builder("a", parent="latest").remove(dids[5:15]).commit("2")
    assert sorted(v2.members()["datum_id"].to_pylist()) == sorted(dids[:5] + dids[15:20])
    b = lake.datasets.get("b", "latest")
    assert sorted(b.members()["datum_id"].to_pylist()) == sorted(dids[10:25])
    assert sorted(lake.datasets.get("a", "1").members()["datum_id"].to_pylist()) == sorted(
        dids[:20]
    )


def test_a_datum_deleted_after_the_lookahead_is_still_caught(lake, monkeypatch):
    """The builder looks the added datums up before it takes the writer lease; if the datums
    table changes before the lease, the lookup is redone at the snapshot it commits on."""
    from lakecore.datasets.builder import DatasetBuilder

    aids, dids, _ = populate(lake, n=6)
    lone = lake.datums.add_many([{"assets": {"image": aids[0]}}])["datum_id"][0].as_py()
    lake.datasets.builder("s").add(dids[:3]).commit("1")
    original = DatasetBuilder._prefetch_datums

    def prefetch_then_delete(self):  # another writer deletes a datum right after the lookup
        found = original(self)
        lake.datums.delete([lone])
        return found

    monkeypatch.setattr(DatasetBuilder, "_prefetch_datums", prefetch_then_delete)
    pins = lake.snapshot().pins
    with pytest.raises(ValidationError, match=f"{lone} does not exist"):
        lake.datasets.builder("s", parent="latest").add([*dids[3:], lone]).commit("2")
    assert lake.snapshot().pins["dataset_versions"] == pins["dataset_versions"]
    monkeypatch.setattr(DatasetBuilder, "_prefetch_datums", original)
    v2 = lake.datasets.builder("s", parent="latest").add(dids[3:]).commit("2")
    assert sorted(v2.members()["datum_id"].to_pylist()) == sorted(dids)
