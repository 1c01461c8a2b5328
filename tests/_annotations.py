"""Test data for the annotation tests: seeded assets/datums, valid rows of every kind, and the
corruptions each validation rule must catch."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from lakecore.entities.annotations import Annotations
from lakecore.tables import Append, to_arrow
from lakecore.tables.arrow import layout
from schemas import (
    AnnotationKind,
    AnnotationRecord,
    AnnotationSchema,
    Asset,
    Datum,
    StorageRef,
)

KINDS = [k.value for k in AnnotationKind]
LABEL_IDS = {"cat": 1, "dog": 2}
ASSETS = [f"asset_t{i}" for i in range(4)]
DATUMS = ["datum_t0", "datum_t1"]


def seed(lake: Any) -> None:
    """Commit the assets and datums the records reference."""
    assets = []
    for aid in ASSETS:
        sha = hashlib.sha256(aid.encode()).hexdigest()
        ref = StorageRef(mount="lake", key=f"blob/{sha}", sha256=sha, size=1)
        assets.append(
            Asset(
                asset_id=aid,
                kind="image",
                media_type="image/png",
                sha256=sha,
                size_bytes=1,
                storage=ref,
            )
        )
    datums = [Datum(datum_id=d, assets={"image": ASSETS[i]}) for i, d in enumerate(DATUMS)]
    lake.commit(
        [Append("assets", to_arrow(assets, Asset)), Append("datums", to_arrow(datums, Datum))]
    )


def full_schema(ann: Annotations, **overrides: Any) -> AnnotationSchema:
    """A schema allowing every kind, with labels, scores, keypoint names and attributes."""
    labels = [{"name": n, "label_id": i} for n, i in LABEL_IDS.items()]
    attributes = [
        {"name": "occluded", "type": "bool", "required": True},
        {"name": "color", "type": "enum", "choices": ["red", "blue"]},
        {"name": "count", "type": "int"},
        {"name": "area", "type": "float"},
        {"name": "note", "type": "string"},
    ]
    args: dict[str, Any] = {
        "task_type": "other",
        "labels": labels,
        "allowed_kinds": KINDS,
        "allow_scores": True,
        "keypoint_names": ["nose", "l_eye", "r_eye"],
        "skeleton": [(0, 1), (0, 2)],
        "attributes": attributes,
    }
    args.update(overrides)
    return ann.create_schema("full", **args)


def _relax(t: pa.DataType) -> pa.DataType:
    """The same type with every nested field nullable, fixed-size lists as list<double>."""
    if pa.types.is_fixed_size_list(t):
        return pa.list_(pa.float64())
    if pa.types.is_list(t):
        return pa.list_(_relax(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _relax(f.type)) for f in t])
    return t


_FILLED = {"annotation_id", "set_id", "created_at"}
INPUT_SCHEMA = pa.schema(
    [
        pa.field(f.name, _relax(f.type))
        for f in layout(AnnotationRecord).schema
        if f.name not in _FILLED
    ]
)


def arrow_rows(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows (dicts) as an Arrow table of the relaxed input schema."""
    return pa.Table.from_pylist(rows, schema=INPUT_SCHEMA)


def valid_row(kind: str, rng: random.Random) -> dict[str, Any]:
    """A random valid record of ``kind`` for a set with :func:`full_schema`."""

    def f(lo: float = 0.0, hi: float = 500.0) -> float:
        return rng.uniform(lo, hi)

    label = rng.choice(["cat", "dog"])
    attrs: dict[str, Any] = {"occluded": rng.random() < 0.5}
    if rng.random() < 0.5:
        attrs.update(color=rng.choice(["red", "blue"]), count=rng.randint(0, 9), area=f())
    row: dict[str, Any] = {
        "kind": kind,
        "label": label,
        "label_id": LABEL_IDS[label] if rng.random() < 0.5 else None,
        "score": rng.random() if rng.random() < 0.5 else None,
        "attributes": json.dumps(attrs),
        "metadata": rng.choice(["{}", '{"source": "import", "n": [1, 2]}']),
    }
    target = rng.randrange(3)
    row["asset_id"] = rng.choice(ASSETS) if target != 1 else None
    row["datum_id"] = rng.choice(DATUMS) if target != 0 else None
    row.update(_geometry(kind, rng, f))
    return row


