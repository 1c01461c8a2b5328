"""Turn what a caller passes to ``annotations.add`` into rows of the ``annotation_records`` table.

Arrow input is converted column by column (cast, defaults, JSON); models and dicts go through
pydantic (the convenience path) and then the same conversion. Failures name a row and field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pydantic

from lakecore.entities._base import new_ids, now_array
from lakecore.entities._checks import is_text
from lakecore.entities._json import struct_to_json
from lakecore.entities._validate import column_mask, combined, show
from lakecore.errors import SchemaError, ValidationError
from lakecore.tables.arrow import layout, to_arrow
from schemas import AnnotationKind, AnnotationRecord, AnnotationSet
from schemas._common import NEW_INPUT

__all__ = ["RECORD_SCHEMA", "Records", "records_table", "with_ids"]

RECORD_SCHEMA = layout(AnnotationRecord).schema
Records: TypeAlias = (
    pa.Table | pa.RecordBatch | Iterable[AnnotationRecord | Mapping[str, Any]] | Any
)
"""An Arrow table or batch, anything exporting an Arrow stream (polars, pandas >= 2.2), or
AnnotationRecords / dicts."""

_JSON = ("attributes", "metadata")
_LAYOUT_HINT = {
    "bbox": "(x, y, w, h)",
    "rotated_bbox": "(cx, cy, w, h, angle_deg)",
    "ellipse": "(cx, cy, rx, ry, rotation_deg)",
}


def row_error(row: int, field: str, reason: str) -> ValidationError:
    """The ValidationError of one row and field."""
    return ValidationError(
        f"row {row}, field {field}: {reason}; nothing was written",
        row=row,
        field=field,
        reason=reason,
    )


def records_table(records: Records, aset: AnnotationSet, *, ids: bool = True) -> pa.Table:
    """Rows of ``annotation_records`` for ``records`` added to ``aset`` (not yet validated).

    ``annotation_id``, ``set_id`` and ``created_at`` are assigned; ``source_kind`` and
    ``source_name`` default to the set's source kind and name; ``label`` to ``""``;
    ``attributes``/``metadata`` to ``"{}"`` (struct columns become JSON strings).
    With ``ids=False`` the ``annotation_id`` column is left null for :func:`with_ids` to fill
    (no check reads it: the ids can be made while the batch is checked).
    """
    if isinstance(records, pa.RecordBatch):
        records = pa.Table.from_batches([records])
    elif not isinstance(records, pa.Table) and hasattr(records, "__arrow_c_stream__"):
        records = pa.table(records)  # polars / pandas >= 2.2 / DuckDB results, zero-copy
    if not isinstance(records, pa.Table):
        if isinstance(records, str | bytes | Mapping) or not isinstance(records, Iterable):
            raise ValidationError(
                "records must be an Arrow table (or anything exporting an Arrow stream) or a "
                f"list of dicts / AnnotationRecords, got {type(records).__name__}; a single "
                "record goes in a list",
                field="records",
            )
        records = _from_models(records, aset)
    table = _fill_visibility(_normalize(records, aset))
    return with_ids(table) if ids else table


def with_ids(table: pa.Table) -> pa.Table:
    """``table`` with fresh ``annotation_id`` s (ascending within the batch)."""
    column = table.schema.get_field_index("annotation_id")
    return table.set_column(column, table.schema.field(column), new_ids("ann", table.num_rows))


def _from_models(records: Iterable[Any], aset: AnnotationSet) -> pa.Table:
    defaults = {"set_id": aset.set_id, "source_kind": aset.source_kind, "source_name": aset.name}
    models = []
    for i, rec in enumerate(records):
        if isinstance(rec, AnnotationRecord):
            models.append(rec)
            continue
        if not isinstance(rec, Mapping):
            raise SchemaError(
                f"row {i}: expected an AnnotationRecord, a dict or an Arrow table, "
                f"got {type(rec).__name__}",
                row=i,
            )
        data = dict(rec)
        for key, value in defaults.items():
            if data.get(key) is None and (key == "set_id" or "source" not in data):
                data[key] = value
        try:
            models.append(AnnotationRecord.model_validate(data, context={NEW_INPUT: True}))
        except pydantic.ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "record"
            raise row_error(i, field, err["msg"].removeprefix("Value error, ")) from None
    return to_arrow(models, AnnotationRecord)


def _normalize(data: pa.Table, aset: AnnotationSet) -> pa.Table:
    unknown = [c for c in data.column_names if c not in RECORD_SCHEMA.names]
    if unknown:
        raise SchemaError(
            f"unknown annotation record column(s) {unknown}; columns are {RECORD_SCHEMA.names}",
            unknown=unknown,
        )
    if "kind" not in data.column_names:
        raise SchemaError("annotation records need a 'kind' column", field="kind")
    n = data.num_rows
    if "set_id" in data.column_names:
        other = pc.and_(data["set_id"].is_valid(), pc.not_equal(data["set_id"], aset.set_id))
        bad = np.flatnonzero(column_mask(other))
        if bad.size:
            r = int(bad[0])
            raise row_error(
                r,
                "set_id",
                f"{show(data['set_id'][r].as_py())} differs from the "
                f"set being added to ({aset.set_id!r}); omit set_id",
            )
    defaults = {"label": "", "source_kind": aset.source_kind.value, "source_name": aset.name}
    # one zero allocation for every absent column: the widest takes 20 bytes a row (five
    # float32s: rotated_bbox, ellipse)
    zeros = _SharedZeros(least=20 * (n + 1))
    cols: list[pa.Array | pa.ChunkedArray] = []
    for field in RECORD_SCHEMA:
        name = field.name
        if name == "annotation_id":
            cols.append(_nulls(n, pa.string(), zeros))  # made by ``with_ids``
        elif name == "created_at":
            cols.append(now_array(n))
        elif name == "set_id":
            cols.append(pa.repeat(aset.set_id, n))
        elif name in _JSON:
            cols.append(_json_column(data, name, n))
        elif name not in data.column_names:
            default = defaults.get(name)
            cols.append(_nulls(n, field.type, zeros) if default is None else pa.repeat(default, n))
        else:
            col = data[name] if name != "polygon" else _polygon_parts(data[name])
            col = cast_column(_relax_struct(col, field.type), field)
            cols.append(pc.fill_null(col, defaults[name]) if name in defaults else col)
    return pa.Table.from_arrays(cols, schema=RECORD_SCHEMA)


def _polygon_parts(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Accept parts without ``holes`` (``[{"exterior": [...]}]``) and bare rings
    (``[[x0, y0, ...], ...]``, one part per ring, COCO style): give each part empty holes."""
    kind = col.type
    if not pa.types.is_list(kind) and not pa.types.is_large_list(kind):
        return col
    inner = kind.value_type
    is_struct = pa.types.is_struct(inner)
    if is_struct and inner.get_field_index("holes") >= 0:
        return col
    if not is_struct and not (pa.types.is_list(inner) or pa.types.is_large_list(inner)):
        return col
    poly = combined(col)
    parts = poly.values  # offsets below index into the whole child array
    exterior = pc.struct_field(parts, "exterior") if is_struct else parts
    offsets = pa.array(np.zeros(len(parts) + 1, dtype=np.int32))
    holes = pa.ListArray.from_arrays(offsets, pa.array([], pa.list_(pa.float64())))
    mask = parts.is_null() if len(parts) else None
    new_parts = pa.StructArray.from_arrays(
        [exterior, holes], names=["exterior", "holes"], mask=mask
    )
    cls = pa.LargeListArray if pa.types.is_large_list(kind) else pa.ListArray
    return pa.chunked_array([cls.from_arrays(poly.offsets, new_parts, mask=poly.is_null())])


