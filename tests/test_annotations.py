"""Annotation schemas, sets and records: lifecycle, round trips of every kind, queries,
references checked against the commit's snapshot, and a 200,000-record add."""

from __future__ import annotations

import doctest
import hashlib
import io
import math
import random
import time
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from _annotations import ASSETS, DATUMS, KINDS, arrow_rows, full_schema, seed, valid_row

from lakecore.entities import _json
from lakecore.entities import annotations as annotations_module
from lakecore.entities._annotation_input import RECORD_SCHEMA
from lakecore.entities._base import rows_where
from lakecore.entities.annotations import Annotations
from lakecore.errors import (
    AlreadyExistsError,
    InUseError,
    NotFoundError,
    ValidationError,
)
from lakecore.tables import Append, Delete, from_arrow, to_arrow
from schemas import RLE, AnnotationRecord, Asset, PolygonPart, StorageRef


@pytest.fixture
def ann(lake) -> Annotations:
    seed(lake)
    return Annotations(lake)


def test_schema_lifecycle_and_uniqueness(lake, ann):
    s = ann.create_schema(
        "coco",
        task_type="detection",
        allowed_kinds=["bbox", "polygon"],
        labels=["cat", {"name": "dog", "label_id": 2}],
    )
    assert ann.get_schema(s.schema_id) == s
    assert ann.find_schema("coco") == s
    assert ann.schemas()["schema_id"].to_pylist() == [s.schema_id]
    pins = lake.snapshot().pins
    with pytest.raises(AlreadyExistsError, match="'coco' version '1' exists"):
        ann.create_schema("coco", task_type="detection", labels=[], allowed_kinds=["bbox"])
    assert lake.snapshot().pins == pins
    v2 = ann.create_schema(
        "coco", version="2", task_type="detection", labels=["cat"], allowed_kinds=["bbox"]
    )
    assert ann.find_schema("coco", "2") == v2
    aset = ann.create_set("gt", schema_id=v2.schema_id)
    with pytest.raises(InUseError, match=aset.set_id):
        ann.delete_schema(v2.schema_id)
    ann.delete_set(aset.set_id)
    ann.delete_schema(v2.schema_id)
    with pytest.raises(NotFoundError):
        ann.get_schema(v2.schema_id)
    with pytest.raises(NotFoundError):
        ann.find_schema("coco", "2")
    with pytest.raises(NotFoundError):
        ann.delete_schema(v2.schema_id)
    assert ann.schemas().num_rows == 1


def test_invalid_schemas_and_sets_are_refused(lake, ann):
    pins = lake.snapshot().pins
    with pytest.raises(ValidationError, match="require_scores=True needs allow_scores"):
        ann.create_schema(
            "x", task_type="detection", labels=["a"], allowed_kinds=["bbox"], require_scores=True
        )
    with pytest.raises(ValidationError, match="label names must be unique"):
        ann.create_schema("x", task_type="detection", labels=["a", "a"], allowed_kinds=["bbox"])
    with pytest.raises(ValidationError) as info:
        ann.create_schema("x", task_type="detection", labels=[], allowed_kinds=["cube"])
    assert info.value.details["field"].startswith("allowed_kinds")
    with pytest.raises(ValidationError, match="purpose"):
        ann.create_set("x", purpose="fun")
    with pytest.raises(NotFoundError, match="annschema_nope"):
        ann.create_set("x", schema_id="annschema_nope")
    assert lake.snapshot().pins == pins


def test_set_lifecycle_and_delete_set_removes_its_records(lake, ann):
    gt = ann.create_set("gt", created_by="me", metadata={"team": "a"})
    other = ann.create_set("gt", purpose="prediction", source_kind="model")  # names may repeat
    assert ann.get_set(gt.set_id) == gt
    assert sorted(ann.sets()["set_id"].to_pylist()) == sorted([gt.set_id, other.set_id])
    rows = [
        {"asset_id": ASSETS[0], "kind": "bbox", "label": "cat", "bbox": [0.0, 0.0, 2.0, 2.0]}
    ] * 3
    ann.add(gt.set_id, pa.Table.from_pylist(rows))
    kept = ann.add(other.set_id, pa.Table.from_pylist(rows[:1]))
    before = lake.snapshot().catalog_version
    ann.delete_set(gt.set_id)
    assert lake.snapshot().catalog_version == before + 1  # records and set in one commit
    assert ann.table()["annotation_id"].to_pylist() == kept["annotation_id"].to_pylist()
    with pytest.raises(NotFoundError):
        ann.get_set(gt.set_id)
    with pytest.raises(NotFoundError):
        ann.delete_set(gt.set_id)
    empty = ann.create_set("empty")
    ann.delete_set(empty.set_id)
    assert ann.sets()["set_id"].to_pylist() == [other.set_id]