def _geometry(kind: str, rng: random.Random, f: Callable[..., float]) -> dict[str, Any]:
    if kind == "bbox":
        return {"bbox": [f(), f(), f(), f()]}
    if kind == "rotated_bbox":
        return {"rotated_bbox": [f(), f(), f(), f(), f(-180, 180)]}
    if kind == "ellipse":
        return {"ellipse": [f(), f(), f(), f(), f(-180, 180)]}
    if kind == "polygon":
        holes = [[f(), f(), f(), f(), f(), f()]] if rng.random() < 0.5 else []
        return {
            "polygon": [{"exterior": [f() for _ in range(2 * rng.randint(3, 6))], "holes": holes}]
        }
    if kind == "polyline":
        return {"polyline": [f() for _ in range(2 * rng.randint(2, 5))]}
    if kind == "keypoints":
        return {
            "keypoints": [f() for _ in range(6)],
            "keypoint_visibility": [rng.choice([0, 1, 2]) for _ in range(3)],
        }
    if kind == "mask":
        if rng.random() < 0.5:
            return {"mask_rle": {"height": 4, "width": 4, "counts": "0420o"}}
        return {"mask_asset_id": rng.choice(ASSETS), "mask_value": rng.randint(0, 255)}
    if kind == "caption":
        return {"text": "a cat on a mat", "label": rng.choice(["", "cat"]), "label_id": None}
    return {}


# name -> (kinds it applies to (None: all), mutation, field the error must name)
Corruption = tuple[tuple[str, ...] | None, Callable[[dict[str, Any]], None], str]
_GEOM = tuple(k for k in KINDS if k not in ("classification",))


def _missing_geometry(row: dict[str, Any]) -> None:
    for c in (
        "bbox",
        "rotated_bbox",
        "polygon",
        "polyline",
        "ellipse",
        "keypoints",
        "mask_rle",
        "mask_asset_id",
        "mask_value",
        "text",
    ):
        row.pop(c, None)


def _mask_both(row: dict[str, Any]) -> None:
    row["mask_rle"] = {"height": 2, "width": 2, "counts": "04"}
    row["mask_asset_id"] = ASSETS[0]


