"""Table specifications: name, Arrow schema, primary key and scalar indices."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import pyarrow as pa
from pydantic import BaseModel

from lakecore.tables.arrow import layout
from schemas import TABLE_MODELS

__all__ = ["ENTITY_TABLES", "TableSpec", "entity_specs"]


@dataclass(frozen=True)
class TableSpec:
    """What a lake table is: its name, schema, key and the indices lookups use."""

    name: str
    schema: pa.Schema
    key: str | None
    indices: tuple[tuple[str, str], ...]
    model: type[BaseModel] | None = None

    @classmethod
    def from_model(cls, model: type[BaseModel]) -> TableSpec:
        """Derive the spec of an entity table from its model (``__table__`` names it)."""
        lay = layout(model)
        name = model.__table__  # type: ignore[attr-defined]
        return cls(name, lay.schema, lay.key, lay.indices, model)


@cache
def entity_specs() -> dict[str, TableSpec]:
    """The entity tables of every lake, by name."""
    return {spec.name: spec for spec in map(TableSpec.from_model, TABLE_MODELS)}


ENTITY_TABLES = tuple(m.__table__ for m in TABLE_MODELS)  # type: ignore[attr-defined]
