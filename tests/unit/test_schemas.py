"""Unit tests for the pure ``schemas`` package (models, validation, round trips)."""

from __future__ import annotations

import ast
import enum
import math
import sys
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

import schemas
from schemas import (
    RLE,
    TABLE_MODELS,
    Alias,
    AliasEvent,
    AnnotationKind,
    AnnotationRecord,
    AnnotationSchema,
    AnnotationSet,
    Asset,
    AssetRetention,
    AttributeRule,
    Collection,
    CollectionItem,
    DatasetMember,
    DatasetTag,
    DatasetVersion,
    Datum,
    LabelDef,
    LakeInfo,
    LakeModel,
    MountConfig,
    PolygonPart,
    PrimaryKey,
    Provenance,
    ReplicationState,
    SourceKind,
    StorageRef,
    UploadSession,
)

SHA = "ab" * 32
OTHER_SHA = "cd" * 32
SCHEMAS_DIR = Path(schemas.__file__).parent


# --------------------------------------------------------------------------- builders


def ref(sha: str = SHA, size: int = 10, mount: str = "lake", key: str = "ab/cdef") -> StorageRef:
    return StorageRef(mount=mount, key=key, sha256=sha, size=size)


def asset(**kw: Any) -> Asset:
    data: dict[str, Any] = {
        "kind": "image",
        "media_type": "image/jpeg",
        "sha256": SHA,
        "size_bytes": 10,
        "storage": ref(),
    }
    return Asset(**(data | kw))


GEOMETRY: dict[AnnotationKind, dict[str, Any]] = {
    AnnotationKind.CLASSIFICATION: {},
    AnnotationKind.BBOX: {"bbox": (1.0, 2.0, 3.0, 4.0)},
    AnnotationKind.ROTATED_BBOX: {"rotated_bbox": (5.0, 5.0, 2.0, 1.0, 30.0)},
    AnnotationKind.POLYGON: {"polygon": [{"exterior": [0, 0, 4, 0, 4, 4]}]},
    AnnotationKind.POLYLINE: {"polyline": [0, 0, 1, 1]},
    AnnotationKind.ELLIPSE: {"ellipse": (5.0, 5.0, 2.0, 1.0, 0.0)},
    AnnotationKind.KEYPOINTS: {"keypoints": [1, 2, 3, 4], "keypoint_visibility": [2, 1]},
    AnnotationKind.MASK: {"mask_rle": {"height": 4, "width": 4, "counts": "04L4"}},
    AnnotationKind.CAPTION: {"text": "a cat on a mat"},
}


def record(kind: AnnotationKind | str = AnnotationKind.BBOX, **kw: Any) -> AnnotationRecord:
    kind = AnnotationKind(kind)
    data: dict[str, Any] = {
        "set_id": "annset_1",
        "asset_id": "asset_1",
        "kind": kind,
        "label": "" if kind is AnnotationKind.CAPTION else "cat",
        "source_kind": "human",
        "source_name": "alice",
        **GEOMETRY[kind],
    }
    return AnnotationRecord(**(data | kw))


def later(hours: int = 1) -> datetime:
    return datetime.now(UTC) + timedelta(hours=hours)


