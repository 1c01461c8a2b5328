"""Garbage collection never breaks a committed version or the current lake (local and S3)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_datasets import populate

import lakecore
from lakecore.tables import Upsert


def reads(lake, handle):
    """Everything a version reads, in a comparable form."""
    t = handle.to_arrow()
    return (
        t.sort_by("datum_id").to_pylist(),
        handle.annotations().sort_by("annotation_id").to_pylist(),
        handle.assets().sort_by("asset_id").to_pylist(),
        handle.payloads(t["datum_id"].to_pylist()),
    )


def current(lake):
    snap = lake.snapshot()
    return {name: snap.to_table(name).num_rows for name in sorted(snap.pins)}


def test_gc_keeps_versions_and_reclaims_garbage(where):
    lake = where.connect()
    aids, dids, _set_id = populate(lake, n=10)
    v1 = lake.datasets.builder("s").add(dids[:6]).commit("1")
    # churn: record edits, a second version, many small commits
    rec = lake.annotations.table(filter=f"datum_id = '{dids[0]}'")
    lake.commit([Upsert("annotation_records", rec)])
    for i in range(3):
        lake.aliases.set(f"cam/{i}", aids[i])
    v2 = lake.datasets.builder("s", parent="latest").add(dids[6:]).remove(dids[:1]).commit("2")
    orphan = lake.objects.put(b"never referenced")
    extra = lake.assets.add(b"short-lived", kind="blob")
    lake.assets.delete([extra.asset_id])
    before = {v.ref: reads(lake, v) for v in (v1, v2)}
    state = current(lake)
    dry = lake.gc(dry_run=True, grace=timedelta(0))
    assert dry.payloads_dead == 2 and dry.payload_bytes_dead == len(b"never referenced") + 11
    assert sum(dry.versions_removed.values()) > 0
    assert lake.objects.exists(orphan)  # a dry run removes nothing
    report = lake.gc(dry_run=False, grace=timedelta(0))
    assert report.bytes_after < report.bytes_before
    assert not lake.objects.exists(orphan)
    fresh = lakecore.connect(where.uri, storage_options=where.options)
    assert not fresh.objects.exists(extra.storage)
    for ref, seen in before.items():
        name, version = ref.split("@")
        assert reads(fresh, fresh.datasets.get(name, version)) == seen
    assert current(fresh) == state
    assert fresh.aliases.resolve("cam/2") == aids[2]
    # the lake keeps working after gc: new commits and a second gc
    lake.datasets.builder("s", parent="latest").remove(dids[1:2]).commit("3")
    lake.gc(dry_run=False, grace=timedelta(0))
    for ref, seen in before.items():
        name, version = ref.split("@")
        assert reads(fresh, fresh.datasets.get(name, version)) == seen


def test_gc_respects_grace(lake):
    _, _dids, _ = populate(lake, n=3)
    orphan = lake.objects.put(b"young orphan")
    report = lake.gc(dry_run=False, grace=timedelta(hours=1))
    assert report.payloads_dead == 0 and lake.objects.exists(orphan)
    assert sum(report.versions_removed.values()) == 0


@pytest.mark.parametrize("dry_run", [True, False])
def test_gc_on_a_fresh_lake(lake, dry_run):
    report = lake.gc(dry_run=dry_run, grace=timedelta(0))
    assert report.payloads_dead == 0 and report.dry_run is dry_run