def _models(set_id: str) -> list[AnnotationRecord]:
    common: dict[str, Any] = {"set_id": set_id, "source_kind": "model", "source_name": "yolo"}
    return [
        AnnotationRecord(
            **common,
            asset_id=ASSETS[0],
            kind="classification",
            label="cat",
            label_id=1,
            score=0.1,
            source_version="8.1",
            run_id="run-1",
            attributes={"occluded": True, "color": "red", "count": 3, "area": 1.5, "note": "x"},
            metadata={"nested": {"a": [1, 2.5, None]}},
            created_by="me",
        ),
        AnnotationRecord(
            **common,
            asset_id=ASSETS[1],
            datum_id=DATUMS[0],
            kind="bbox",
            label="dog",
            bbox=(0.1, 0.2, 30.3, 40.4),
            attributes={"occluded": False},
        ),
        AnnotationRecord(
            **common,
            asset_id=ASSETS[1],
            kind="rotated_bbox",
            label="dog",
            rotated_bbox=(5.5, 6.6, 7.7, 8.8, -33.3),
            attributes={"occluded": False},
        ),
        AnnotationRecord(
            **common,
            asset_id=ASSETS[2],
            kind="polygon",
            label="cat",
            polygon=[
                PolygonPart(exterior=[0, 0, 10.1, 0, 10, 10.7], holes=[[1, 1, 2, 1, 2, 2.2]]),
                PolygonPart(exterior=[20, 20, 30, 20, 30, 30, 20, 30.5]),
            ],
            attributes={"occluded": True},
        ),
        AnnotationRecord(
            **common,
            datum_id=DATUMS[1],
            kind="polyline",
            label="cat",
            polyline=[0, 0, 1.1, 1.1, 2.2, 0],
            attributes={"occluded": True},
        ),
        AnnotationRecord(
            **common,
            asset_id=ASSETS[0],
            kind="ellipse",
            label="dog",
            ellipse=(10, 10, 3.3, 4.4, 45.0),
            attributes={"occluded": True},
        ),
        AnnotationRecord(
            **common,
            asset_id=ASSETS[0],
            kind="keypoints",
            label="cat",
            keypoints=[1.5, 2.5, 3.5, 4.5, 5.5, 6.5],
            keypoint_visibility=[2, 1, 0],
            attributes={"occluded": True},
        ),
        AnnotationRecord(
            **common,
            asset_id=ASSETS[3],
            kind="keypoints",
            label="cat",
            keypoints=[1, 2, 3, 4, 5, 6],
            attributes={"occluded": True},
        ),
        AnnotationRecord(
            **common,
            asset_id=ASSETS[3],
            kind="mask",
            label="cat",
            mask_rle=RLE(height=480, width=640, counts="0a0b1o"),
            attributes={"occluded": True},
        ),
        AnnotationRecord(
            **common,
            asset_id=ASSETS[3],
            kind="mask",
            label="dog",
            mask_asset_id=ASSETS[2],
            mask_value=7,
            attributes={"occluded": False},
        ),
        AnnotationRecord(
            **common,
            datum_id=DATUMS[0],
            kind="caption",
            text="a cat, a dog",
            attributes={"occluded": False},
        ),
    ]