MINIMAL: dict[type[LakeModel], Callable[[], LakeModel]] = {
    StorageRef: ref,
    MountConfig: lambda: MountConfig(kind="folder", uri="s3://bucket/prefix"),
    LakeInfo: LakeInfo,
    Asset: asset,
    Alias: lambda: Alias(alias="cams/front/0001.jpg", asset_id="asset_1"),
    AliasEvent: lambda: AliasEvent(alias="a/b", action="set", asset_id="asset_1"),
    Collection: lambda: Collection(name="import-2024-05"),
    CollectionItem: lambda: CollectionItem(collection_id="collection_1", asset_id="asset_1"),
    AssetRetention: lambda: AssetRetention(
        asset_id="asset_1", owner_type="manual_pin", owner_id="bob"
    ),
    LabelDef: lambda: LabelDef(name="cat"),
    AttributeRule: lambda: AttributeRule(name="occluded", type="bool"),
    AnnotationSchema: lambda: AnnotationSchema(
        name="coco", task_type="detection", allowed_kinds=["bbox"]
    ),
    AnnotationSet: lambda: AnnotationSet(name="gt", purpose="ground_truth", source_kind="human"),
    PolygonPart: lambda: PolygonPart(exterior=[0, 0, 1, 0, 1, 1]),
    RLE: lambda: RLE(height=2, width=2, counts="04"),
    Provenance: lambda: Provenance(kind="model", name="yolo"),
    AnnotationRecord: record,
    Datum: lambda: Datum(assets={"image": "asset_1"}),
    DatasetVersion: lambda: DatasetVersion(dataset_name="coco", version="v1", catalog_version=0),
    DatasetTag: lambda: DatasetTag(dataset_name="coco", tag="prod", version_id="dsv_1"),
    DatasetMember: lambda: DatasetMember(dataset_name="coco", datum_id="datum_1"),
    UploadSession: lambda: UploadSession(
        mount="lake", staging_prefix="_staging/upload_1", expires_at=later()
    ),
    ReplicationState: lambda: ReplicationState(
        asset_id="asset_1",
        target_lake_id="lake_b",
        origin_lake_id="lake_a",
        origin_asset_id="asset_1",
    ),
}


def _public_models() -> set[type[LakeModel]]:
    return {
        obj
        for name in schemas.__all__
        if isinstance(obj := getattr(schemas, name), type)
        and issubclass(obj, LakeModel)
        and obj is not LakeModel
    }


# --------------------------------------------------------------------------- structure


def test_minimal_table_covers_every_public_model() -> None:
    assert set(MINIMAL) == _public_models()


@pytest.mark.parametrize("model", list(MINIMAL), ids=lambda m: m.__name__)
def test_minimal_construct_and_frozen(model: type[LakeModel]) -> None:
    instance = MINIMAL[model]()
    assert isinstance(instance, model)
    first_field = next(iter(model.model_fields))
    with pytest.raises(ValidationError, match="frozen"):
        setattr(instance, first_field, getattr(instance, first_field))
    assert model.model_validate(instance.model_dump()) == instance
    assert model.model_validate_json(instance.model_dump_json()) == instance


@pytest.mark.parametrize("model", list(MINIMAL), ids=lambda m: m.__name__)
def test_extra_fields_are_rejected(model: type[LakeModel]) -> None:
    data = MINIMAL[model]().model_dump() | {"no_such_field": 1}
    with pytest.raises(ValidationError, match="no_such_field"):
        model.model_validate(data)


def test_table_models_order_and_names() -> None:
    assert [m.__name__ for m in TABLE_MODELS] == [
        "Asset",
        "Alias",
        "AliasEvent",
        "Collection",
        "CollectionItem",
        "AssetRetention",
        "AnnotationSchema",
        "AnnotationSet",
        "AnnotationRecord",
        "Datum",
        "DatasetVersion",
        "DatasetTag",
        "DatasetMember",
        "UploadSession",
        "ReplicationState",
    ]
    assert [m.__table__ for m in TABLE_MODELS] == [  # type: ignore[attr-defined]
        "assets",
        "aliases",
        "alias_history",
        "collections",
        "collection_items",
        "asset_retentions",
        "annotation_schemas",
        "annotation_sets",
        "annotation_records",
        "datums",
        "dataset_versions",
        "dataset_tags",
        "dataset_members",
        "upload_sessions",
        "replication_states",
    ]
    non_tables = _public_models() - set(TABLE_MODELS)
    assert all(not hasattr(m, "__table__") for m in non_tables)
    assert all("__table__" not in m.model_fields for m in TABLE_MODELS)


