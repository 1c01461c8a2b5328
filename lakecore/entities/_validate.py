"""Vectorized validation of annotation records: one pass of pyarrow/numpy per rule, no row loop.

Every rule turns the whole batch into a boolean "bad row" mask. :class:`Failures` keeps the
lowest failing row over all rules (ties go to the rule checked first) and raises one
:class:`~lakecore.errors.ValidationError` naming that row, the field and what is wrong; only the
message of that one row is built in Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakecore.entities._codes import Codes, Column, column_mask, combined
from lakecore.entities._json import JsonColumn
from lakecore.errors import ValidationError
from schemas import AnnotationKind, SourceKind
from schemas.annotation import GEOMETRY_FIELDS, KIND_GEOMETRY

__all__ = [
    "Codes",
    "Column",
    "Failures",
    "check_free_labels",
    "check_structure",
    "column_mask",
    "combined",
    "show",
]

Describe: TypeAlias = Callable[[int], str]

KINDS = [k.value for k in AnnotationKind]
_SOURCES = [s.value for s in SourceKind]
_FIXED = {  # column -> (length, name of item 2, name of item 3)
    "bbox": (4, "width", "height"),
    "rotated_bbox": (5, "width", "height"),
    "ellipse": (5, "rx", "ry"),
}
_RLE_DIMS = ("height", "width")
_RLE_COUNTS = r"^[0-o]+$"  # COCO compressed RLE characters: '0' (48) .. 'o' (111)


def show(value: Any, limit: int = 80) -> str:
    """A short repr of a value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class _Hit:
    row: int
    field: str
    describe: Describe
    count: int


class Failures:
    """Collects failing-row masks and raises for the lowest failing row.

    ``codes``: a dict of encoded columns of the same table to use and fill, so checks run one
    after another (record rules, then references) encode each column once.
    """

    def __init__(self, table: pa.Table, codes: dict[str, Codes] | None = None) -> None:
        self.table = table
        self.n = table.num_rows
        self.best: _Hit | None = None
        self._json: dict[str, JsonColumn] = {}
        self._codes: dict[str, Codes] = {} if codes is None else codes

    def codes(self, field: str) -> Codes:
        """The distinct values of column ``field`` and their positions, encoded once."""
        if field not in self._codes:
            self._codes[field] = Codes.of(self.table[field])
        return self._codes[field]

    def json(self, field: str) -> JsonColumn:
        """The JSON-string column ``field``, encoded once per validation."""
        if field not in self._json:
            self._json[field] = JsonColumn(self.table[field])
        return self._json[field]

    def value(self, field: str, row: int) -> Any:
        """The Python value of ``field`` at ``row``."""
        return self.table[field][row].as_py()

    def flag(self, mask: Column | np.ndarray, field: str, describe: Describe) -> None:
        """Record the rows where ``mask`` is true as failing ``field``."""
        if not _any(mask):  # the usual case: no row fails (no positions to list)
            return
        bad = np.flatnonzero(column_mask(mask))
        if self.best is None or bad[0] < self.best.row:
            self.best = _Hit(int(bad[0]), field, describe, int(bad.size))

    def raise_first(self) -> None:
        """Raise a ValidationError for the lowest failing row, if any."""
        hit = self.best
        if hit is None:
            return
        reason = hit.describe(hit.row)
        more = f" ({hit.count - 1} more row(s) fail this check)" if hit.count > 1 else ""
        raise ValidationError(
            f"row {hit.row}, field {hit.field}: {reason}{more}; nothing was written",
            row=hit.row,
            field=hit.field,
            reason=reason,
            failing_rows=hit.count,
        )


def _any(mask: Column | np.ndarray) -> bool:
    """True when a boolean mask holds a true value (nulls count as false)."""
    if isinstance(mask, np.ndarray):
        return bool(mask.any())
    return bool(pc.any(mask).as_py())  # on the bitmaps: no byte per row


def rows_of(parents: Column, bad_items: Column | np.ndarray, n: int) -> np.ndarray:
    """Rows (by list parent index) owning at least one bad item."""
    mask = np.zeros(n, dtype=bool)
    idx = np.asarray(combined(parents).to_numpy(zero_copy_only=False))
    mask[idx[column_mask(bad_items)]] = True
    return mask


