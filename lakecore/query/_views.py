"""The SQL text of lake SQL: helper macros, derived views and dataset-version names.

Pure strings and parsing, no DuckDB import: the engine and the user connection
(``QueryEngine.duckdb()``) both build their views from these definitions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "DERIVED",
    "MACROS",
    "VERSION_PARTS",
    "DatasetRef",
    "derived_sql",
    "parse_ref",
    "quote_ident",
    "quote_literal",
]


def _intersection(x1: str, y1: str, w1: str, h1: str, x2: str, y2: str, w2: str, h2: str) -> str:
    return (
        f"greatest(0, least({x1} + {w1}, {x2} + {w2}) - greatest({x1}, {x2})) "
        f"* greatest(0, least({y1} + {h1}, {y2} + {h2}) - greatest({y1}, {y2}))"
    )


def _iou(*box: str) -> str:
    inter = _intersection(*box)
    union = f"({box[2]} * {box[3]} + {box[6]} * {box[7]} - {inter})"
    return f"CASE WHEN {union} > 0 THEN {inter} / {union} ELSE 0.0 END"


_SCALARS = ("x1", "y1", "w1", "h1", "x2", "y2", "w2", "h2")
_ARRAYS = ("a[1]", "a[2]", "a[3]", "a[4]", "b[1]", "b[2]", "b[3]", "b[4]")

MACROS: tuple[str, ...] = (
    # area of an (x, y, w, h) box, from its width and height or from a FLOAT[4] bbox
    "CREATE OR REPLACE MACRO box_area(w, h) AS w * h, (bbox) AS bbox[3] * bbox[4]",
    # area of the overlap of two (x, y, w, h) boxes (0 when they do not overlap)
    f"CREATE OR REPLACE MACRO box_intersection({', '.join(_SCALARS)}) AS "
    f"{_intersection(*_SCALARS)}, (a, b) AS {_intersection(*_ARRAYS)}",
    # intersection over union of two (x, y, w, h) boxes, 0.0 when both are empty
    f"CREATE OR REPLACE MACRO iou({', '.join(_SCALARS)}) AS {_iou(*_SCALARS)}, "
    f"(a, b) AS {_iou(*_ARRAYS)}",
)
"""Macros every lake SQL connection has (created once per DuckDB database)."""

_BOXES = """
SELECT annotation_id, set_id, asset_id, datum_id, label, label_id, score,
       source_kind, source_name, run_id,
       bbox[1] AS x, bbox[2] AS y, bbox[3] AS w, bbox[4] AS h, bbox[3] * bbox[4] AS area,
       bbox, attributes, created_at
FROM {records}
WHERE kind = 'bbox' AND bbox IS NOT NULL
"""

_ANNOTATIONS = """
SELECT r.*, s.name AS set_name, s.purpose AS purpose,
       r.bbox[1] AS x, r.bbox[2] AS y, r.bbox[3] AS w, r.bbox[4] AS h,
       r.bbox[3] * r.bbox[4] AS area
FROM {records} AS r LEFT JOIN {sets} AS s ON s.set_id = r.set_id
"""

_DATUM_ASSETS = """
SELECT datum_id, split, unnest(map_keys(assets)) AS role, unnest(map_values(assets)) AS asset_id
FROM {datums}
"""

DERIVED: dict[str, tuple[str, dict[str, str]]] = {
    "boxes": (_BOXES, {"records": "annotation_records"}),
    "annotations": (_ANNOTATIONS, {"records": "annotation_records", "sets": "annotation_sets"}),
    "datum_assets": (_DATUM_ASSETS, {"datums": "datums"}),
}
"""Derived views: name -> (SQL template, placeholder -> the base table it reads)."""


def derived_sql(name: str, sources: dict[str, str]) -> str:
    """The SELECT of derived view ``name`` over the given (quoted) relations."""
    template, _ = DERIVED[name]
    return template.format(**sources).strip()


def quote_ident(name: str) -> str:
    """A DuckDB identifier, double-quoted."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """A DuckDB string literal."""
    return "'" + value.replace("'", "''") + "'"


VERSION_PARTS = ("datums", "annotations", "boxes", "assets", "members", "datum_assets")
"""What ``"name@version/<part>"`` may name; ``"name@version"`` alone is the datums."""

_REF = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]{0,127})@(?P<rest>[^@\s]+)")


@dataclass(frozen=True)
class DatasetRef:
    """A dataset version named in SQL: ``"voc-train@1.0.0/annotations"``."""

    text: str
    dataset: str
    version: str
    part: str


def parse_ref(text: str) -> DatasetRef | None:
    """Parse ``name@version[/part]``; None when ``text`` is not such a name."""
    m = _REF.fullmatch(text)
    if m is None:
        return None
    rest = m["rest"]
    part = "datums"
    head, sep, tail = rest.rpartition("/")
    if sep and tail in VERSION_PARTS and head:
        rest, part = head, tail
    return DatasetRef(text, m["name"], rest, part)