@pytest.mark.parametrize("model", TABLE_MODELS, ids=lambda m: m.__name__)
def test_exactly_one_primary_key(model: type[LakeModel]) -> None:
    keys = [
        name
        for name, info in model.model_fields.items()
        if any(isinstance(m, PrimaryKey) for m in info.metadata)
    ]
    assert len(keys) == 1, keys
    assert model.model_fields[keys[0]].annotation is str


@pytest.mark.parametrize(
    ("model", "field", "prefix"),
    [
        (Asset, "asset_id", "asset_"),
        (AliasEvent, "event_id", "aliasevt_"),
        (Collection, "collection_id", "collection_"),
        (AssetRetention, "retention_id", "retention_"),
        (AnnotationSchema, "schema_id", "annschema_"),
        (AnnotationSet, "set_id", "annset_"),
        (AnnotationRecord, "annotation_id", "ann_"),
        (Datum, "datum_id", "datum_"),
        (DatasetVersion, "version_id", "dsv_"),
        (DatasetTag, "event_id", "dstag_"),
        (UploadSession, "session_id", "upload_"),
        (LakeInfo, "lake_id", "lake_"),
    ],
)
def test_ids_default_with_prefix(model: type[LakeModel], field: str, prefix: str) -> None:
    a, b = MINIMAL[model](), MINIMAL[model]()
    value = getattr(a, field)
    assert value.startswith(prefix) and len(value) == len(prefix) + 32
    assert value != getattr(b, field)


_SCALARS = (str, int, float, bool, datetime)