def _matrix(col: Column, k: int) -> np.ndarray:
    """A fixed-size-list<float, k> column as an (n, k) float array (nulls -> NaN)."""
    arr = combined(col)
    vals = arr.values.slice(arr.offset * k, len(arr) * k)
    return np.asarray(vals.to_numpy(zero_copy_only=False)).reshape(-1, k)


def check_structure(f: Failures) -> None:
    """Flag rows breaking the kind, geometry, score, source and JSON rules of a record."""
    t = f.table
    kinds = f.codes("kind")
    per_value = pc.fill_null(pc.index_in(kinds.values, pa.array(KINDS)), -1).to_numpy()
    code = np.append(np.asarray(per_value, np.int64), -1)[kinds.index]
    f.flag(code < 0, "kind", lambda r: f"kind {show(f.value('kind', r))} is not one of {KINDS}")
    _check_target_and_label(f)
    used = {c for c in GEOMETRY_FIELDS if t[c].null_count < f.n}
    seen = {int(c) for c in np.asarray(per_value).tolist()} | ({-1} if kinds.nulls else set())
    _check_geometry_presence(f, code, used, seen)
    for name, (k, a, b) in _FIXED.items():
        if name in used:
            _check_fixed(f, name, k, a, b)
    if "polygon" in used:
        _check_polygon(f)
    if "polyline" in used:
        _check_points(f, "polyline", combined(t["polyline"]), 2)
    if used & {"keypoints", "keypoint_visibility"}:
        _check_keypoints(f)
    if used & {"mask_rle", "mask_asset_id", "mask_value", "text"}:
        _check_mask(f)
    score = t["score"]
    f.flag(
        pc.and_(score.is_valid(), pc.invert(pc.is_finite(score))),
        "score",
        lambda r: f"score {f.value('score', r)} is not a finite float32",
    )
    sources = f.codes("source_kind")
    f.flag(
        sources.rows(pc.invert(pc.is_in(sources.values, pa.array(_SOURCES))), null=True),
        "source_kind",
        lambda r: f"source_kind {show(f.value('source_kind', r))} is not one of {_SOURCES}",
    )
    names = f.codes("source_name")
    f.flag(
        names.rows(_blank(names.values), null=True),
        "source_name",
        lambda r: "source_name must not be blank",
    )
    for name in ("attributes", "metadata"):
        _check_json(f, name)


def _check_json(f: Failures, name: str) -> None:
    f.flag(
        ~f.json(name).object_mask(),
        name,
        lambda r: (
            f"{show(f.value(name, r))} is not a JSON object "
            "(finite numbers only, no trailing commas)"
        ),
    )


def _blank(col: Column) -> Column:
    return pc.fill_null(pc.equal(pc.utf8_trim_whitespace(col), ""), True)


def caption_rows(f: Failures) -> np.ndarray:
    """Rows of kind caption."""
    kinds = f.codes("kind")
    return kinds.rows(pc.equal(kinds.values, AnnotationKind.CAPTION.value))


def _check_target_and_label(f: Failures) -> None:
    t = f.table
    f.flag(
        pc.and_(t["asset_id"].is_null(), t["datum_id"].is_null()),
        "asset_id",
        lambda r: "set asset_id and/or datum_id: an annotation must label something",
    )
    kinds, labels = f.codes("kind"), f.codes("label")
    not_caption = kinds.rows(pc.not_equal(kinds.values, AnnotationKind.CAPTION.value))
    f.flag(
        not_caption & labels.rows(_blank(labels.values), null=True),
        "label",
        lambda r: (
            f"label is required for kind {show(f.value('kind', r))}; "
            "only captions may leave it empty"
        ),
    )