def _set(**values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda row: row.update(values)


def _set_in(key: str, sub: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(row: dict[str, Any]) -> None:
        row[key] = {**row[key], sub: value}

    return mutate


def _ring(exterior: list[float] | None = None, hole: list[float] | None = None) -> Callable:
    def mutate(row: dict[str, Any]) -> None:
        part = dict(row["polygon"][0])
        if exterior is not None:
            part["exterior"] = exterior
        if hole is not None:
            part["holes"] = [hole]
        row["polygon"] = [part]

    return mutate


CORRUPTIONS: dict[str, Corruption] = {
    "unknown_kind": (None, _set(kind="blob"), "kind"),
    "blank_label": (tuple(k for k in KINDS if k != "caption"), _set(label=" "), "label"),
    "label_not_in_schema": (None, _set(label="zebra", label_id=None), "label"),
    "label_id_mismatch": (
        tuple(k for k in KINDS if k != "caption"),
        lambda r: r.update(label="cat", label_id=7),
        "label_id",
    ),
    "no_asset_or_datum": (None, _set(asset_id=None, datum_id=None), "asset_id"),
    "unknown_asset": (None, _set(asset_id="asset_missing"), "asset_id"),
    "unknown_datum": (None, _set(datum_id="datum_missing"), "datum_id"),
    "score_above_max": (None, _set(score=1.5), "score"),
    "score_below_min": (None, _set(score=-0.5), "score"),
    "score_nan": (None, _set(score=math.nan), "score"),
    "blank_source_name": (None, _set(source_name="  "), "source_name"),
    "unknown_source_kind": (None, _set(source_kind="alien"), "source_kind"),
    "attribute_wrong_type": (None, _set(attributes='{"occluded": "yes"}'), "attributes"),
    "attribute_int_as_float": (
        None,
        _set(attributes='{"occluded": true, "count": 1.5}'),
        "attributes",
    ),
    "attribute_required_missing": (None, _set(attributes='{"color": "red"}'), "attributes"),
    "attribute_unknown": (None, _set(attributes='{"occluded": true, "nope": 1}'), "attributes"),
    "attribute_enum_choice": (
        None,
        _set(attributes='{"occluded": true, "color": "green"}'),
        "attributes",
    ),
    "attributes_not_object": (None, _set(attributes="[1, 2]"), "attributes"),
    "attributes_not_json": (None, _set(attributes='{"occluded": tru'), "attributes"),
    "attributes_nan": (None, _set(attributes='{"occluded": true, "area": NaN}'), "attributes"),
    "metadata_trailing_comma": (None, _set(metadata='{"a": 1,}'), "metadata"),
    "foreign_geometry_text": (tuple(k for k in KINDS if k != "caption"), _set(text="hi"), "text"),
    "foreign_geometry_bbox": (
        ("caption", "polygon", "classification"),
        _set(bbox=[1.0, 2.0, 3.0, 4.0]),
        "bbox",
    ),
    "missing_geometry": (("bbox",), _missing_geometry, "bbox"),
    "missing_polygon": (("polygon",), _missing_geometry, "polygon"),
    "missing_mask": (("mask",), _missing_geometry, "mask_rle"),
    "missing_text": (("caption",), _missing_geometry, "text"),
    "bbox_negative_width": (("bbox",), lambda r: r["bbox"].__setitem__(2, -1.0), "bbox"),
    "bbox_negative_height": (("bbox",), lambda r: r["bbox"].__setitem__(3, -2.0), "bbox"),
    "bbox_nan": (("bbox",), lambda r: r["bbox"].__setitem__(0, math.nan), "bbox"),
    "bbox_overflows_float32": (("bbox",), lambda r: r["bbox"].__setitem__(1, 1e39), "bbox"),
    "bbox_three_values": (("bbox",), lambda r: r["bbox"].pop(), "bbox"),
    "rotated_negative_height": (
        ("rotated_bbox",),
        lambda r: r["rotated_bbox"].__setitem__(3, -1.0),
        "rotated_bbox",
    ),
    "ellipse_negative_rx": (("ellipse",), lambda r: r["ellipse"].__setitem__(2, -1.0), "ellipse"),
    "polygon_no_parts": (("polygon",), _set(polygon=[]), "polygon"),
    "polygon_two_points": (("polygon",), _ring(exterior=[0.0, 0.0, 1.0, 1.0]), "polygon"),
    "polygon_odd_coordinates": (("polygon",), _ring(exterior=[0.0, 0, 1, 1, 2, 2, 3]), "polygon"),
    "polygon_hole_two_points": (("polygon",), _ring(hole=[0.0, 0.0, 1.0, 1.0]), "polygon"),
    "polygon_infinite": (("polygon",), _ring(exterior=[0.0, 0, 1, 1, math.inf, 2]), "polygon"),
    "polyline_one_point": (("polyline",), _set(polyline=[0.0, 0.0]), "polyline"),
    "polyline_odd": (("polyline",), _set(polyline=[0.0, 0.0, 1.0, 1.0, 2.0]), "polyline"),
    "keypoints_odd": (("keypoints",), _set(keypoints=[1.0, 2, 3, 4, 5, 6, 7]), "keypoints"),
    "keypoints_vs_schema_names": (
        ("keypoints",),
        _set(keypoints=[1.0, 2, 3, 4], keypoint_visibility=[2, 2]),
        "keypoints",
    ),
    "visibility_length": (("keypoints",), _set(keypoint_visibility=[2, 2]), "keypoint_visibility"),
    "visibility_value": (
        ("keypoints",),
        _set(keypoint_visibility=[2, 3, 0]),
        "keypoint_visibility",
    ),
    "mask_rle_and_asset": (("mask",), _mask_both, "mask_rle"),
    "rle_bad_counts": (
        ("mask",),
        _set(
            mask_rle={"height": 2, "width": 2, "counts": "4~"}, mask_asset_id=None, mask_value=None
        ),
        "mask_rle",
    ),
    "rle_zero_height": (
        ("mask",),
        _set(
            mask_rle={"height": 0, "width": 2, "counts": "4"}, mask_asset_id=None, mask_value=None
        ),
        "mask_rle",
    ),
    "mask_value_without_asset": (
        ("mask",),
        _set(mask_rle={"height": 1, "width": 1, "counts": "1"}, mask_asset_id=None, mask_value=3),
        "mask_value",
    ),
    "mask_value_negative": (
        ("mask",),
        _set(mask_rle=None, mask_asset_id=ASSETS[1], mask_value=-1),
        "mask_value",
    ),
    "unknown_mask_asset": (
        ("mask",),
        _set(mask_rle=None, mask_asset_id="asset_missing", mask_value=None),
        "mask_asset_id",
    ),
    "blank_caption": (("caption",), _set(text="   "), "text"),
}
"""Every rule of ``add``: apply to a valid row of a listed kind; the error names the field."""


def applicable(kind: str) -> list[str]:
    """Corruptions that apply to a valid row of ``kind`` (for the full schema)."""
    return [name for name, (kinds, _, _) in CORRUPTIONS.items() if kinds is None or kind in kinds]


def corrupt(row: dict[str, Any], name: str) -> tuple[dict[str, Any], str]:
    """A corrupted deep copy of ``row`` and the field the error must name."""
    _, mutate, field = CORRUPTIONS[name]
    bad = copy.deepcopy(row)
    mutate(bad)
    return bad, field
