"""Loaders read blob-table payloads as byte ranges of the table's files (local and S3), and
fall back to Lance's reads by row id when a range cannot be used."""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lance  # noqa: E402

from lakecore.loaders import to_torch  # noqa: E402
from lakecore.loaders._plan import Locations  # noqa: E402
from lakecore.storage import payloads as payloads_module  # noqa: E402

# an empty payload, small ones, ones in a shared sidecar file either way (~100 KB) and one in a
# sidecar file of its own (9 MB)
SIZES = [0, 1, 4096, 4097, 100_000, 100_003, 9 << 20]


@pytest.fixture(params=["new-lake", "old-lake"])
def inline_max(request, monkeypatch):
    """The largest payload a lake keeps inline in its data files. Lakes made before
    ``INLINE_MAX`` have no threshold in their schema: Lance's default, 64 KiB."""
    if request.param == "new-lake":
        return payloads_module.INLINE_MAX
    monkeypatch.setattr(payloads_module, "new_table_schema", lambda: payloads_module.BLOB_SCHEMA)
    return 64 * 1024


def _blobs() -> list[bytes]:
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 256, n, dtype=np.uint8).tobytes() + bytes(i % 3)
        for i, n in enumerate(SIZES)
    ]


def _version(lake, blobs):
    assets = lake.assets.add_many(blobs, kind="blob")
    datums = lake.datums.add_many([{"assets": {"data": a}} for a in assets["asset_id"].to_pylist()])
    version = lake.datasets.builder("ranges").add(datums["datum_id"]).commit("1")
    return version, dict(zip(datums["datum_id"].to_pylist(), blobs, strict=True))


def _by_id(ds):
    return {i: b for batch in ds for i, b in zip(batch["datum_id"], batch["data"], strict=True)}


def _no_lance_blob_reads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("read_blobs was called: the payload should be read as a range")

    monkeypatch.setattr(lance.LanceDataset, "read_blobs", refuse)


def test_every_blob_kind_is_read_as_a_byte_range(where, monkeypatch, inline_max):
    lake = where.connect()
    blobs = _blobs()
    version, expected = _version(lake, blobs)
    ds = to_torch(version, roles="data", decode=False, annotations=False, batch_size=3, seed=1)
    locs: Locations = ds.plan.locations["data"]
    assert (locs.rowid >= 0).all() and (locs.file >= 0).all()
    assert all(f.startswith("s3://") == (where.kind == "s3") for f in locs.files)
    in_sidecar = np.array([locs.files[f].endswith(".blob") for f in locs.file])
    assert (in_sidecar == (locs.size > inline_max)).all()
    as_uint8 = to_torch(version, roles="data", decode="uint8", annotations=False)
    _no_lance_blob_reads(monkeypatch)  # plans check the layout with Lance, reads never do
    assert _by_id(ds) == expected
    one = next(iter(as_uint8))
    assert bytes(one["data"].numpy()) == expected[one["datum_id"]]


def test_unusable_ranges_fall_back_to_reads_by_row_id(tmp_path, monkeypatch, inline_max):
    import lakecore

    lake = lakecore.connect(tmp_path / "lake")
    blobs = _blobs()
    version, expected = _version(lake, blobs)
    # a layout this version of lakecore does not know: the check against Lance's own read
    # leaves sidecar payloads unlocated, inline ones still use ranges
    monkeypatch.setattr(payloads_module, "_sidecar_name", lambda blob_id: f"{blob_id:08x}.raw")
    ds = to_torch(version, roles="data", decode=False, annotations=False)
    locs = ds.plan.locations["data"]
    assert (locs.rowid >= 0).all()
    sidecar = locs.size > inline_max
    assert sidecar.sum() >= 2  # both layouts put some payloads in sidecar files
    assert (locs.file[sidecar] == -1).all() and (locs.file[~sidecar] >= 0).all()
    assert {s["datum_id"]: s["data"] for s in ds} == expected
    # files gone since the plan (e.g. old versions cleaned up): read by row id instead
    monkeypatch.undo()
    ds = to_torch(version, roles="data", decode=False, annotations=False, batch_size=4)
    locs = ds.plan.locations["data"]
    assert (locs.file >= 0).all()
    locs.files[:] = [os.path.join(str(tmp_path), "gone", str(i)) for i in range(len(locs.files))]
    assert _by_id(ds) == expected


def test_ranges_of_rows_that_are_gone_are_unlocated(tmp_path):
    import lakecore

    lake = lakecore.connect(tmp_path / "lake")
    refs = lake.objects.put_many([b"abc", b"defg"])
    mount = lake.objects.mount(None)
    ids = mount.rowids([r.sha256 for r in refs])
    wanted = [ids[refs[1].sha256], 10**9, ids[refs[0].sha256], ids[refs[1].sha256]]
    ranges = mount.ranges(wanted)
    assert ranges.file.tolist()[1] == -1 and (ranges.file[[0, 2, 3]] >= 0).all()
    assert ranges.size.tolist() == [4, 0, 3, 4]
    for j, data in ((0, b"defg"), (2, b"abc")):
        with open(ranges.files[ranges.file[j]], "rb") as f:
            f.seek(int(ranges.offset[j]))
            assert f.read(int(ranges.size[j])) == data
    assert mount.ranges([]).file.tolist() == []


def test_remote_requests_never_span_gaps_much_larger_than_the_payloads():
    """Sparse small payloads (a shuffled unit over a big file) are fetched one by one; close
    neighbours, or gaps smaller than the payload next to them, share a request."""
    from lakecore.loaders._read import MERGE_GAP, SMALL_GAP, _bridgeable, _runs

    kib = 1 << 10
    size = np.array([4 * kib, 4 * kib, 4 * kib, 512 * kib, 4 * kib])
    gaps = [1 * kib, 128 * kib, 300 * kib, MERGE_GAP + 1]  # before ranges 1..4
    start = np.cumsum([0, *(size[:-1] + np.array(gaps))])
    runs = _runs(start, start + size, _bridgeable(size))
    # 0-1: 1 KiB gap; 1|2: 128 KiB > SMALL_GAP between 4 KiB payloads; 2-3: 300 KiB < the
    # 512 KiB payload after it; 3|4: more than MERGE_GAP
    assert runs == [(0, 2), (2, 4), (4, 5)]
    assert 128 * kib > SMALL_GAP
