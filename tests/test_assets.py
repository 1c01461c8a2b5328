"""Assets: add (every source kind), add_many in one commit, reads, metadata, reference-checked
delete and bad input — on local disk and S3."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image

import lakecore
from lakecore.entities._sources import sniff
from lakecore.entities.aliases import Aliases
from lakecore.entities.assets import Assets
from lakecore.entities.collections import Collections, Retentions
from lakecore.entities.datums import Datums
from lakecore.errors import (
    AliasAlreadyExistsError,
    AliasNotFoundError,
    AssetNotFoundError,
    InUseError,
    ObjectNotFoundError,
    ValidationError,
)
from lakecore.tables import Append, Delete, to_arrow
from schemas import AnnotationRecord, StorageRef


def image(fmt: str, w: int = 20, h: int = 10) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (w, h), (200, 10, 10)).save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize(
    "fmt,media",
    [
        ("PNG", "image/png"),
        ("JPEG", "image/jpeg"),
        ("GIF", "image/gif"),
        ("WEBP", "image/webp"),
        ("TIFF", "image/tiff"),
        ("BMP", "image/bmp"),
    ],
)
def test_sniff_reads_media_type_and_size_from_the_header(fmt, media):
    assert sniff(image(fmt, 33, 17)) == (media, (33, 17))
    assert sniff(image(fmt), "x.pdf") == ("application/pdf", (20, 10))  # suffix wins


def test_sniff_non_images():
    assert sniff(b"%PDF-1.7\n...") == ("application/pdf", None)
    assert sniff(b"\x00\x01\x02") == ("application/octet-stream", None)
    assert sniff(b"BM not a bitmap at all") == ("application/octet-stream", None)
    assert sniff(b"\x89PNG\r\n\x1a\n garbage") == ("image/png", None)  # skipped silently
    assert sniff(b"", "notes.txt") == ("text/plain", None)


def test_add_every_source_and_read_back(where, tmp_path):
    ext = where.child("ext")
    lake = where.connect(mounts={"ext": ext.uri})
    assets = Assets(lake)
    png, jpg = image("PNG", 64, 32), image("JPEG", 40, 30)
    path = tmp_path / "photo.jpg"
    path.write_bytes(jpg)
    a = assets.add(png, alias="cams/0001.png", metadata={"cam": "front"}, created_by="ci")
    assert (a.kind.value, a.media_type, a.width, a.height, a.created_by) == (
        "image",
        "image/png",
        64,
        32,
        "ci",
    )
    b = assets.add(path)
    assert (b.media_type, b.width, b.height, b.size_bytes) == ("image/jpeg", 40, 30, len(jpg))
    c = assets.add(io.BytesIO(b"%PDF-1.4 hello"), kind="document")
    assert (c.media_type, c.width) == ("application/pdf", None)
    d = assets.add(png, kind="image", width=7, media_type="image/x-custom")
    assert (d.width, d.height, d.media_type) == (7, 32, "image/x-custom")
    assert d.sha256 == a.sha256 and d.storage == a.storage  # payload stored once

    lake.objects.put(png, mount="ext", key="raw/cam.png")
    ref = lake.objects.register("ext", "raw/cam.png")
    e = assets.add(ref)  # referenced in place, not copied
    assert (e.storage.mount, e.storage.key, e.width, e.media_type) == (
        "ext",
        "raw/cam.png",
        64,
        "image/png",
    )

    assert assets.read(a.asset_id) == png and assets.read(e.asset_id) == png
    with assets.open(b.asset_id) as f:
        f.seek(2)
        assert f.read(3) == jpg[2:5]
    assert assets.get(a.asset_id).metadata == {"cam": "front"}
    assert assets.get_by_alias("cams/0001.png").asset_id == a.asset_id
    order = [c.asset_id, a.asset_id, c.asset_id]
    assert assets.get_many(order)["asset_id"].to_pylist() == order
    assert assets.exists([a.asset_id, "asset_nope"]) == [True, False]
    assert assets.count() == 5 and assets.count("kind = 'document'") == 1
    assert assets.table(["asset_id"], filter="width = 40")["asset_id"].to_pylist() == [b.asset_id]

    merged = assets.update_metadata(a.asset_id, {"lens": 35}, merge=True)
    assert merged.metadata == {"cam": "front", "lens": 35}
    assert merged.updated_at > a.updated_at and merged.created_at == a.created_at
    assert assets.update_metadata(a.asset_id, {"x": 1}).metadata == {"x": 1}
    assert assets.get(a.asset_id).metadata == {"x": 1} and assets.count() == 5


def test_add_many_is_one_commit_with_aliases(lake):
    assets, aliases = Assets(lake), Aliases(lake)
    payloads = [os.urandom(64) for _ in range(5)]
    before = lake.snapshot()
    seen = []
    rows = assets.add_many(
        [*payloads, payloads[0]],
        kind="blob",
        aliases=["a/0", None, "a/2", None, None, "a/5"],
        metadata=[{"i": i} for i in range(6)],
        media_types=[None] * 5 + ["text/plain"],
        created_by="bulk",
        progress=lambda done, total: seen.append((done, total)),
    )
    after = lake.snapshot()
    assert after.catalog_version == before.catalog_version + 1  # one commit for everything
    assert rows.num_rows == 6 and len(set(rows["asset_id"].to_pylist())) == 6
    assert rows["media_type"].to_pylist()[-2:] == ["application/octet-stream", "text/plain"]
    assert rows["storage"][0] == rows["storage"][5]  # same bytes stored once
    assert seen[-1] == (6, 6)
    assert aliases.resolve("a/5") == rows["asset_id"][5].as_py()
    assert after.count("alias_history") == 3
    assert Assets(lake).get(rows["asset_id"][3].as_py()).metadata == {"i": 3}

    pins = lake.snapshot().pins
    with pytest.raises(AliasAlreadyExistsError, match="a/2"):
        assets.add_many([b"new", b"other"], aliases=["b/1", "a/2"])
    assert lake.snapshot().pins == pins and assets.count() == 6
    assert assets.add_many([]).num_rows == 0 and lake.snapshot().pins == pins


BAD_INPUT = [
    (lambda a, _: a.add_many(b"abc"), ValidationError, "list of payloads"),
    (lambda a, _: a.add_many([object()]), ValidationError, "sources\\[0\\]"),
    (lambda a, _: a.add_many([b"x"], kind="nope"), ValidationError, "kind 'nope'"),
    (lambda a, _: a.add_many([b"x"], aliases=["has space"]), ValidationError, "whitespace"),
    (lambda a, _: a.add_many([b"x"], aliases=["asset_1"]), ValidationError, "reserved"),
    (lambda a, _: a.add_many([b"x", b"y"], aliases=["d", "d"]), ValidationError, "twice"),
    (lambda a, _: a.add_many([b"x"], aliases=["a", "b"]), ValidationError, "2 values for 1"),
    (
        lambda a, _: a.add_many([b"x"], metadata=[{"v": float("nan")}]),
        ValidationError,
        "row 0: metadata",
    ),
    (lambda a, _: a.add_many([b"x"], metadata=["{}"]), ValidationError, "must be a dict"),
    (lambda a, _: a.add_many([b"x"], media_types=["jpeg"]), ValidationError, "type/subtype"),
    (lambda a, _: a.add(b"x", created_by=3), ValidationError, "created_by"),
    (lambda a, _: a.add(b"x", width=-1), ValidationError, "width"),
    (lambda a, p: a.add(p / "missing.png"), ObjectNotFoundError, "no such file"),
    (lambda a, _: a.get(""), ValidationError, "non-blank"),
    (lambda a, _: a.get(7), ValidationError, "asset_id"),
    (lambda a, _: a.get("asset_nope"), AssetNotFoundError, "asset_nope"),
    (lambda a, _: a.get_by_alias("no/such"), AliasNotFoundError, "no/such"),
    (lambda a, _: a.exists(["asset_x", None]), ValidationError, "asset_ids\\[1\\]"),
    (lambda a, _: a.delete(["asset_nope"]), AssetNotFoundError, "asset_nope"),
    (lambda a, _: a.update_metadata("asset_nope", {}), AssetNotFoundError, "asset_nope"),
]


def test_bad_input_is_refused_and_changes_nothing(tmp_path):
    """Input checks run before any storage access (or in build, like the S3-tested paths)."""
    lake = lakecore.connect(tmp_path / "lake")
    assets = Assets(lake)
    kept = assets.add(b"kept", kind="blob")
    pins = lake.snapshot().pins
    for i, (call, error, match) in enumerate(BAD_INPUT):
        with pytest.raises(error, match=match):
            call(assets, tmp_path)
        assert lake.snapshot().pins == pins, f"case {i} changed the lake"
    with pytest.raises(AssetNotFoundError, match="asset_nope"):
        assets.get_many([kept.asset_id, "asset_nope"])
    with pytest.raises(ValidationError, match="dict"):
        assets.update_metadata(kept.asset_id, "x")  # type: ignore[arg-type]


def _annotate(lake, *records: dict) -> list[str]:
    recs = [
        AnnotationRecord(
            set_id="annset_t", label="x", source_kind="human", source_name="t", **fields
        )
        for fields in records
    ]
    lake.commit([Append("annotation_records", to_arrow(recs, AnnotationRecord))])
    return [r.annotation_id for r in recs]


def test_delete_is_refused_while_anything_holds_the_asset(lake):
    assets = Assets(lake)
    rows = assets.add_many(
        [f"p{i}".encode() for i in range(6)], kind="blob", aliases=[f"d/{i}" for i in range(6)]
    )
    ids = rows["asset_id"].to_pylist()
    datum = Datums(lake).add({"image": ids[0]})
    Collections(lake).create("holders")
    Collections(lake).add("holders", [ids[1]])
    pin = Retentions(lake).pin([ids[2]], owner_id="release-1")
    box, mask = _annotate(
        lake,
        {"asset_id": ids[3], "kind": "bbox", "bbox": (1.0, 1.0, 2.0, 2.0)},
        {"datum_id": datum.datum_id, "kind": "mask", "mask_asset_id": ids[4]},
    )
    pins = lake.snapshot().pins
    for i, holder in enumerate(
        [
            f"datum {datum.datum_id}",
            f"collection item .*/{ids[1]}",
            f"retention {pin['retention_id'][0]}",
            f"annotation record {box}",
            f"annotation record {mask}",
        ]
    ):
        with pytest.raises(InUseError, match=f"{ids[i]} by {holder}"):
            assets.delete([ids[i], ids[5]])
    with pytest.raises(InUseError) as err:
        assets.delete(ids)
    assert sorted(err.value.details["holders"]) == sorted(ids[:5])
    assert lake.snapshot().pins == pins

    assets.delete([ids[5]], by="ops")
    assert assets.exists(ids) == [True] * 5 + [False]
    history = Aliases(lake).history("d/5")
    assert history["action"].to_pylist() == ["set", "remove"]
    assert history["previous_asset_id"][1].as_py() == ids[5]
    with pytest.raises(AliasNotFoundError):
        Aliases(lake).resolve("d/5")

    lake.commit([Delete("annotation_records", f"annotation_id IN ('{box}', '{mask}')")])
    Datums(lake).delete([datum.datum_id])
    Collections(lake).remove("holders", [ids[1]])
    Retentions(lake).unpin(pin["retention_id"])
    assets.delete(ids[:5])
    assert assets.count() == 0 and lake.snapshot().count("aliases") == 0
    assert lake.objects.get(StorageRef(**rows["storage"][0].as_py())) == b"p0"  # bytes stay


@pytest.mark.slow
def test_add_many_100k_assets_in_one_call(tmp_path):
    lake = lakecore.connect(tmp_path / "lake")
    rows = Assets(lake).add_many([i.to_bytes(4, "little") for i in range(100_000)], kind="blob")
    assert rows.num_rows == 100_000 and Assets(lake).count() == 100_000