def _check_type(tp: Any, where: str) -> None:
    """Fail unless ``tp`` uses only the field-type conventions the Arrow mapper supports."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        _check_type(args[0], where)
    elif origin in (types.UnionType, typing.Union):
        rest = [a for a in args if a is not type(None)]
        assert len(rest) == 1 and len(args) == 2, f"{where}: only `X | None` unions allowed"
        _check_type(rest[0], where)
    elif origin is list:
        _check_type(args[0], where)
    elif origin is tuple:
        assert Ellipsis not in args and len(set(args)) == 1, f"{where}: fixed homogeneous tuple"
        _check_type(args[0], where)
    elif origin is dict:
        assert args[0] is str and args[1] in (str, int, Any), f"{where}: dict[str, str|int|Any]"
    elif isinstance(tp, type) and issubclass(tp, enum.StrEnum | LakeModel):
        pass
    else:
        assert tp in _SCALARS, f"{where}: unsupported field type {tp!r}"


@pytest.mark.parametrize(
    "model",
    [m for m in MINIMAL if m is not LakeInfo],  # LakeInfo is lake.json, not a table row
    ids=lambda m: m.__name__,
)
def test_field_types_follow_conventions(model: type[LakeModel]) -> None:
    hints = typing.get_type_hints(model, include_extras=True)
    for name in model.model_fields:
        _check_type(hints[name], f"{model.__name__}.{name}")


def test_schemas_imports_only_pydantic_and_stdlib() -> None:
    allowed = set(sys.stdlib_module_names) | {"pydantic", "pydantic_core", "schemas"}
    for path in SCHEMAS_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = [node.module.split(".")[0]]
            else:
                continue
            assert set(roots) <= allowed, f"{path.name} imports {roots}"


# --------------------------------------------------------------------------- validation


def _make(model: type[LakeModel], **overrides: Any) -> Callable[[], object]:
    return lambda: model.model_validate(MINIMAL[model]().model_dump() | overrides)


REJECTIONS: list[tuple[str, Callable[[], object], str]] = [
    ("bbox w<0", lambda: record("bbox", bbox=(0, 0, -1, 2)), "bbox"),
    ("rotated h<0", lambda: record("rotated_bbox", rotated_bbox=(0, 0, 1, -1, 0)), "rotated_bbox"),
    ("ellipse rx<0", lambda: record("ellipse", ellipse=(0, 0, -1, 1, 0)), "ellipse"),
    (
        "polygon ring 2 points",
        lambda: record("polygon", polygon=[{"exterior": [0, 0, 1, 1]}]),
        "exterior",
    ),
    (
        "polygon hole 2 points",
        lambda: record("polygon", polygon=[{"exterior": [0, 0, 4, 0, 4, 4], "holes": [[1, 1]]}]),
        "holes",
    ),
    ("polygon no parts", lambda: record("polygon", polygon=[]), "polygon"),
    ("polyline odd count", lambda: record("polyline", polyline=[0, 0, 1]), "polyline"),
    ("polyline one point", lambda: record("polyline", polyline=[0, 0]), "polyline"),
    ("keypoints odd count", lambda: record("keypoints", keypoints=[1, 2, 3]), "keypoints"),
    (
        "visibility length",
        lambda: record("keypoints", keypoints=[1, 2, 3, 4], keypoint_visibility=[2]),
        "keypoint_visibility",
    ),
    (
        "visibility value",
        lambda: record("keypoints", keypoints=[1, 2], keypoint_visibility=[3]),
        "keypoint_visibility",
    ),
    ("bbox kind without bbox", lambda: record("bbox", bbox=None), "missing field bbox"),
    (
        "bbox kind with polyline",
        lambda: record("bbox", polyline=[0, 0, 1, 1]),
        "unexpected field.*polyline",
    ),
    (
        "classification with bbox",
        lambda: record("classification", bbox=(0, 0, 1, 1)),
        "'classification'.*unexpected field.*bbox",
    ),
    (
        "caption with bbox",
        lambda: record("caption", bbox=(0, 0, 1, 1)),
        "'caption'.*unexpected field.*bbox",
    ),
    ("mask without data", lambda: record("mask", mask_rle=None), "mask_rle or mask_asset_id"),
    (
        "mask with both",
        lambda: record("mask", mask_asset_id="asset_m"),
        "mask_rle or mask_asset_id, not both",
    ),
    ("mask_value without asset", lambda: record("mask", mask_value=3), "mask_value"),
    ("caption blank text", lambda: record("caption", text="  "), "text"),
    ("label empty", lambda: record("bbox", label=""), "label"),
    ("score NaN", lambda: record(score=math.nan), "score"),
    ("score inf", lambda: record(score=math.inf), "score"),
    ("bbox NaN", lambda: record("bbox", bbox=(math.nan, 0, 1, 1)), "bbox"),
    ("polyline inf", lambda: record("polyline", polyline=[0, 0, math.inf, 1]), "polyline"),
    ("float32 overflow", lambda: record("bbox", bbox=(1e39, 0, 1, 1)), "bbox"),
    ("no asset or datum", lambda: record(asset_id=None), "asset_id and/or datum_id"),
    ("rle empty counts", lambda: RLE(height=1, width=1, counts=""), "counts"),
    ("rle bad counts", lambda: RLE(height=1, width=1, counts="[1, 2]"), "counts"),
    ("rle zero height", lambda: RLE(height=0, width=1, counts="1"), "height"),
    ("sha256 not hex", lambda: ref(sha="zz" * 32), "sha256"),
    ("sha256 short", lambda: ref(sha="ab"), "sha256"),
    ("asset sha256 not hex", lambda: asset(sha256="g" * 64), "sha256"),
    ("storage size < 0", lambda: ref(size=-1), "size"),
    ("mount bad chars", lambda: ref(mount="my mount"), "mount"),
    ("key empty", lambda: ref(key=""), "key"),
    ("key traversal", lambda: ref(key="a/../../etc/passwd"), "key"),
    ("key absolute", lambda: ref(key="/abs"), "key"),
    ("storage sha mismatch", lambda: asset(storage=ref(sha=OTHER_SHA)), "storage.sha256"),
    ("storage size mismatch", lambda: asset(storage=ref(size=11)), "storage.size"),
    ("replica sha mismatch", lambda: asset(replicas=[ref(sha=OTHER_SHA)]), r"replicas\[0\]"),
    ("media_type no slash", lambda: asset(media_type="jpeg"), "media_type"),
    ("asset width < 0", lambda: asset(width=-1), "width"),
    ("asset size < 0", lambda: asset(size_bytes=-1), "size_bytes"),
    ("subject half set", lambda: asset(subject_kind="asset"), "subject_id"),
    ("asset_id prefix", lambda: asset(asset_id="img_1"), "asset_id"),
    ("naive datetime", lambda: asset(created_at=datetime(2024, 1, 1)), "created_at"),
    ("metadata non-json", lambda: asset(metadata={"x": object()}), "metadata"),
    ("metadata NaN", lambda: asset(metadata={"x": [math.nan]}), "metadata"),
    ("alias with space", lambda: Alias(alias="my alias", asset_id="asset_1"), "alias"),
    ("alias asset_ prefix", lambda: Alias(alias="asset_123", asset_id="asset_1"), "asset_"),
    ("alias leading slash", lambda: Alias(alias="/a/b", asset_id="asset_1"), "alias"),
    ("alias trailing slash", lambda: Alias(alias="a/b/", asset_id="asset_1"), "alias"),
    ("alias double slash", lambda: Alias(alias="a//b", asset_id="asset_1"), "alias"),
    ("alias too long", lambda: Alias(alias="a" * 513, asset_id="asset_1"), "alias"),
    ("alias empty", lambda: Alias(alias="", asset_id="asset_1"), "alias"),
    ("alias control char", lambda: Alias(alias="a\x00b", asset_id="asset_1"), "alias"),
    ("alias event remove with asset", _make(AliasEvent, action="remove"), "asset_id"),
    ("alias event repoint no prev", _make(AliasEvent, action="repoint"), "previous_asset_id"),
    ("datum split space", _make(Datum, split="bad split"), "split"),
    ("datum no roles", _make(Datum, assets={}), "assets"),
    ("datum bad role", _make(Datum, assets={"Image": "asset_1"}), "role"),
    ("datum blank asset", _make(Datum, assets={"image": " "}), "asset id"),
    ("item split space", _make(CollectionItem, split="bad split"), "split"),
    (
        "item_id mismatch",
        lambda: CollectionItem(item_id="x", collection_id="collection_1", asset_id="asset_1"),
        "item_id",
    ),
    ("collection name empty", lambda: Collection(name=" "), "name"),
    ("collection name long", lambda: Collection(name="n" * 257), "name"),
    ("version latest", _make(DatasetVersion, version="latest"), "version"),
    ("version whitespace", _make(DatasetVersion, version="v 1"), "version"),
    ("version empty", _make(DatasetVersion, version=""), "version"),
    ("dataset name bad", _make(DatasetVersion, dataset_name="-coco"), "dataset_name"),
    ("catalog_version < 0", _make(DatasetVersion, catalog_version=-1), "catalog_version"),
    ("pins negative", _make(DatasetVersion, pins={"assets": -1}), "pins"),
    ("datum_count < 0", _make(DatasetVersion, datum_count=-1), "datum_count"),
    ("tag latest", _make(DatasetTag, tag="latest"), "tag"),
    ("folder mount no uri", lambda: MountConfig(kind="folder"), "uri"),
    ("lake mount with uri", lambda: MountConfig(kind="lake", uri="/tmp/x"), "uri"),
    ("default mount missing", lambda: LakeInfo(default_mount="s3"), "default_mount"),
    ("label names dup", _make(AnnotationSchema, labels=[{"name": "a"}, {"name": "a"}]), "label"),
    (
        "label ids dup",
        _make(
            AnnotationSchema, labels=[{"name": "a", "label_id": 1}, {"name": "b", "label_id": 1}]
        ),
        "label_ids",
    ),
    ("no allowed kinds", _make(AnnotationSchema, allowed_kinds=[]), "allowed_kinds"),
    ("require w/o allow", _make(AnnotationSchema, require_scores=True), "allow_scores"),
    ("score_min > max", _make(AnnotationSchema, score_min=2.0), "score_min"),
    (
        "skeleton out of range",
        _make(AnnotationSchema, keypoint_names=["a", "b"], skeleton=[(0, 2)]),
        "skeleton",
    ),
    ("enum attr no choices", lambda: AttributeRule(name="c", type="enum"), "choices"),
    ("choices on string", lambda: AttributeRule(name="c", choices=["x"]), "choices"),
    (
        "attribute names dup",
        _make(AnnotationSchema, attributes=[{"name": "a"}, {"name": "a"}]),
        "attribute names",
    ),
    ("upload expires early", _make(UploadSession, expires_at=later(-1)), "expires_at"),
    ("upload completed no storage", _make(UploadSession, status="completed"), "storage"),
    (
        "upload sha mismatch",
        _make(UploadSession, expected_sha256=OTHER_SHA, storage=ref().model_dump()),
        "expected_sha256",
    ),
    (
        "state_id mismatch",
        _make(ReplicationState, state_id="asset_1@lake_c"),
        "state_id",
    ),
    ("verified without time", _make(ReplicationState, payload_status="verified"), "verified_at"),
]


@pytest.mark.parametrize(
    ("build", "needle"),
    [pytest.param(build, needle, id=name) for name, build, needle in REJECTIONS],
)
def test_rejects_bad_input(build: Callable[[], object], needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        build()


# --------------------------------------------------------------------------- behaviour


def test_every_kind_constructs_and_other_geometry_is_none() -> None:
    geometry = {"bbox", "rotated_bbox", "polygon", "polyline", "ellipse", "keypoints"}
    geometry |= {"keypoint_visibility", "mask_rle", "mask_asset_id", "mask_value", "text"}
    for kind, fields in GEOMETRY.items():
        rec = record(kind)
        assert {f for f in geometry if getattr(rec, f) is not None} == set(fields)


def test_mask_by_asset_with_value() -> None:
    rec = record("mask", mask_rle=None, mask_asset_id="asset_m", mask_value=7)
    assert rec.mask_asset_id == "asset_m" and rec.mask_value == 7


def test_keypoint_visibility_defaults_to_visible() -> None:
    rec = record("keypoints", keypoint_visibility=None, keypoints=[1, 2, 3, 4, 5, 6])
    assert rec.keypoint_visibility == [2, 2, 2]


def test_provenance_expands_into_flat_fields() -> None:
    base = record().model_dump(exclude={"source_kind", "source_name"})
    prov = Provenance(kind=SourceKind.MODEL, name="yolov8n", version="8.1", run_id="run_7")
    for source in (prov, prov.model_dump()):
        rec = AnnotationRecord.model_validate(base | {"source": source, "score": 0.5})
        assert rec.source_kind is SourceKind.MODEL
        assert (rec.source_name, rec.source_version, rec.run_id) == ("yolov8n", "8.1", "run_7")
        assert "source" not in rec.model_dump()


def test_provenance_and_flat_fields_conflict() -> None:
    with pytest.raises(ValidationError, match="not both"):
        record(source=Provenance(kind="human", name="bob"))


def test_collection_item_id_is_computed() -> None:
    item = CollectionItem(collection_id="collection_1", asset_id="asset_9")
    assert item.item_id == "collection_1/asset_9"
    explicit = CollectionItem(
        item_id="collection_1/asset_9",
        collection_id="collection_1",
        asset_id="asset_9",
        added_at=item.added_at,
    )
    assert explicit == item


def test_replication_state_id_is_computed() -> None:
    state = MINIMAL[ReplicationState]()
    assert isinstance(state, ReplicationState)
    assert state.state_id == "asset_1@lake_b"


def test_sha256_uppercase_is_lowered_and_qualified_key() -> None:
    r = ref(sha=SHA.upper())
    assert r.sha256 == SHA
    assert r.qualified_key == "lake/ab/cdef"
    assert asset(sha256=SHA.upper()).sha256 == SHA


def test_datetimes_are_normalised_to_utc() -> None:
    cet = timezone(timedelta(hours=1))
    a = asset(created_at=datetime(2024, 1, 1, 13, 0, tzinfo=cet))
    assert a.created_at == datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    assert a.created_at.utcoffset() == timedelta(0)


def test_json_dicts_normalise_tuples() -> None:
    a = asset(metadata={"shape": (3, 4), "nested": {"ok": [True, None, 1.5, "x"]}})
    assert a.metadata == {"shape": [3, 4], "nested": {"ok": [True, None, 1.5, "x"]}}


def test_dataset_version_ref_and_split() -> None:
    version = DatasetVersion(
        dataset_name="coco", version="2024.05", catalog_version=3, pins={"datums": 4}
    )
    assert version.ref == "coco@2024.05"
    assert Datum(assets={"image": "asset_1"}, split="trainval").split == "trainval"


def test_lake_info_defaults() -> None:
    info = LakeInfo()
    assert info.default_mount == "lake" and info.mounts["lake"].kind == "lake"
    custom = LakeInfo(
        default_mount="s3",
        mounts={"lake": {"kind": "lake"}, "s3": {"kind": "folder", "uri": "s3://b/p"}},
    )
    assert LakeInfo.model_validate_json(custom.model_dump_json()) == custom


def test_schema_helpers() -> None:
    schema = AnnotationSchema(
        name="coco",
        task_type="keypoints",
        allowed_kinds=["keypoints", "bbox"],
        labels=[LabelDef(name="person", label_id=1), LabelDef(name="dog", label_id=2)],
        allow_scores=True,
        keypoint_names=["nose", "left_eye"],
        skeleton=[(0, 1)],
    )
    assert schema.label_names() == ["person", "dog"]
    assert schema.score_in_range(0.5) and not schema.score_in_range(math.nan)


def test_upload_session_token_and_repr() -> None:
    a, b = MINIMAL[UploadSession](), MINIMAL[UploadSession]()
    assert isinstance(a, UploadSession) and isinstance(b, UploadSession)
    assert len(a.finalize_token) == 32 and a.finalize_token != b.finalize_token
    assert a.finalize_token not in repr(a)


# --------------------------------------------------------------------------- round trips

f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
f32_pos = st.floats(min_value=0, width=32, allow_nan=False, allow_infinity=False)
text = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
json_leaf = st.none() | st.booleans() | st.integers() | f32 | text
json_dict = st.dictionaries(text, st.recursive(json_leaf, lambda c: st.lists(c, max_size=3)))
when = st.datetimes(timezones=st.just(UTC))


def _flat(min_points: int) -> st.SearchStrategy[list[float]]:
    return st.lists(st.tuples(f32, f32), min_size=min_points, max_size=8).map(
        lambda pts: [c for p in pts for c in p]
    )


ring = _flat(3)
part = st.builds(PolygonPart, exterior=ring, holes=st.lists(ring, max_size=2))
rle = st.builds(
    RLE,
    height=st.integers(1, 4096),
    width=st.integers(1, 4096),
    counts=st.text(alphabet=[chr(c) for c in range(48, 112)], min_size=1, max_size=30),
)
keypoints = st.integers(1, 17).flatmap(
    lambda n: st.tuples(
        st.lists(f32, min_size=2 * n, max_size=2 * n),
        st.lists(st.sampled_from([0, 1, 2]), min_size=n, max_size=n),
    )
)

KIND_GEOMETRY: dict[AnnotationKind, st.SearchStrategy[dict[str, Any]]] = {
    AnnotationKind.CLASSIFICATION: st.just({}),
    AnnotationKind.BBOX: st.tuples(f32, f32, f32_pos, f32_pos).map(lambda b: {"bbox": b}),
    AnnotationKind.ROTATED_BBOX: st.tuples(f32, f32, f32_pos, f32_pos, f32).map(
        lambda b: {"rotated_bbox": b}
    ),
    AnnotationKind.POLYGON: st.lists(part, min_size=1, max_size=3).map(lambda p: {"polygon": p}),
    AnnotationKind.POLYLINE: _flat(2).map(lambda p: {"polyline": p}),
    AnnotationKind.ELLIPSE: st.tuples(f32, f32, f32_pos, f32_pos, f32).map(
        lambda e: {"ellipse": e}
    ),
    AnnotationKind.KEYPOINTS: keypoints.map(
        lambda kv: {"keypoints": kv[0], "keypoint_visibility": kv[1]}
    ),
    AnnotationKind.MASK: rle.map(lambda r: {"mask_rle": r})
    | st.tuples(label, st.none() | st.integers(0, 255)).map(
        lambda t: {"mask_rle": None, "mask_asset_id": "asset_" + t[0], "mask_value": t[1]}
    ),
    AnnotationKind.CAPTION: text.filter(str.strip).map(lambda t: {"text": t}),
}


@st.composite
def annotation_records(draw: st.DrawFn) -> AnnotationRecord:
    kind = draw(st.sampled_from(list(AnnotationKind)))
    return AnnotationRecord(
        set_id=draw(label),
        asset_id="asset_" + draw(label),
        datum_id=draw(st.none() | label),
        kind=kind,
        label=draw(label),
        label_id=draw(st.none() | st.integers(-(2**31), 2**31 - 1)),
        score=draw(st.none() | f32),
        source_kind=draw(st.sampled_from(list(SourceKind))),
        source_name=draw(label),
        source_version=draw(st.none() | text),
        attributes=draw(json_dict),
        metadata=draw(json_dict),
        created_at=draw(when),
        **draw(KIND_GEOMETRY[kind]),
    )


@st.composite
def assets(draw: st.DrawFn) -> Asset:
    sha = draw(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64))
    size = draw(st.integers(0, 2**40))
    refs = st.builds(
        StorageRef,
        mount=st.sampled_from(["lake", "s3", "local_1"]),
        key=label,
        sha256=st.just(sha),
        size=st.just(size),
    )
    return Asset(
        kind=draw(st.sampled_from(list(schemas.AssetKind))),
        media_type=draw(st.sampled_from(["image/jpeg", "image/png", "video/mp4"])),
        sha256=sha,
        size_bytes=size,
        width=draw(st.none() | st.integers(0, 2**31 - 1)),
        height=draw(st.none() | st.integers(0, 2**31 - 1)),
        storage=draw(refs),
        replicas=draw(st.lists(refs, max_size=2)),
        metadata=draw(json_dict),
        created_at=draw(when),
        updated_at=draw(when),
        created_by=draw(st.none() | text),
    )


@settings(database=None, max_examples=300)
@given(annotation_records())
def test_annotation_record_round_trip(rec: AnnotationRecord) -> None:
    assert AnnotationRecord.model_validate(rec.model_dump()) == rec
    assert AnnotationRecord.model_validate_json(rec.model_dump_json()) == rec


@settings(database=None)
@given(st.sampled_from(list(AnnotationKind)), st.data())
def test_every_kind_round_trips(kind: AnnotationKind, data: st.DataObject) -> None:
    rec = record(kind, **data.draw(KIND_GEOMETRY[kind]))
    assert AnnotationRecord.model_validate(rec.model_dump()) == rec


@settings(database=None)
@given(assets())
def test_asset_round_trip(a: Asset) -> None:
    assert Asset.model_validate(a.model_dump()) == a
    assert Asset.model_validate_json(a.model_dump_json()) == a


def test_base_model_is_shared() -> None:
    assert all(issubclass(m, LakeModel) and issubclass(m, BaseModel) for m in _public_models())
