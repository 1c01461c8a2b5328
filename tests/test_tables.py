"""Every entity model round-trips through its Lance table (hypothesis), and table specs hold."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lakecore
import schemas as S
from lakecore.errors import SchemaError
from lakecore.tables import Append, Upsert, entity_specs, from_arrow, layout, to_arrow

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
ident = st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True)
f32 = st.floats(-1e6, 1e6, allow_nan=False, width=32)
pos32 = st.floats(0, 1e6, allow_nan=False, width=32)
when = st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)).map(
    lambda d: d.replace(microsecond=d.microsecond)
)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ident, inner, max_size=3),
    max_leaves=6,
)
meta = st.dictionaries(ident, json_value, max_size=4)
sha = st.binary(max_size=16).map(lambda b: hashlib.sha256(b).hexdigest())


@st.composite
def storage_ref(draw, digest=None, size=None):  # type: ignore[no-untyped-def]
    digest = digest or draw(sha)
    return S.StorageRef(
        mount=draw(st.sampled_from(["lake", "raw"])),
        key=f"blob/{digest}",
        sha256=digest,
        size=size if size is not None else draw(st.integers(0, 2**40)),
    )


@st.composite
def assets(draw):  # type: ignore[no-untyped-def]
    digest, size = draw(sha), draw(st.integers(0, 2**40))
    ref = draw(storage_ref(digest, size))
    return S.Asset(
        kind=draw(st.sampled_from(list(S.AssetKind))),
        media_type="image/png",
        sha256=digest,
        size_bytes=size,
        storage=ref,
        replicas=[ref],
        width=draw(st.none() | st.integers(0, 10_000)),
        height=draw(st.none() | st.integers(0, 10_000)),
        metadata=draw(meta),
        created_at=draw(when),
        updated_at=draw(when),
        created_by=draw(st.none() | text),
    )


ring = st.integers(3, 6).flatmap(lambda n: st.lists(f32, min_size=2 * n, max_size=2 * n))
GEOMETRY = {
    "classification": st.just({}),
    "bbox": st.tuples(f32, f32, pos32, pos32).map(lambda b: {"bbox": b}),
    "rotated_bbox": st.tuples(f32, f32, pos32, pos32, f32).map(lambda b: {"rotated_bbox": b}),
    "polygon": st.lists(
        st.builds(S.PolygonPart, exterior=ring, holes=st.lists(ring, max_size=2)),
        min_size=1,
        max_size=3,
    ).map(lambda p: {"polygon": p}),
    "polyline": st.integers(2, 5)
    .flatmap(lambda n: st.lists(f32, min_size=2 * n, max_size=2 * n))
    .map(lambda p: {"polyline": p}),
    "ellipse": st.tuples(f32, f32, pos32, pos32, f32).map(lambda e: {"ellipse": e}),
    "keypoints": st.integers(1, 5)
    .flatmap(
        lambda n: st.tuples(
            st.lists(f32, min_size=2 * n, max_size=2 * n),
            st.lists(st.integers(0, 2), min_size=n, max_size=n),
        )
    )
    .map(lambda kv: {"keypoints": kv[0], "keypoint_visibility": kv[1]}),
    "mask": st.one_of(
        st.builds(
            S.RLE,
            height=st.integers(1, 99),
            width=st.integers(1, 99),
            counts=st.from_regex(r"[0-9a-o]{1,10}", fullmatch=True),
        ).map(lambda r: {"mask_rle": r}),
        st.tuples(ident, st.none() | st.integers(0, 255)).map(
            lambda m: {"mask_asset_id": f"asset_{m[0]}", "mask_value": m[1]}
        ),
    ),
    "caption": text.filter(str.strip).map(lambda t: {"text": t}),
}


@st.composite
def records(draw):  # type: ignore[no-untyped-def]
    kind = draw(st.sampled_from(sorted(GEOMETRY)))
    return S.AnnotationRecord(
        set_id="annset_1",
        asset_id=f"asset_{draw(ident)}",
        datum_id=draw(st.none() | ident),
        kind=kind,
        label="" if kind == "caption" else draw(ident),
        label_id=draw(st.none() | st.integers(0, 1000)),
        score=draw(st.none() | st.floats(0, 1, width=32)),
        source_kind=draw(st.sampled_from(list(S.SourceKind))),
        source_name=draw(ident),
        source_version=draw(st.none() | ident),
        run_id=draw(st.none() | ident),
        attributes=draw(meta),
        metadata=draw(meta),
        created_at=draw(when),
        **draw(GEOMETRY[kind]),
    )


STRATEGIES = {
    "assets": assets(),
    "aliases": st.builds(
        S.Alias,
        alias=ident.map(lambda s: f"cam/{s}"),
        asset_id=ident.map(lambda s: f"asset_{s}"),
        created_at=when,
        updated_at=when,
    ),
    "alias_history": st.builds(
        S.AliasEvent,
        alias=ident,
        action=st.just(S.AliasAction.SET),
        asset_id=ident.map(lambda s: f"asset_{s}"),
        at=when,
    ),
    "collections": st.builds(S.Collection, name=ident, description=st.none() | text, metadata=meta),
    "collection_items": st.builds(
        S.CollectionItem,
        collection_id=ident.map(lambda s: f"collection_{s}"),
        asset_id=ident.map(lambda s: f"asset_{s}"),
        split=st.none() | ident,
    ),
    "asset_retentions": st.builds(
        S.AssetRetention,
        asset_id=ident.map(lambda s: f"asset_{s}"),
        owner_type=st.sampled_from(list(S.RetentionOwner)),
        owner_id=ident,
        expires_at=st.none() | when,
    ),
    "annotation_schemas": st.builds(
        S.AnnotationSchema,
        name=ident,
        task_type=st.sampled_from(list(S.TaskType)),
        allowed_kinds=st.lists(
            st.sampled_from(list(S.AnnotationKind)), min_size=1, max_size=3, unique=True
        ),
        labels=st.lists(ident, max_size=5, unique=True).map(
            lambda ls: [S.LabelDef(name=n, label_id=i) for i, n in enumerate(ls)]
        ),
        keypoint_names=st.just(["a", "b", "c"]),
        skeleton=st.just([(0, 1), (1, 2)]),
    ),
    "annotation_sets": st.builds(
        S.AnnotationSet,
        name=ident,
        purpose=st.sampled_from(list(S.AnnotationSetPurpose)),
        source_kind=st.sampled_from(list(S.SourceKind)),
        metadata=meta,
    ),
    "annotation_records": records(),
    "datums": st.builds(
        S.Datum,
        assets=st.dictionaries(
            st.sampled_from(["image", "depth", "mask"]),
            ident.map(lambda s: f"asset_{s}"),
            min_size=1,
        ),
        split=st.none() | st.sampled_from(["train", "val", "trainval"]),
        metadata=meta,
    ),
    "dataset_versions": st.builds(
        S.DatasetVersion,
        dataset_name=ident,
        version=ident,
        catalog_version=st.integers(0, 10**6),
        pins=st.dictionaries(ident, st.integers(0, 10**9), max_size=4),
        datum_count=st.integers(0, 10**9),
        stats=meta,
    ),
    "dataset_tags": st.builds(
        S.DatasetTag,
        dataset_name=ident,
        tag=st.just("prod"),
        version_id=st.none() | ident.map(lambda s: f"dsv_{s}"),
    ),
    "dataset_members": st.builds(
        S.DatasetMember,
        dataset_name=ident,
        datum_id=ident.map(lambda s: f"datum_{s}"),
        split=st.none() | st.sampled_from(["train", "val"]),
    ),
    "upload_sessions": st.builds(
        S.UploadSession,
        mount=st.just("lake"),
        staging_prefix=ident,
        expires_at=st.just(datetime.now(UTC) + timedelta(hours=1)),
    ),
    "replication_states": st.builds(
        S.ReplicationState,
        asset_id=ident.map(lambda s: f"asset_{s}"),
        target_lake_id=ident,
        origin_lake_id=ident,
        origin_asset_id=ident,
    ),
}


def test_every_table_has_a_strategy_key_and_index():
    specs = entity_specs()
    assert set(STRATEGIES) == set(specs)
    for name, spec in specs.items():
        assert spec.key is not None, name
        field = spec.schema.field(spec.key)
        assert field.metadata[b"lance-schema:unenforced-primary-key"] == b"true"
        if field.type == pa.string():  # random ids: stored uncompressed
            assert field.metadata[b"lance-encoding:compression"] == b"none"
        assert not field.nullable
        assert spec.indices[0] == (spec.key, "BTREE")


def test_token_columns_are_stored_uncompressed_and_others_are_not():
    members = layout(S.DatasetMember).schema
    raw = {f.name for f in members if (f.metadata or {}).get(b"lance-encoding:compression")}
    assert raw == {"member_id", "datum_id"}  # the key and the Token-marked column only
    records = layout(S.AnnotationRecord).schema
    assert records.field("label").metadata is None  # labels repeat: Lance compresses them


def test_a_delete_that_must_match_n_rows_fails_whole(lake):
    from lakecore.errors import CommitError
    from lakecore.tables import Delete

    assets = lake.assets.add_many([b"a", b"b", b"c"], kind="blob")
    snap = lake.snapshot()
    rows = snap.to_table("assets", columns=["asset_id"], with_row_id=True)
    listed = ",".join(str(r) for r in rows["_rowid"].to_pylist()[:2])
    with pytest.raises(CommitError, match="expected to delete 3 rows, 2 matched"):
        lake.commit([Delete("assets", f"_rowid IN ({listed})", expect=3)])
    assert lake.snapshot().pins == snap.pins  # nothing committed
    assert lake.assets.table().num_rows == 3
    lake.commit([Delete("assets", f"_rowid IN ({listed})", expect=2)])
    left = lake.assets.table()["asset_id"].to_pylist()
    kept = set(assets["asset_id"].to_pylist()) - set(rows["asset_id"].to_pylist()[:2])
    assert left == sorted(kept)


def test_bbox_is_fixed_size_float32():
    schema = layout(S.AnnotationRecord).schema
    assert schema.field("bbox").type == pa.list_(pa.float32(), 4)
    assert schema.field("metadata").type == pa.string()
    assert layout(S.Datum).schema.field("assets").type == pa.map_(pa.string(), pa.string())


@pytest.fixture(scope="module")
def shared_lake(tmp_path_factory):  # type: ignore[no-untyped-def]
    return lakecore.connect(tmp_path_factory.mktemp("tables") / "lake")


@pytest.mark.parametrize("table", sorted(STRATEGIES))
def test_roundtrip_through_lance(shared_lake, table):
    model = entity_specs()[table].model

    key = entity_specs()[table].key

    @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(STRATEGIES[table], min_size=1, max_size=5, unique_by=lambda m: getattr(m, key)))
    def check(rows):
        shared_lake.commit([Upsert(table, to_arrow(rows, model))])
        ids = [getattr(r, key) for r in rows]
        flt = f"{key} IN ({','.join(repr(i) for i in ids)})"
        back = from_arrow(shared_lake.table(table, filter=flt), model)
        assert sorted(back, key=lambda m: getattr(m, key)) == sorted(
            rows, key=lambda m: getattr(m, key)
        )

    check()


def test_rows_that_do_not_fit_are_refused(lake):
    good = to_arrow([S.Datum(assets={"image": "asset_1"})], S.Datum)
    with pytest.raises(SchemaError, match="missing \\['split'\\]"):
        lake.commit([Append("datums", good.drop_columns(["split"]))])
    wrong = good.set_column(good.schema.get_field_index("split"), "split", pa.array([1]))
    lake.commit([Append("datums", wrong)])  # castable ints become strings: "1"
    with pytest.raises(SchemaError, match="wrong types"):
        lake.commit([Append("datums", good.set_column(0, "datum_id", pa.array([[1]])))])


def test_reindex_policy_waits_for_a_share_of_the_indexed_rows(tmp_path, monkeypatch):
    """A commit refreshes indices once the unindexed tail is both large and a fair share of the
    indexed rows (so a growing table is not re-indexed from scratch every few commits)."""
    from lakecore.tables import write

    monkeypatch.setattr(write, "REINDEX_ROWS", 100)
    lake = lakecore.connect(tmp_path / "lake")

    def unindexed() -> int:
        lake.wait()  # the refresh is a background commit right after the write
        ds = lake.snapshot().dataset("datums")
        return int(ds.stats.index_stats("split_idx")["num_unindexed_rows"])

    ids = lake.assets.add_many([b"x"], kind="blob")["asset_id"].to_pylist()
    rows = [{"assets": {"image": ids[0]}, "split": "train"}]
    lake.datums.add_many(rows * 99)
    assert unindexed() == 99  # below REINDEX_ROWS
    lake.datums.add_many(rows * 1)
    assert unindexed() == 0  # 100 rows: folded in
    lake.datums.add_many(rows * 200)
    assert unindexed() == 0  # 200 >= max(100, 0.25 * 100)
    lake.datums.add_many(rows * 60)
    assert unindexed() == 60  # 60 < 100
    lake.datums.add_many(rows * 50)
    assert unindexed() == 0  # 110 >= max(100, 0.25 * 300)
    monkeypatch.setattr(write, "REINDEX_ROWS", 10)
    lake.datums.add_many(rows * 50)
    assert unindexed() == 50  # 50 >= 10 but < 0.25 * 410
    lake.datums.add_many(rows * 60)
    assert unindexed() == 0  # 110 >= 0.25 * 410
    assert lake.datums.count("split = 'train'") == 520


def test_refreshes_add_index_segments_then_merge_them(lake, monkeypatch):
    """Each refresh indexes only the new rows, as one more segment per index; at MAX_SEGMENTS a
    refresh merges them. Lookups through the indices see every row either way."""
    from lakecore.tables import write

    monkeypatch.setattr(write, "REINDEX_ROWS", 10)
    monkeypatch.setattr(write, "REINDEX_FRACTION", 0.0)
    monkeypatch.setattr(write, "MAX_SEGMENTS", 3)
    asset = lake.assets.add_many([b"x"], kind="blob")["asset_id"][0].as_py()

    def stats() -> tuple[int, int]:
        lake.wait()
        s = lake.snapshot().dataset("datums").stats.index_stats("datum_id_idx")
        return int(s["num_segments"]), int(s["num_unindexed_rows"])

    added = []
    for batch, expected in enumerate([(2, 0), (3, 0), (1, 0), (2, 0)]):
        split = "train" if batch % 2 else "val"
        rows = lake.datums.add_many([{"assets": {"image": asset}, "split": split}] * 10)
        added += rows["datum_id"].to_pylist()
        assert stats() == expected  # the first build, then one segment per refresh, merged at 3
        assert lake.datums.count("split = 'train'") == 10 * ((batch + 1) // 2)
        got = lake.datums.get_many(added[::7])["datum_id"].to_pylist()
        assert got == added[::7]
    lake.commit([write.Reindex("datums", merge=True)])
    assert stats() == (1, 0)
    assert lake.datums.count() == 40


def test_optimize_twice_and_on_an_empty_lake(tmp_path):
    """A refresh with nothing to fold in still commits exactly one version per table (before,
    ``lake.optimize()`` of an indexed lake kept failing with CommitConflictError)."""
    lake = lakecore.connect(tmp_path / "lake")
    first = lake.optimize()
    lake.assets.add_many([b"a", b"b"], kind="blob")
    second = lake.optimize()
    third = lake.optimize()
    assert set(first) == set(second) == set(third) and all(v > 0 for v in third.values())
    assert lake.assets.count("kind = 'blob'") == 2


def test_optimize_compacts_and_merges_indices_in_one_commit(lake):
    for i in range(5):
        lake.assets.add_many([f"payload {i}-{j}".encode() for j in range(3)], kind="blob")
    before = lake.snapshot()
    assert len(before.dataset("assets").get_fragments()) >= 5
    rows = before.to_table("assets").sort_by("asset_id")
    lake.optimize()
    after = lake.snapshot()
    assert after.catalog_version == before.catalog_version + 1
    ds = after.dataset("assets")
    assert len(ds.get_fragments()) == 1
    assert after.to_table("assets").sort_by("asset_id").equals(rows)
    for index in ds.describe_indices():  # every row indexed, one segment per index
        stats = ds.stats.index_stats(index.name)
        assert (stats["num_unindexed_rows"], len(stats["indices"])) == (0, 1), index.name
    one = rows["asset_id"][7].as_py()
    assert lake.assets.get(one).asset_id == one
