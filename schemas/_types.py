"""Pure-Python markers that tell ``lakecore.tables.arrow`` how to store a field.

They are attached with :class:`typing.Annotated` and carry no I/O and no pyarrow: the
mapping from a marker to an Arrow type lives in exactly one place, ``lakecore/tables/arrow.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

__all__ = [
    "F32",
    "I8",
    "I32",
    "ArrowType",
    "Index",
    "IndexKind",
    "PrimaryKey",
    "Token",
]

IndexKind = Literal["BTREE", "BITMAP", "LABEL_LIST", "INVERTED"]


@dataclass(frozen=True)
class ArrowType:
    """Narrows the storage type of a numeric field (``float32``, ``int8``, ``int32``)."""

    name: Literal["float32", "int8", "int32"]


@dataclass(frozen=True)
class PrimaryKey:
    """Marks the field that identifies a row; upserts and lookups use it."""


@dataclass(frozen=True)
class Token:
    """Marks a string column of random ids (about one distinct value per row): stored as is.

    Such strings do not compress much (hex ids: ~35% by FSST) while compressing them is most of
    the cost of writing them: 1,000 membership rows are written in ~7 ms compressed and
    ~1.5 ms raw with Lance 14 (measured). Primary keys are tokens without the marker.
    """


@dataclass(frozen=True)
class Index:
    """Asks for a scalar index on the field (lookups and filters use it)."""

    kind: IndexKind = "BTREE"


F32 = Annotated[float, ArrowType("float32")]
"""A float stored as float32 (geometry, scores)."""

I8 = Annotated[int, ArrowType("int8")]
"""An int stored as int8 (keypoint visibility)."""

I32 = Annotated[int, ArrowType("int32")]
"""An int stored as int32 (pixel sizes, label ids)."""
