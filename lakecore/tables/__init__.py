"""Versioned Lance tables: one per entity, schemas derived from ``schemas/`` models."""

from lakecore.tables.arrow import from_arrow, layout, to_arrow
from lakecore.tables.spec import ENTITY_TABLES, TableSpec, entity_specs
from lakecore.tables.store import TableStore
from lakecore.tables.write import Append, Delete, Op, Reindex, Upsert, apply_op

__all__ = [
    "ENTITY_TABLES",
    "Append",
    "Delete",
    "Op",
    "Reindex",
    "TableSpec",
    "TableStore",
    "Upsert",
    "apply_op",
    "entity_specs",
    "from_arrow",
    "layout",
    "to_arrow",
]
