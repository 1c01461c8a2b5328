"""Every validation rule of ``annotations.add``: one bad row rejects the whole batch, the error
names that row and field, and nothing is written (local disk and S3)."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pytest
from _annotations import (
    ASSETS,
    CORRUPTIONS,
    KINDS,
    applicable,
    arrow_rows,
    corrupt,
    full_schema,
    seed,
    valid_row,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakecore.entities.annotations import Annotations
from lakecore.errors import NotFoundError, SchemaError, ValidationError
from lakecore.tables import from_arrow
from schemas import AnnotationRecord


@pytest.fixture
def env(lake):
    seed(lake)
    ann = Annotations(lake)
    schema = full_schema(ann)
    return lake, ann, ann.create_set("gt", schema_id=schema.schema_id)


def _rejects(ann, set_id, records, row: int, field: str) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        ann.add(set_id, records)
    err = info.value
    assert (err.details["row"], err.details["field"]) == (row, field), str(err)
    assert str(err).startswith(f"row {row}, field {field}: "), str(err)
    return err


def _replace(table: pa.Table, name: str, column: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, column)


def test_every_rule_rejects_the_batch_naming_row_and_field(env):
    lake, ann, aset = env
    rows = [valid_row(kind, random.Random(i)) for i, kind in enumerate(KINDS)]
    ann.add(aset.set_id, arrow_rows(rows))
    pins, count = lake.snapshot().pins, ann.count()
    mismatches, unused = [], set(CORRUPTIONS)
    for i, row in enumerate(rows):
        for name in applicable(row["kind"]):
            if name not in unused:
                continue
            unused.discard(name)
            batch = list(rows)
            batch[i], field = corrupt(row, name)
            try:
                ann.add(aset.set_id, arrow_rows(batch))
                mismatches.append(f"{name}: accepted")
            except ValidationError as exc:
                if (exc.details.get("row"), exc.details.get("field")) != (i, field):
                    mismatches.append(f"{name}: expected row {i} field {field}, got {exc}")
    assert not unused, f"corruptions never applied: {unused}"
    assert not mismatches, "\n".join(mismatches)
    assert lake.snapshot().pins == pins
    assert ann.count() == count


def test_lowest_failing_row_is_reported_with_the_number_of_failing_rows(env):
    _, ann, aset = env
    rows = [valid_row("bbox", random.Random(i)) for i in range(8)]
    for i in (3, 6):
        rows[i]["bbox"][2] = -5.0
    rows[5]["label"] = "zebra"
    err = _rejects(ann, aset.set_id, arrow_rows(rows), 3, "bbox")
    assert err.details["failing_rows"] == 2
    assert "width -5.0 < 0" in str(err)


def _one_bad_row(data: st.DataObject) -> tuple[list[dict], int, str, list[dict]]:
    """Draw 1-12 valid rows and corrupt one: (rows, bad row, its field, the other rows)."""
    n = data.draw(st.integers(1, 12), label="rows")
    kinds = data.draw(st.lists(st.sampled_from(KINDS), min_size=n, max_size=n), label="kinds")
    rng = data.draw(st.randoms(use_true_random=False))
    rows = [valid_row(kind, rng) for kind in kinds]
    bad = data.draw(st.integers(0, n - 1), label="bad row")
    name = data.draw(st.sampled_from(applicable(kinds[bad])), label="corruption")
    good = rows[:bad] + rows[bad + 1 :]
    rows[bad], field = corrupt(rows[bad], name)
    return rows, bad, field, good


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_batch_with_one_bad_row_is_rejected_whole(env, data):
    lake, ann, aset = env
    rows, bad, field, good = _one_bad_row(data)
    pins, count = lake.snapshot().pins, ann.count()
    _rejects(ann, aset.set_id, arrow_rows(rows), bad, field)
    assert lake.snapshot().pins == pins
    if good:
        ann.add(aset.set_id, arrow_rows(good))
    assert ann.count() == count + len(good)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_a_batch_written_ahead_is_still_rejected_whole(env, monkeypatch, data):
    """Large batches write their data files while they are checked: a bad row still leaves the
    lake reading as before, and the corrected batch commits exactly its own rows."""
    import threading

    from lakecore.entities import annotations

    monkeypatch.setattr(annotations, "WRITE_AHEAD_ROWS", 1)  # every batch takes that path
    lake, ann, aset = env
    rows, bad, field, good = _one_bad_row(data)
    before, count = lake.snapshot().pins, ann.count()
    fs, folder = lake._catalog.fs, f"{lake._tables.uri('annotation_records')}/data"
    fs.invalidate_cache()
    files = set(fs.find(folder))
    _rejects(ann, aset.set_id, arrow_rows(rows), bad, field)
    assert lake.snapshot().pins == before and ann.count() == count
    fs.invalidate_cache()
    assert set(fs.find(folder)) == files  # what was written ahead is removed
    assert not [t for t in threading.enumerate() if t.name.startswith("lakecore-write-ahead")]
    if good:
        written = ann.add(aset.set_id, arrow_rows(good))
        ids = set(written["annotation_id"].to_pylist())
        stored = ann.table(columns=["annotation_id"])["annotation_id"].to_pylist()
        assert ids <= set(stored) and len(stored) == count + len(good)


def test_schema_restricts_kinds_and_scores(env):
    _, ann, _ = env
    boxes = ann.create_schema(
        "boxes",
        task_type="detection",
        labels=["cat"],
        allowed_kinds=["bbox"],
        allow_additional_attributes=True,
    )
    aset = ann.create_set("boxes", schema_id=boxes.schema_id)
    rows = [
        valid_row("bbox", random.Random(i)) | {"label": "cat", "label_id": None, "score": None}
        for i in range(3)
    ]
    rows[1] = valid_row("polygon", random.Random(9)) | {
        "label": "cat",
        "label_id": None,
        "score": None,
    }
    err = _rejects(ann, aset.set_id, arrow_rows(rows), 1, "kind")
    assert "not allowed by schema 'boxes'" in str(err)
    rows[1] = dict(rows[0], score=0.5)
    _rejects(ann, aset.set_id, arrow_rows(rows), 1, "score")
    strict = ann.create_schema(
        "boxes",
        version="2",
        task_type="detection",
        labels=["cat"],
        allowed_kinds=["bbox"],
        allow_scores=True,
        require_scores=True,
        allow_additional_attributes=True,
    )
    preds = ann.create_set("preds", schema_id=strict.schema_id, purpose="prediction")
    rows = [dict(r, score=0.5) for r in rows]
    rows[2]["score"] = None
    err = _rejects(ann, preds.set_id, arrow_rows(rows), 2, "score")
    assert "requires a score" in str(err)


def test_schema_without_labels_or_attribute_rules(env):
    _, ann, _ = env
    free = ann.create_schema(
        "free", task_type="other", labels=[], allowed_kinds=KINDS, allow_additional_attributes=True
    )
    aset = ann.create_set("free", schema_id=free.schema_id)
    rows = [
        valid_row("bbox", random.Random(i)) | {"label": f"l{i}", "label_id": 99, "score": None}
        for i in range(3)
    ]
    rows[0]["attributes"] = '{"anything": [1, {"b": null}]}'
    assert ann.add(aset.set_id, arrow_rows(rows)).num_rows == 3
    rows[2]["bbox"][3] = -1.0  # structural rules still apply
    _rejects(ann, aset.set_id, arrow_rows(rows), 2, "bbox")


def test_set_without_schema_checks_structure_only(env):
    _, ann, _ = env
    aset = ann.create_set("loose")
    rows = [
        {
            "asset_id": ASSETS[0],
            "kind": "bbox",
            "label": "anything",
            "bbox": [0.0, 0.0, 1.0, 1.0],
            "score": 7.0,
            "attributes": '{"x": 1}',
        }
    ] * 2
    assert ann.add(aset.set_id, pa.Table.from_pylist(rows)).num_rows == 2
    rows = [*rows, {"asset_id": ASSETS[0], "kind": "bbox", "label": "x", "bbox": [0.0, 0, 1, -1]}]
    _rejects(ann, aset.set_id, pa.Table.from_pylist(rows), 2, "bbox")


def test_models_and_dicts_are_checked_row_by_row(env):
    _, ann, aset = env
    good = valid_row("bbox", random.Random(0))
    good["attributes"] = {"occluded": True}
    good["metadata"] = {}
    bad = dict(good, bbox=[0.0, 0.0, -1.0, 1.0])
    _rejects(ann, aset.set_id, [good, good, bad], 2, "bbox")
    with pytest.raises(SchemaError, match="row 1: expected an AnnotationRecord"):
        ann.add(aset.set_id, [good, 42])
    schema_bad = dict(good, label="zebra")  # valid record, but not in the schema
    _rejects(ann, aset.set_id, [schema_bad, good], 0, "label")


def test_polygon_parts_without_holes_and_bare_rings(env):
    _, ann, _ = env
    aset = ann.create_set("coco")
    ring = [0.0, 0.0, 4.0, 0.0, 4.0, 4.0]
    rows = [
        {"asset_id": ASSETS[0], "kind": "polygon", "label": "cat", "polygon": p}
        for p in ([{"exterior": ring}], [{"exterior": ring}, {"exterior": ring}])
    ]
    back = ann.add(aset.set_id, pa.Table.from_pylist(rows))["polygon"].to_pylist()
    assert back[1] == [{"exterior": ring, "holes": []}] * 2
    coco = pa.table(
        {
            "asset_id": [ASSETS[0]] * 2,
            "kind": ["polygon"] * 2,
            "label": ["a"] * 2,
            "polygon": [[ring, ring], [ring]],
        }
    )  # list<list<double>>: rings as parts
    back = ann.add(aset.set_id, coco)["polygon"].to_pylist()
    assert back[0] == [{"exterior": ring, "holes": []}] * 2
    coco = coco.set_column(3, "polygon", pa.array([[ring, ring[:4]], [ring]]))
    _rejects(ann, aset.set_id, coco, 0, "polygon")


def test_column_and_set_errors(env):
    _, ann, aset = env
    row = valid_row("bbox", random.Random(0))
    with pytest.raises(SchemaError, match="unknown annotation record column"):
        ann.add(aset.set_id, pa.Table.from_pylist([row | {"colour": "red"}]))
    with pytest.raises(SchemaError, match="'kind' column"):
        ann.add(aset.set_id, arrow_rows([row]).drop_columns(["kind"]))
    with pytest.raises(SchemaError, match="cannot be stored as"):
        ann.add(aset.set_id, _replace(arrow_rows([row]), "bbox", pa.array(["1,2,3,4"])))
    table = arrow_rows([row, row]).append_column("set_id", pa.array([None, "annset_other"]))
    _rejects(ann, aset.set_id, table, 1, "set_id")
    with pytest.raises(NotFoundError, match="annset_nope"):
        ann.add("annset_nope", arrow_rows([row]))
    label_id = _replace(arrow_rows([row, row]), "label_id", pa.array([1, 2**40], pa.int64()))
    _rejects(ann, aset.set_id, label_id, 1, "label_id")


_REFERENCES = {"unknown_asset", "unknown_datum", "unknown_mask_asset"}


def _model_accepts(row: dict) -> bool:
    data = {k: v for k, v in row.items() if v is not None}
    data.update(
        set_id="annset_x",
        source_kind=data.get("source_kind", "human"),
        source_name=data.get("source_name", "someone"),
    )
    try:
        for key in ("attributes", "metadata"):
            data[key] = json.loads(data[key])
        AnnotationRecord.model_validate(data)
    except ValueError:
        return False
    return True


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_add_accepts_exactly_what_the_record_model_accepts(env, data):
    """Without a schema, the vectorized rules agree with AnnotationRecord's validators, and
    whatever add stores reads back as valid models."""
    _, ann, _ = env
    loose = ann.create_set("loose")
    kind = data.draw(st.sampled_from(KINDS), label="kind")
    row = valid_row(kind, data.draw(st.randoms(use_true_random=False)))
    names = [n for n in applicable(kind) if n not in _REFERENCES]
    name = data.draw(st.none() | st.sampled_from(names), label="corruption")
    if name is not None:
        row, _ = corrupt(row, name)
    expected = _model_accepts(row)
    try:
        written = ann.add(loose.set_id, arrow_rows([row]))
    except ValidationError as exc:
        assert not expected, f"{name}: add refused a valid record: {exc}"
        return
    assert expected, f"{name}: add accepted a record the model refuses: {row}"
    from_arrow(
        ann.table(filter=f"annotation_id = '{written['annotation_id'][0]}'"), AnnotationRecord
    )


def test_label_ids_are_checked_whatever_their_value(env):
    """Label ids may be any int32, -1 included (Cityscapes has one)."""
    _, ann, _ = env
    schema = ann.create_schema(
        "ids",
        task_type="detection",
        labels=[{"name": "plate", "label_id": -1}, {"name": "car", "label_id": 7}, "tree"],
        allowed_kinds=["bbox"],
        allow_additional_attributes=True,
    )
    aset = ann.create_set("ids", schema_id=schema.schema_id)
    rows = [
        valid_row("bbox", random.Random(i)) | {"label": label, "label_id": lid, "score": None}
        for i, (label, lid) in enumerate([("plate", -1), ("car", 7), ("tree", 3), ("car", None)])
    ]
    assert ann.add(aset.set_id, arrow_rows(rows)).num_rows == 4  # "tree" has no id to compare
    rows[0]["label_id"] = 7
    err = _rejects(ann, aset.set_id, arrow_rows(rows), 0, "label_id")
    assert "(-1)" in str(err)


def test_a_row_with_two_foreign_geometries_names_the_first_field(env):
    """The field reported does not depend on set order (hash seeds)."""
    _, ann, aset = env
    row = valid_row("classification", random.Random(1)) | {"score": None}
    row |= {"text": "a caption", "mask_asset_id": ASSETS[0], "bbox": [1.0, 2.0, 3.0, 4.0]}
    err = _rejects(ann, aset.set_id, arrow_rows([row]), 0, "bbox")
    row.pop("bbox")
    row["bbox"] = None
    err = _rejects(ann, aset.set_id, arrow_rows([row]), 0, "mask_asset_id")
    assert "does not take mask_asset_id" in str(err)
