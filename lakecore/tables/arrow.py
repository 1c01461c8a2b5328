"""Pydantic model -> Arrow schema, and rows both ways. The one place the mapping lives.

Mapping (see ``schemas._types``):

=============================== ==========================================================
Python annotation               Arrow type
=============================== ==========================================================
``str`` / ``StrEnum``           ``string``
``int`` / ``I32`` / ``I8``      ``int64`` / ``int32`` / ``int8``
``float`` / ``F32``             ``float64`` / ``float32``
``bool``                        ``bool``
``datetime``                    ``timestamp[us, UTC]``
``tuple[T, T, …]`` (n items)    ``fixed_size_list<T, n>`` (bbox: ``fixed_size_list<float32,4>``)
``list[T]``                     ``list<T>``
``dict[str, str | int]``        ``map<string, string | int64>``
``dict[str, Any]``              ``string`` holding JSON (metadata, attributes, stats)
nested ``LakeModel``            ``struct``
``T | None``                    nullable ``T``; everything else is ``not null``
=============================== ==========================================================

The field marked ``PrimaryKey()`` carries ``lance-schema:unenforced-primary-key`` so concurrent
upserts cannot duplicate keys; ``Index(kind)`` markers become the table's scalar indices.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, TypeVar, Union, get_args, get_origin

import pyarrow as pa
from pydantic import BaseModel

from lakecore.errors import SchemaError
from schemas._types import ArrowType, Index, PrimaryKey, Token

__all__ = ["FieldInfo", "ModelLayout", "from_arrow", "layout", "to_arrow"]

M = TypeVar("M", bound=BaseModel)
PK_META = {b"lance-schema:unenforced-primary-key": b"true"}
RAW_META = {b"lance-encoding:compression": b"none"}
"""Stores a column uncompressed (``Token`` fields and primary keys: random ids)."""
_NARROW = {"float32": pa.float32(), "int8": pa.int8(), "int32": pa.int32()}


@dataclass(frozen=True)
class FieldInfo:
    """How one model field is stored."""

    name: str
    arrow: pa.DataType
    nullable: bool
    json: bool  # dict[str, Any] stored as a JSON string
    map_: bool  # dict[str, X] stored as an Arrow map
    index: str | None
    primary_key: bool
    token: bool = False  # random ids: stored uncompressed


@dataclass(frozen=True)
class ModelLayout:
    """The Arrow layout of a model: its schema, key and indices."""

    model: type[BaseModel]
    schema: pa.Schema
    fields: tuple[FieldInfo, ...]
    key: str | None
    indices: tuple[tuple[str, str], ...]

    @property
    def json_fields(self) -> tuple[str, ...]:
        """Fields stored as JSON strings."""
        return tuple(f.name for f in self.fields if f.json)


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
        raise SchemaError(f"unions of several types are not storable: {tp}")
    return tp, False


def _arrow_type(tp: Any, where: str) -> tuple[pa.DataType, bool, bool]:
    """Return (arrow type, is_json, is_map) for an annotation without Optional."""
    narrow: pa.DataType | None = None
    while True:
        if get_origin(tp) is typing.Annotated:
            base, *meta = get_args(tp)
            for m in meta:
                if isinstance(m, ArrowType):
                    narrow = _NARROW[m.name]
            tp = base
            continue
        stripped, was_optional = _strip_optional(tp)
        if not was_optional:
            break
        tp = stripped
    if narrow is not None:
        return narrow, False, False
    origin = get_origin(tp)
    if tp is str:
        return pa.string(), False, False
    if tp is bool:
        return pa.bool_(), False, False
    if tp is int:
        return pa.int64(), False, False
    if tp is float:
        return pa.float64(), False, False
    if tp is datetime:
        return pa.timestamp("us", tz="UTC"), False, False
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return pa.string(), False, False
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return pa.struct(_struct_fields(tp)), False, False
    if origin is tuple:
        args = get_args(tp)
        if not args or Ellipsis in args or len({repr(a) for a in args}) != 1:
            raise SchemaError(f"{where}: only fixed-size tuples of one type are storable ({tp})")
        inner, _, _ = _arrow_type(args[0], where)
        return pa.list_(inner, len(args)), False, False
    if origin is list:
        inner_tp, inner_null = _strip_optional(get_args(tp)[0])
        inner, _, _ = _arrow_type(inner_tp, where)
        return pa.list_(pa.field("item", inner, nullable=inner_null)), False, False
    if origin is dict:
        _key, value_tp = get_args(tp)
        if value_tp is Any:
            return pa.string(), True, False
        value, _, _ = _arrow_type(value_tp, where)
        return pa.map_(pa.string(), value), False, True
    raise SchemaError(f"{where}: the type {tp!r} has no Arrow mapping")


def _field_info(model: type[BaseModel], name: str) -> FieldInfo:
    finfo = model.model_fields[name]
    hints = typing.get_type_hints(model, include_extras=True)
    tp = hints[name]
    meta = list(finfo.metadata)
    nullable = False
    inner = tp
    while True:
        if get_origin(inner) is typing.Annotated:
            meta.extend(get_args(inner)[1:])
            inner = get_args(inner)[0]
            continue
        inner, was_optional = _strip_optional(inner)
        if not was_optional:
            break
        nullable = True
    arrow, is_json, is_map = _arrow_type(tp, f"{model.__name__}.{name}")
    index = next((m.kind for m in meta if isinstance(m, Index)), None)
    pk = any(isinstance(m, PrimaryKey) for m in meta)
    token = pa.types.is_string(arrow) and (pk or any(isinstance(m, Token) for m in meta))
    return FieldInfo(name, arrow, nullable, is_json, is_map, index, pk, token)


def _struct_fields(model: type[BaseModel]) -> list[pa.Field]:
    out = []
    for name in model.model_fields:
        info = _field_info(model, name)
        meta = RAW_META if info.token else None
        out.append(pa.field(name, info.arrow, nullable=info.nullable, metadata=meta))
    return out


@cache
def layout(model: type[BaseModel]) -> ModelLayout:
    """Return (and cache) the Arrow layout of a model."""
    infos = tuple(_field_info(model, n) for n in model.model_fields)
    keys = [f.name for f in infos if f.primary_key]
    if len(keys) > 1:
        raise SchemaError(f"{model.__name__} declares several primary keys: {keys}")
    fields = []
    for f in infos:
        meta = {**(PK_META if f.primary_key else {}), **(RAW_META if f.token else {})}
        fields.append(
            pa.field(
                f.name, f.arrow, nullable=f.nullable and not f.primary_key, metadata=meta or None
            )
        )
    indices = tuple((f.name, f.index) for f in infos if f.index)
    if keys:
        indices = ((keys[0], "BTREE"), *(i for i in indices if i[0] != keys[0]))
    return ModelLayout(model, pa.schema(fields), infos, keys[0] if keys else None, indices)


def _to_storage(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, BaseModel):
        return {k: _to_storage(v) for k, v in value.__dict__.items()}
    if isinstance(value, (list, tuple)):
        return [_to_storage(v) for v in value]
    return value


def to_arrow(models: Sequence[BaseModel], model: type[BaseModel] | None = None) -> pa.Table:
    """Convert model instances to an Arrow table with the model's schema."""
    if model is None:
        if not models:
            raise ValueError("to_arrow() of no rows needs the model class")
        model = type(models[0])
    lay = layout(model)
    columns: dict[str, list[Any]] = {f.name: [] for f in lay.fields}
    for row in models:
        values = row.__dict__
        for f in lay.fields:
            v = values[f.name]
            if f.json:
                v = json.dumps(v, sort_keys=True, default=str)
            elif f.map_ and v is not None:
                v = list(v.items())
            else:
                v = _to_storage(v)
            columns[f.name].append(v)
    try:
        return pa.table(columns, schema=lay.schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SchemaError(f"rows do not fit the {model.__name__} table: {exc}") from exc


def from_arrow(table: pa.Table | pa.RecordBatch, model: type[M]) -> list[M]:
    """Convert Arrow rows back to validated model instances."""
    lay = layout(model)
    rows = table.to_pylist()
    json_fields = lay.json_fields
    map_fields = tuple(f.name for f in lay.fields if f.map_)
    out = []
    for row in rows:
        for name in json_fields:
            if row.get(name) is not None:
                row[name] = json.loads(row[name])
        for name in map_fields:
            if row.get(name) is not None:
                row[name] = dict(row[name])
        row = {k: v for k, v in row.items() if k in model.model_fields}
        out.append(model.model_validate(row))
    return out