def _same(a: Any, b: Any) -> bool:
    """Equal, floats within float32 precision."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _read_back(ann: Annotations, written: pa.Table) -> list[AnnotationRecord]:
    ids = written["annotation_id"]
    stored = ann.table(filter=f"set_id = '{written['set_id'][0].as_py()}'")
    order = pc.index_in(ids, stored["annotation_id"])
    return from_arrow(stored.take(order), AnnotationRecord)


@pytest.mark.parametrize("path", ["models", "dicts", "arrow", "inferred_arrow"])
def test_every_kind_round_trips(ann, path):
    schema = full_schema(ann)
    aset = ann.create_set("gt", schema_id=schema.schema_id, source_kind="model")
    models = _models(aset.set_id)
    assert {m.kind.value for m in models} == set(KINDS)
    records: Any = models
    if path == "dicts":
        records = [m.model_dump(exclude={"annotation_id", "set_id", "created_at"}) for m in models]
    elif path == "arrow":
        records = _to_input(models)
    elif path == "inferred_arrow":  # list<double> geometry, int64 fields, nullable structs
        records = pa.Table.from_pylist(_to_input(models).to_pylist())
    written = ann.add(aset.set_id, records)
    assert written.schema == RECORD_SCHEMA
    assert len(set(written["annotation_id"].to_pylist())) == len(models)
    back = _read_back(ann, written)
    skip = {"annotation_id", "created_at"}
    for want, got in zip(models, back, strict=True):
        a, b = want.model_dump(exclude=skip), got.model_dump(exclude=skip)
        assert _same(a, b), f"{want.kind}: {a} != {b}"
    assert back[7].keypoint_visibility == [2, 2, 2]  # filled: visible


def _to_input(models: list[AnnotationRecord]) -> pa.Table:
    return to_arrow(models, AnnotationRecord).drop_columns(["annotation_id", "created_at"])


def test_arrow_input_is_cast_and_defaults_are_filled(ann):
    aset = ann.create_set("imports", source_kind="import")
    n = 4
    table = pa.table(
        {
            "asset_id": pa.array(ASSETS[:n], pa.large_string()),
            "kind": pa.array(["bbox"] * n).dictionary_encode(),
            "label": pa.array(["cat", "x", "dog", "cat"]),
            "bbox": pa.array([[1.0, 2.0, 3.0, 4.0]] * n, pa.list_(pa.float64())),
            "score": pa.array([0.5, None, 0.25, 1.0], pa.float64()),
            "label_id": pa.array([1, 2, None, 1], pa.int64()),
            "attributes": pa.array(
                [
                    {"occluded": True, "color": "red"},
                    None,
                    {"occluded": False, "color": None},
                    {"occluded": None, "color": "blue"},
                ]
            ),
        }
    )
    written = ann.add(aset.set_id, table)
    assert written.schema == RECORD_SCHEMA
    assert written["bbox"].type == pa.list_(pa.float32(), 4)
    assert written["source_kind"].to_pylist() == ["import"] * n
    assert written["source_name"].to_pylist() == ["imports"] * n
    assert written["set_id"].to_pylist() == [aset.set_id] * n
    back = _read_back(ann, written)
    assert back[0].attributes == {"occluded": True, "color": "red"}
    assert back[1].attributes == {}
    assert back[2].attributes == {"occluded": False, "color": None}
    assert back[0].bbox == (1.0, 2.0, 3.0, 4.0)
    assert back[3].metadata == {}
    frame = pl.DataFrame({"asset_id": [ASSETS[0]], "kind": ["bbox"], "bbox": [[1.0, 2, 3, 4]]})
    frame = frame.with_columns(label=pl.lit("cat"))
    assert ann.add(aset.set_id, frame)["bbox"].to_pylist() == [[1.0, 2.0, 3.0, 4.0]]


def test_queries_get_count_and_delete(lake, ann):
    a = ann.create_set("a")
    b = ann.create_set("b")
    rng = random.Random(3)
    rows = [valid_row(k, rng) for k in KINDS * 2]
    wa = ann.add(a.set_id, arrow_rows(rows))
    wb = ann.add(b.set_id, arrow_rows(rows[:5]))
    assert ann.count() == len(rows) + 5
    assert ann.count(set_id=b.set_id) == 5
    assert ann.records(set_id=b.set_id).num_rows == 5
    by_asset = ann.records(set_id=a.set_id, asset_id=ASSETS[0])
    assert by_asset.num_rows == sum(r["asset_id"] == ASSETS[0] for r in rows)
    assert ann.records(datum_id=DATUMS[1]).num_rows == sum(
        r["datum_id"] == DATUMS[1] for r in rows
    ) + sum(r["datum_id"] == DATUMS[1] for r in rows[:5])
    assert ann.records(label="cat", set_id=a.set_id).num_rows == sum(
        r["label"] == "cat" for r in rows
    )
    assert ann.table(columns=["kind"], filter="kind = 'polygon'").num_rows == 3
    first = wa["annotation_id"][0].as_py()
    assert ann.get(first).kind.value == rows[0]["kind"]
    with pytest.raises(NotFoundError):
        ann.get("ann_nope")
    pins = lake.snapshot().pins
    with pytest.raises(NotFoundError, match="ann_nope"):
        ann.delete([first, "ann_nope"])
    assert lake.snapshot().pins == pins
    assert ann.delete(wb["annotation_id"]) == 5
    assert ann.delete(first) == 1
    assert ann.count() == len(rows) - 1
    assert ann.delete([]) == 0


class _Racing:
    """A lake whose next commit lets another writer commit first (between check and write)."""

    def __init__(self, lake: Any, ops: list[Any]) -> None:
        self.lake, self.ops, self.objects = lake, ops, lake.objects

    def snapshot(self) -> Any:
        return self.lake.snapshot()

    def commit(self, ops: Any = (), *, build: Any = None, message: Any = None) -> Any:
        if self.ops:
            self.lake.commit(self.ops)
            self.ops = []
        return self.lake.commit(ops, build=build, message=message)


def test_references_are_checked_against_the_commit_snapshot(lake, ann):
    aset = ann.create_set("gt")
    rows = [{"asset_id": a, "kind": "bbox", "label": "cat", "bbox": [0.0, 0, 1, 1]} for a in ASSETS]
    racing = Annotations(_Racing(lake, [Delete("assets", f"asset_id = '{ASSETS[2]}'")]))
    with pytest.raises(ValidationError) as info:
        racing.add(aset.set_id, pa.Table.from_pylist(rows))
    assert (info.value.details["row"], info.value.details["field"]) == (2, "asset_id")
    assert ann.count() == 0
    rows[2]["asset_id"] = ASSETS[3]
    deleted = Annotations(_Racing(lake, [Delete("annotation_sets", f"set_id = '{aset.set_id}'")]))
    with pytest.raises(NotFoundError):
        deleted.add(aset.set_id, pa.Table.from_pylist(rows))
    assert ann.count() == 0


def test_adds_see_the_set_as_the_snapshot_has_it(lake, ann, monkeypatch):
    # adds keep a set per version of the sets table: the set's defaults reach the rows without
    # reading the set again, and a set deleted through another handle is gone for this one too
    reads: list[str] = []

    def counted(snapshot, table, *args, **kwargs):
        reads.append(table)
        return rows_where(snapshot, table, *args, **kwargs)

    monkeypatch.setattr(annotations_module, "rows_where", counted)
    aset = ann.create_set("yolo", purpose="prediction", source_kind="model")
    rows = pa.Table.from_pylist(
        [{"asset_id": ASSETS[0], "kind": "bbox", "label": "cat", "bbox": [0.0, 0, 1, 1]}]
    )
    for _ in range(2):
        written = ann.add(aset.set_id, rows)
        assert written["source_kind"].to_pylist() == ["model"]
        assert written["source_name"].to_pylist() == ["yolo"]
    assert "annotation_sets" not in reads  # create_set left the set for the adds
    Annotations(lake).delete_set(aset.set_id)
    pins = lake.snapshot().pins
    with pytest.raises(NotFoundError, match=aset.set_id):
        ann.add(aset.set_id, rows)
    assert "annotation_sets" in reads  # a new version of the sets table: read again
    assert lake.snapshot().pins == pins
    assert ann.count() == 0


def test_unknown_references_are_rejected(lake, ann):
    aset = ann.create_set("gt")
    pins = lake.snapshot().pins
    ok = {
        "kind": "classification",
        "label": "cat",
        "asset_id": ASSETS[0],
        "datum_id": None,
        "mask_asset_id": None,
    }
    cases = [
        ("asset_id", {"asset_id": "asset_nope"}),
        ("datum_id", {"datum_id": "datum_nope"}),
        ("mask_asset_id", {"kind": "mask", "mask_asset_id": "asset_nope"}),
    ]
    for field, change in cases:
        rows = [ok, ok, {**ok, **change}]
        with pytest.raises(ValidationError, match=f"row 2, field {field}: unknown"):
            ann.add(aset.set_id, pa.Table.from_pylist(rows))
    with pytest.raises(NotFoundError):
        ann.add("annset_nope", pa.Table.from_pylist([ok]))
    assert lake.snapshot().pins == pins


def test_empty_batch_writes_nothing(lake, ann):
    aset = ann.create_set("gt")
    pins = lake.snapshot().pins
    empty = pa.table({"kind": pa.array([], pa.string())})
    assert ann.add(aset.set_id, empty).num_rows == 0
    assert ann.add(aset.set_id, []).num_rows == 0
    assert lake.snapshot().pins == pins


def test_200k_records_in_one_add(where, lake):
    if where.kind != "local":
        pytest.skip("size test runs on local disk only")
    n = 200_000
    assets = [f"asset_big{i}" for i in range(1000)]
    lake.commit([Append("assets", _asset_rows(assets))])
    ann = Annotations(lake)
    schema = ann.create_schema(
        "det",
        task_type="detection",
        allowed_kinds=["bbox"],
        labels=[f"c{i}" for i in range(80)],
        allow_scores=True,
        attributes=[{"name": "occluded", "type": "bool"}],
    )
    aset = ann.create_set("preds", schema_id=schema.schema_id, purpose="prediction")
    rng = np.random.default_rng(0)
    table = pa.table(
        {
            "asset_id": pa.array(assets).take(pa.array(rng.integers(0, len(assets), n))),
            "kind": pa.repeat("bbox", n),
            "label": pa.array([f"c{i}" for i in range(80)]).take(pa.array(rng.integers(0, 80, n))),
            "score": pa.array(rng.random(n)),
            "bbox": pa.FixedSizeListArray.from_arrays(pa.array(rng.random(4 * n) * 100), 4),
            "attributes": pa.array(np.where(rng.random(n) < 0.5, '{"occluded": true}', "{}")),
        }
    )
    start = time.perf_counter()
    written = ann.add(aset.set_id, table)
    elapsed = time.perf_counter() - start
    print(f"\nadd of {n:,} bbox records: {elapsed:.2f} s")
    assert written.num_rows == n
    assert ann.count() == n
    assert elapsed < 30


def _asset_rows(ids: list[str]) -> pa.Table:
    sha = hashlib.sha256(b"x").hexdigest()
    one = Asset(
        asset_id=ids[0],
        kind="image",
        media_type="image/png",
        sha256=sha,
        size_bytes=1,
        storage=StorageRef(mount="lake", key=f"blob/{sha}", sha256=sha, size=1),
    )
    table = to_arrow([one], Asset).take(pa.array(np.zeros(len(ids), np.int64)))
    return table.set_column(0, table.schema.field(0), pa.array(ids))


def test_docstring_examples_run_in_order(where, lake):
    """The examples of the public methods, run top to bottom as one session."""
    if where.kind != "local":
        pytest.skip("docstring examples run on local disk only")
    seed(lake)
    lake.annotations = Annotations(lake)
    globs: dict[str, Any] = {"lake": lake, "pa": pa, "aid": ASSETS[0]}
    parser, out = doctest.DocTestParser(), io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    methods = [m for n, m in vars(Annotations).items() if callable(m) and not n.startswith("_")]
    assert all("Example:" in (m.__doc__ or "") for m in methods)
    for method in sorted(methods, key=lambda m: m.__code__.co_firstlineno):
        test = parser.get_doctest(method.__doc__, globs, method.__name__, None, 0)
        runner.run(test, out=out.write, clear_globs=False)
        globs.update(test.globs)  # DocTest copies its globals: carry names to the next method
    results = doctest.testmod(_json, optionflags=doctest.ELLIPSIS)
    assert runner.failures == 0 and results.failed == 0, out.getvalue()