def _check_geometry_presence(f: Failures, code: np.ndarray, used: set[str], seen: set[int]) -> None:
    """Exactly the geometry fields of each row's kind (``code`` indexes KINDS, -1 unknown);
    ``used`` are the geometry columns with at least one value, ``seen`` the kind codes in the
    batch (rules of absent kinds are skipped: no row to gather)."""
    t = f.table
    absent = np.zeros(f.n, dtype=bool)
    present = {c: column_mask(t[c].is_valid()) if c in used else absent for c in GEOMETRY_FIELDS}
    for c in GEOMETRY_FIELDS:  # in this order: the first field flagged on a row is reported
        if c not in used:
            continue
        # per kind code (and a last entry for -1, unknown: reported by the kind check)
        may = [KIND_GEOMETRY.get(AnnotationKind(k), ((), frozenset()))[1] for k in KINDS]
        foreign = np.array([c not in fields for fields in may] + [False])
        if foreign[list(seen)].any():
            _flag_foreign(f, c, present[c] & foreign[code])
    for k, (one_of, _) in KIND_GEOMETRY.items():
        if one_of and KINDS.index(k.value) in seen:
            has = np.logical_or.reduce([present[c] for c in one_of])
            missing = (code == KINDS.index(k.value)) & ~has
            f.flag(missing, one_of[0], _text(f"kind {k.value!r} requires {' or '.join(one_of)}"))


def _text(reason: str) -> Describe:
    return lambda r: reason


def _flag_foreign(f: Failures, field: str, wrong: np.ndarray) -> None:
    f.flag(
        wrong,
        field,
        lambda r: f"kind {show(f.value('kind', r))} does not take {field} (it must be null)",
    )


def _check_fixed(f: Failures, name: str, k: int, a: str, b: str) -> None:
    col = f.table[name]
    m = _matrix(col, k)
    if col.null_count == 0 and np.isfinite(m).all() and not (m[:, 2:4] < 0).any():
        return  # the usual case, checked on the whole block at once (1M boxes: 32 -> 9 ms)
    present = column_mask(col.is_valid())
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(m).all(axis=1)
        f.flag(
            present & ~finite,
            name,
            lambda r: f"values must be finite float32 numbers (got {f.value(name, r)})",
        )
        _flag_negative(f, name, m, 2, a, present & finite)
        _flag_negative(f, name, m, 3, b, present & finite)


def _flag_negative(
    f: Failures, name: str, m: np.ndarray, i: int, what: str, ok: np.ndarray
) -> None:
    with np.errstate(invalid="ignore"):
        f.flag(ok & (m[:, i] < 0), name, lambda r: f"{what} {float(m[r, i])} < 0")


def _check_points(
    f: Failures,
    field: str,
    lists: pa.Array,
    min_points: int,
    rows: np.ndarray | None = None,
    what: str | None = None,
) -> None:
    """Flat [x0, y0, ...] lists: not null inside, even length, enough points, finite.

    ``rows`` maps each list to its record row when the lists are nested (polygon rings).
    """
    n = f.n
    what = what or field
    present = column_mask(lists.is_valid())
    length = np.asarray(pc.fill_null(pc.list_value_length(lists), 0).to_numpy(), dtype=np.int64)
    values = pc.list_flatten(lists)
    bad_value = pc.invert(pc.fill_null(pc.is_finite(values), False))
    nonfinite = rows_of(pc.list_parent_indices(lists), bad_value, len(lists))

    def to_rows(mask: np.ndarray) -> np.ndarray:
        if rows is None:
            return mask
        out = np.zeros(n, dtype=bool)
        out[rows[mask]] = True
        return out

    def value(r: int) -> str:
        return show(f.value(field, r))

    if rows is not None:
        f.flag(to_rows(~present), field, lambda r: f"{what} must not be null (got {value(r)})")
    f.flag(
        to_rows(present & (length % 2 == 1)),
        field,
        lambda r: f"{what} has an odd number of coordinates; pass flat x, y pairs (got {value(r)})",
    )
    f.flag(
        to_rows(present & (length < 2 * min_points)),
        field,
        lambda r: f"{what} needs at least {min_points} point(s) (got {value(r)})",
    )
    f.flag(
        to_rows(present & nonfinite),
        field,
        lambda r: f"{what} must contain only finite float32 numbers (got {value(r)})",
    )