def _nulls(n: int, to: pa.DataType, zeros: _SharedZeros) -> pa.Array:
    """``n`` nulls of a type; struct children get default values, not nulls (non-nullable).

    The buffers are slices of the batch's shared zeros, so a batch's absent columns (a dozen in
    a batch of boxes) cost one allocation (the dozen absent columns of a batch of 1M boxes:
    ~80 ms with ``pa.nulls``, which writes every byte of each).
    """
    validity = zeros((n + 7) // 8)
    if pa.types.is_struct(to):
        children = [_zeros(n, to.field(i).type, zeros) for i in range(to.num_fields)]
        if any(c is None for c in children):  # a child type without a cheap default
            return pa.array([None], to).take(pa.array(np.zeros(n, dtype=np.int64)))
        return pa.Array.from_buffers(to, n, [validity], null_count=n, children=children)
    if pa.types.is_fixed_size_list(to):
        values = _zeros(n * to.list_size, to.value_type, zeros)
        if values is None:
            return pa.nulls(n, to)
        return pa.Array.from_buffers(to, n, [validity], null_count=n, children=[values])
    if pa.types.is_list(to) or pa.types.is_large_list(to):
        width = 8 if pa.types.is_large_list(to) else 4
        offsets = zeros((n + 1) * width)
        empty = pa.array([], to.value_type)
        return pa.Array.from_buffers(to, n, [validity, offsets], null_count=n, children=[empty])
    values = _zeros(n, to, zeros)  # the same buffers, all rows marked null
    if values is None:
        return pa.nulls(n, to)
    return pa.Array.from_buffers(to, n, [validity, *values.buffers()[1:]], null_count=n)


def _fixed_width(to: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(to)
        or pa.types.is_floating(to)
        or pa.types.is_boolean(to)
        or pa.types.is_timestamp(to)
    )


class _SharedZeros:
    """Zero-filled buffers for one batch, all slices of one allocation.

    Arrow buffers are immutable, so every absent column of a batch can read the same zero
    bytes: the dozen absent columns of 1M boxes make one allocation (20 bytes a row) instead
    of a dozen (a reused allocation is zeroed byte by byte: ~20 ms per 1M-record batch,
    measured).
    """

    def __init__(self, least: int) -> None:
        self._least = least
        self._buffer: pa.Buffer | None = None

    def __call__(self, nbytes: int) -> pa.Buffer:
        if self._buffer is None or self._buffer.size < nbytes:
            size = max(nbytes, self._least)
            self._buffer = pa.py_buffer(np.zeros(size, dtype=np.uint8))
        return self._buffer.slice(0, nbytes)


def _zeros(n: int, to: pa.DataType, zeros: _SharedZeros) -> pa.Array | None:
    """``n`` zeros (numbers) or empty strings/bytes of a type, or None for other types."""
    if _fixed_width(to):
        return pa.Array.from_buffers(to, n, [None, zeros((n * to.bit_width + 7) // 8)])
    if pa.types.is_string(to) or pa.types.is_binary(to):
        offsets = zeros((n + 1) * 4)
        return pa.Array.from_buffers(to, n, [None, offsets, pa.py_buffer(b"")])
    return None


def _relax_struct(col: pa.ChunkedArray, to: pa.DataType) -> pa.ChunkedArray:
    """Give null struct rows default children so a cast to non-nullable children succeeds."""
    if not (pa.types.is_struct(to) and pa.types.is_struct(col.type)) or col.null_count == 0:
        return col
    arr = combined(col)
    names = [arr.type.field(i).name for i in range(arr.type.num_fields)]
    valid = arr.is_valid()
    children = []
    for name in names:
        child = pc.struct_field(arr, name)
        default = _default_of(to, name, child.type)
        children.append(child if default is None else pc.if_else(valid, child, default))
    return pa.chunked_array(
        [pa.StructArray.from_arrays(children, names=names, mask=pc.invert(valid))]
    )


def _default_of(to: pa.DataType, name: str, have: pa.DataType) -> pa.Scalar | None:
    index = to.get_field_index(name)
    if index < 0:
        return None
    target = to.field(index).type
    value = "" if pa.types.is_string(target) else 0
    try:
        return pa.scalar(value, target).cast(have)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None


def _json_column(data: pa.Table, name: str, n: int) -> pa.Array | pa.ChunkedArray:
    if name not in data.column_names:
        return pa.repeat("{}", n)
    col = data[name]
    if pa.types.is_struct(col.type):
        return struct_to_json(col)
    if pa.types.is_null(col.type):
        return pa.repeat("{}", n)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise SchemaError(
            f"column {name!r} must hold JSON object strings or a struct, not {col.type}", field=name
        )
    return pc.fill_null(col.cast(pa.string()), "{}")


def _family(type_: pa.DataType) -> str | None:
    """What a column's values are at heart (numbers, text, truth values), lists and
    dictionary encoding looked through; None for what is not compared (structs, nulls)."""
    while (
        pa.types.is_list(type_)
        or pa.types.is_large_list(type_)
        or pa.types.is_fixed_size_list(type_)
        or pa.types.is_dictionary(type_)
    ):
        type_ = type_.value_type
    if pa.types.is_integer(type_) or pa.types.is_floating(type_):
        return "numbers"
    if is_text(type_) and not pa.types.is_null(type_):
        return "text"
    if pa.types.is_boolean(type_):
        return "true/false values"
    return None


def cast_column(col: pa.ChunkedArray, field: pa.Field) -> pa.ChunkedArray:
    """Cast a column to its stored type; a value that does not fit names its row.

    Numbers, text and truth values are not cast into one another ("30" would pass as a
    coordinate, 7 as a label): such a column is refused whole.
    """
    given, stored = _family(col.type), _family(field.type)
    if given is not None and stored is not None and given != stored:
        raise SchemaError(
            f"column {field.name!r} of type {col.type} cannot be stored as {field.type}: it "
            f"holds {given} where {stored} are stored; convert the column first",
            field=field.name,
        )
    try:
        return col.cast(field.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        problem = exc
    try:
        col.slice(0, 0).cast(field.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        raise SchemaError(
            f"column {field.name!r} of type {col.type} cannot be stored as {field.type}",
            field=field.name,
        ) from problem
    row = _first_bad_cast(col, field.type)
    value = col[row].as_py()
    if pa.types.is_fixed_size_list(field.type) and isinstance(value, list):
        k = field.type.list_size
        reason = (
            f"needs {k} values {_LAYOUT_HINT.get(field.name, '')}, got {len(value)}: {show(value)}"
        )
    else:
        reason = f"{show(value)} does not fit {field.type} ({problem})"
    raise row_error(row, field.name, reason) from problem


def _casts(col: pa.ChunkedArray, to: pa.DataType) -> bool:
    try:
        col.cast(to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return False
    return True


def _first_bad_cast(col: pa.ChunkedArray, to: pa.DataType) -> int:
    """Bisect for the first row whose cast fails (O(n) casting work in all)."""
    lo, hi = 0, len(col)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _casts(col.slice(lo, mid - lo), to):
            lo = mid
        else:
            hi = mid
    return lo


def _fill_visibility(table: pa.Table) -> pa.Table:
    """Give keypoints rows without ``keypoint_visibility`` one ``2`` (visible) per point."""
    if table["keypoints"].null_count == table.num_rows:
        return table  # no keypoints (a batch of boxes): nothing to fill
    points = combined(table["keypoints"])
    vis = combined(table["keypoint_visibility"])
    npts = pc.list_value_length(points)
    need = column_mask(
        pc.and_(
            pc.and_(pc.equal(table["kind"], AnnotationKind.KEYPOINTS.value), vis.is_null()),
            pc.equal(pc.bit_wise_and(npts, 1), 0),
        )
    )
    if not need.any():
        return table
    have = np.asarray(pc.fill_null(pc.list_value_length(vis), 0).to_numpy(), dtype=np.int64)
    fill = np.asarray(pc.fill_null(npts, 0).to_numpy(), dtype=np.int64) // 2
    out_len = np.where(need, fill, have)
    out_off = np.concatenate([[0], np.cumsum(out_len)])
    row = np.repeat(np.arange(len(vis)), out_len)
    local = np.arange(out_off[-1]) - out_off[row]
    in_off = np.asarray(vis.offsets.to_numpy(), dtype=np.int64)
    source = np.where(need[row], len(vis.values), in_off[row] + local)
    values = pc.take(pa.concat_arrays([vis.values, pa.array([2], pa.int8())]), source)
    mask = pa.array(~(need | column_mask(vis.is_valid())))
    filled = pa.ListArray.from_arrays(pa.array(out_off, pa.int32()), values, mask=mask)
    i = table.schema.get_field_index("keypoint_visibility")
    field = table.schema.field(i)
    return table.set_column(i, field, filled.cast(field.type))
