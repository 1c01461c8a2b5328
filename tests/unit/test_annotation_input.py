"""A batch's absent record columns: all null, valid Arrow, and stored as nulls by Lance."""

from __future__ import annotations

import lance
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from lakecore.entities._annotation_input import records_table
from schemas import AnnotationSet, AnnotationSetPurpose, SourceKind


def _set() -> AnnotationSet:
    return AnnotationSet(
        set_id="set_1",
        name="gt",
        purpose=AnnotationSetPurpose.GROUND_TRUTH,
        source_kind=SourceKind.HUMAN,
    )


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3000), given_columns=st.sets(st.sampled_from(["label", "bbox", "score"])))
def test_absent_columns_are_all_null_and_valid(n, given_columns):
    data = {"kind": pa.array(["bbox"] * n), "asset_id": pa.array(["a"] * n)}
    if "label" in given_columns:
        data["label"] = pa.array(["cat"] * n)
    if "bbox" in given_columns:
        data["bbox"] = pa.array([[1.0, 2.0, 3.0, 4.0]] * n, pa.list_(pa.float32(), 4))
    if "score" in given_columns:
        data["score"] = pa.array([0.5] * n)
    table = records_table(pa.table(data), _set(), ids=False)
    table.validate(full=True)
    absent = [
        f.name
        for f in table.schema
        if f.name not in data
        and f.name not in ("set_id", "created_at", "label", "source_kind", "source_name")
        and f.name not in ("attributes", "metadata")
    ]
    assert "annotation_id" in absent and "polygon" in absent
    for name in absent:
        col = table[name]
        assert col.null_count == n, name
        assert col.to_pylist() == [None] * n, name


def test_absent_columns_share_their_zeros_and_survive_a_lance_round_trip(tmp_path):
    n = 5000
    table = records_table(
        pa.table({"kind": pa.array(["bbox"] * n), "bbox": pa.array([[1.0, 2, 3, 4]] * n)}),
        _set(),
    )
    absent = ["mask_asset_id", "polygon", "keypoints", "score", "datum_id"]
    # one allocation behind the row-sized buffers of every absent column (validity bitmaps,
    # offsets, values); the empty child arrays of list columns have buffers of their own
    addresses = {
        b.address
        for name in absent
        for chunk in table[name].chunks
        for b in chunk.buffers()
        if b is not None and b.size >= n // 8
    }
    assert len(addresses) == 1
    back = lance.write_dataset(table, str(tmp_path / "r.lance")).to_table()
    for name in absent:
        assert back[name].null_count == n, name
    assert back["bbox"].to_pylist() == [[1.0, 2.0, 3.0, 4.0]] * n