def _check_polygon(f: Failures) -> None:
    poly = combined(f.table["polygon"])
    present = column_mask(poly.is_valid())
    nparts = np.asarray(pc.fill_null(pc.list_value_length(poly), 0).to_numpy(), dtype=np.int64)
    f.flag(
        present & (nparts == 0),
        "polygon",
        lambda r: "polygon needs at least one part ([{'exterior': [...], 'holes': []}])",
    )
    parts = pc.list_flatten(poly)
    part_row = np.asarray(pc.list_parent_indices(poly).to_numpy(), dtype=np.int64)
    f.flag(
        rows_of(pc.list_parent_indices(poly), parts.is_null(), f.n),
        "polygon",
        lambda r: f"a polygon part is null (got {show(f.value('polygon', r))})",
    )
    exterior = combined(pc.struct_field(parts, "exterior"))
    _check_points(f, "polygon", exterior, 3, rows=part_row, what="an exterior ring")
    holes = combined(pc.struct_field(parts, "holes"))
    f.flag(
        rows_of(pc.list_parent_indices(poly), pc.and_(parts.is_valid(), holes.is_null()), f.n),
        "polygon",
        lambda r: "polygon holes must be a list (may be empty)",
    )
    hole_part = np.asarray(pc.list_parent_indices(holes).to_numpy(), dtype=np.int64)
    rings = combined(pc.list_flatten(holes))
    _check_points(f, "polygon", rings, 3, rows=part_row[hole_part], what="a hole ring")


def _check_keypoints(f: Failures) -> None:
    t = f.table
    points = combined(t["keypoints"])
    _check_points(f, "keypoints", points, 1)
    vis = combined(t["keypoint_visibility"])
    both = pc.and_(points.is_valid(), vis.is_valid())
    npts = pc.divide(pc.list_value_length(points), 2)
    f.flag(
        pc.and_(both, pc.not_equal(pc.list_value_length(vis), npts)),
        "keypoint_visibility",
        lambda r: (
            f"keypoint_visibility has {len(f.value('keypoint_visibility', r))} "
            f"entries but keypoints has {len(f.value('keypoints', r)) // 2} point(s)"
        ),
    )
    flags = pc.list_flatten(vis)
    bad = pc.invert(pc.fill_null(pc.is_in(flags, pa.array([0, 1, 2], pa.int8())), False))
    f.flag(
        rows_of(pc.list_parent_indices(vis), bad, f.n),
        "keypoint_visibility",
        lambda r: (
            "values must be 0 (not labelled), 1 (labelled, not visible) or 2 "
            f"(visible); got {show(f.value('keypoint_visibility', r))}"
        ),
    )


def _check_mask(f: Failures) -> None:
    t = f.table
    rle, asset, value = t["mask_rle"], t["mask_asset_id"], t["mask_value"]
    f.flag(
        pc.and_(rle.is_valid(), asset.is_valid()),
        "mask_rle",
        lambda r: "kind 'mask' takes exactly one of mask_rle or mask_asset_id, not both",
    )
    f.flag(
        pc.and_(value.is_valid(), asset.is_null()),
        "mask_value",
        lambda r: "mask_value is only meaningful with mask_asset_id; drop it",
    )
    f.flag(pc.less(value, 0), "mask_value", lambda r: f"mask_value {f.value('mask_value', r)} < 0")
    rle = combined(rle)
    present = rle.is_valid()
    small = [pc.fill_null(pc.less_equal(pc.struct_field(rle, d), 0), True) for d in _RLE_DIMS]
    f.flag(
        pc.and_(present, pc.or_(*small)),
        "mask_rle",
        lambda r: f"mask_rle height and width must be > 0 (got {f.value('mask_rle', r)})",
    )
    counts = pc.struct_field(rle, "counts")
    ok = pc.fill_null(pc.match_substring_regex(counts, _RLE_COUNTS), False)
    f.flag(
        pc.and_(present, pc.invert(ok)),
        "mask_rle",
        lambda r: (
            "mask_rle counts must be a non-empty COCO compressed RLE string "
            f"(characters '0'..'o'); got {show(f.value('mask_rle', r))}"
        ),
    )
    text = t["text"]
    f.flag(
        caption_rows(f) & column_mask(text.is_valid()) & column_mask(_blank(text)),
        "text",
        lambda r: "kind 'caption' requires non-empty text",
    )


def check_free_labels(f: Failures) -> None:
    """Labels of a set without schema (any text) may not hold control characters; a schema's
    labels are checked when the schema is made. Checked on the distinct labels only."""
    labels = f.codes("label")
    f.flag(
        labels.rows(pc.match_substring_regex(labels.values, r"[\p{Cc}]")),
        "label",
        lambda r: f"label {show(f.value('label', r))} contains control characters",
    )
