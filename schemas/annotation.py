"""Annotation records and the public face of the annotation model family.

Enums, label definitions, schemas and sets live in ``schemas._annotation_schema`` and the
geometry value types in ``schemas._geometry``; import all of them from here.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Self

from pydantic import Field, field_validator, model_validator

from schemas._annotation_schema import (
    AnnotationKind,
    AnnotationSchema,
    AnnotationSet,
    AnnotationSetPurpose,
    AnnotationSetStatus,
    AttributeRule,
    AttributeType,
    LabelDef,
    SourceKind,
    TaskType,
)
from schemas._base import LakeModel, utcnow
from schemas._common import (
    INT32_MAX,
    INT32_MIN,
    IdStr,
    JsonDict,
    NonBlankStr,
    UtcDateTime,
    check_finite,
    id_factory,
)
from schemas._geometry import (
    RLE,
    PolygonPart,
    check_bbox,
    check_ellipse,
    check_flat_points,
    check_keypoint_visibility,
    check_rotated_bbox,
)
from schemas._types import F32, I8, I32, Index, PrimaryKey

__all__ = [
    "RLE",
    "AnnotationKind",
    "AnnotationRecord",
    "AnnotationSchema",
    "AnnotationSet",
    "AnnotationSetPurpose",
    "AnnotationSetStatus",
    "AttributeRule",
    "AttributeType",
    "LabelDef",
    "PolygonPart",
    "Provenance",
    "SourceKind",
    "TaskType",
]


class Provenance(LakeModel):
    """Who or what produced an annotation; an input convenience flattened into the record."""

    kind: SourceKind
    name: NonBlankStr = Field(description='Annotator, tool or model name, e.g. "yolov8n".')
    version: str | None = None
    run_id: str | None = None


_GEOMETRY_FIELDS: tuple[str, ...] = (
    "bbox",
    "rotated_bbox",
    "polygon",
    "polyline",
    "ellipse",
    "keypoints",
    "keypoint_visibility",
    "mask_rle",
    "mask_asset_id",
    "mask_value",
    "text",
)

# kind -> (fields of which one must be set, fields that may be set)
_KIND_GEOMETRY: dict[AnnotationKind, tuple[tuple[str, ...], frozenset[str]]] = {
    AnnotationKind.CLASSIFICATION: ((), frozenset()),
    AnnotationKind.BBOX: (("bbox",), frozenset({"bbox"})),
    AnnotationKind.ROTATED_BBOX: (("rotated_bbox",), frozenset({"rotated_bbox"})),
    AnnotationKind.POLYGON: (("polygon",), frozenset({"polygon"})),
    AnnotationKind.POLYLINE: (("polyline",), frozenset({"polyline"})),
    AnnotationKind.ELLIPSE: (("ellipse",), frozenset({"ellipse"})),
    AnnotationKind.KEYPOINTS: (("keypoints",), frozenset({"keypoints", "keypoint_visibility"})),
    AnnotationKind.MASK: (
        ("mask_rle", "mask_asset_id"),
        frozenset({"mask_rle", "mask_asset_id", "mask_value"}),
    ),
    AnnotationKind.CAPTION: (("text",), frozenset({"text"})),
}

GEOMETRY_FIELDS = _GEOMETRY_FIELDS
"""Every geometry column of an annotation record."""
KIND_GEOMETRY = _KIND_GEOMETRY
"""kind -> (fields of which one must be set, fields that may be set)."""

_FLAT_SOURCE_FIELDS = ("source_kind", "source_name", "source_version", "run_id")


class AnnotationRecord(LakeModel):
    """One annotation (label + geometry of its kind) on an asset and/or datum.

    Exactly the geometry field(s) of ``kind`` are set and all others are None:
    classification → none; bbox → ``bbox``; rotated_bbox → ``rotated_bbox``; polygon →
    ``polygon``; polyline → ``polyline``; ellipse → ``ellipse``; keypoints → ``keypoints``
    (+ ``keypoint_visibility``, filled with 2 = visible when omitted); mask → ``mask_rle``
    or ``mask_asset_id`` (+ optional ``mask_value``); caption → ``text``. Coordinates are
    pixels with a top-left origin. Pass ``source=Provenance(...)`` instead of the flat
    ``source_*``/``run_id`` fields if convenient.
    """

    __table__: ClassVar[str] = "annotation_records"

    annotation_id: Annotated[IdStr, PrimaryKey()] = Field(default_factory=id_factory("ann"))
    set_id: Annotated[NonBlankStr, Index("BTREE")]
    asset_id: Annotated[str | None, Index("BTREE")] = Field(
        default=None, description="The asset this annotation labels."
    )
    datum_id: Annotated[str | None, Index("BTREE")] = Field(
        default=None, description="The datum (multi-asset sample) this annotation labels."
    )
    kind: Annotated[AnnotationKind, Index("BITMAP")]
    label: Annotated[str, Index("BITMAP")] = Field(
        default="", description='Label name; may be "" only for kind caption.'
    )
    label_id: I32 | None = Field(default=None, ge=INT32_MIN, le=INT32_MAX)
    score: F32 | None = Field(default=None, description="Confidence, for predictions.")
    bbox: tuple[F32, F32, F32, F32] | None = Field(default=None, description="(x, y, w, h).")
    rotated_bbox: tuple[F32, F32, F32, F32, F32] | None = Field(
        default=None, description="(cx, cy, w, h, angle in degrees)."
    )
    polygon: list[PolygonPart] | None = Field(default=None, description="One or more parts.")
    polyline: list[F32] | None = Field(default=None, description="Flat [x0, y0, x1, y1, ...].")
    ellipse: tuple[F32, F32, F32, F32, F32] | None = Field(
        default=None, description="(cx, cy, rx, ry, rotation in degrees)."
    )
    keypoints: list[F32] | None = Field(default=None, description="Flat [x0, y0, x1, y1, ...].")
    keypoint_visibility: list[I8] | None = Field(
        default=None,
        description="Per keypoint: 0 = not labelled, 1 = labelled not visible, 2 = visible.",
    )
    mask_rle: RLE | None = None
    mask_asset_id: str | None = Field(default=None, description="Asset holding the mask image.")
    mask_value: I32 | None = Field(
        default=None,
        ge=0,
        le=INT32_MAX,
        description="Pixel value of this record in the mask asset (only with mask_asset_id).",
    )
    text: str | None = Field(default=None, description="Caption text (kind caption).")
    source_kind: Annotated[SourceKind, Index("BITMAP")]
    source_name: NonBlankStr = Field(description="Annotator, tool or model name.")
    source_version: str | None = None
    run_id: str | None = Field(default=None, description="Id of the job/model run, if any.")
    attributes: JsonDict = Field(default_factory=dict)
    metadata: JsonDict = Field(default_factory=dict)
    created_at: UtcDateTime = Field(default_factory=utcnow)
    created_by: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _expand_inputs(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "source" in data:
            given = [f for f in _FLAT_SOURCE_FIELDS if data.get(f) is not None]
            if given:
                raise ValueError(
                    f"pass either source=Provenance(...) or the flat fields {given}, not both"
                )
            src = data.pop("source")
            prov = src if isinstance(src, Provenance) else Provenance.model_validate(src)
            data.update(
                source_kind=prov.kind,
                source_name=prov.name,
                source_version=prov.version,
                run_id=prov.run_id,
            )
        points = data.get("keypoints")
        if (
            data.get("kind") == AnnotationKind.KEYPOINTS
            and points is not None
            and data.get("keypoint_visibility") is None
            and len(points) % 2 == 0
        ):
            data["keypoint_visibility"] = [2] * (len(points) // 2)
        return data

    @field_validator("score")
    @classmethod
    def _finite_score(cls, value: float | None) -> float | None:
        if value is not None:
            check_finite([value], "score")
        return value

    @field_validator("bbox")
    @classmethod
    def _check_bbox(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is not None:
            check_bbox(value)
        return value

    @field_validator("rotated_bbox")
    @classmethod
    def _check_rotated(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is not None:
            check_rotated_bbox(value)
        return value

    @field_validator("ellipse")
    @classmethod
    def _check_ellipse(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is not None:
            check_ellipse(value)
        return value

    @field_validator("polygon")
    @classmethod
    def _check_polygon(cls, value: list[PolygonPart] | None) -> list[PolygonPart] | None:
        if value is not None and not value:
            raise ValueError("polygon needs at least one part; pass [PolygonPart(exterior=...)]")
        return value

    @field_validator("polyline")
    @classmethod
    def _check_polyline(cls, value: list[float] | None) -> list[float] | None:
        if value is not None:
            check_flat_points(value, "polyline", 2)
        return value

    @field_validator("keypoints")
    @classmethod
    def _check_keypoints(cls, value: list[float] | None) -> list[float] | None:
        if value is not None:
            check_flat_points(value, "keypoints", 1)
        return value

    @model_validator(mode="after")
    def _check_kind_geometry(self) -> Self:
        kind = self.kind
        one_of, allowed = _KIND_GEOMETRY[kind]
        present = [f for f in _GEOMETRY_FIELDS if getattr(self, f) is not None]
        missing = bool(one_of) and not any(f in present for f in one_of)
        unexpected = [f for f in present if f not in allowed]
        if missing or unexpected:
            problems = []
            if missing:
                problems.append(f"missing field {' or '.join(one_of)}")
            if unexpected:
                problems.append(f"unexpected field(s) {', '.join(unexpected)} (must be None)")
            wanted = ", ".join(sorted(allowed)) if allowed else "no geometry"
            raise ValueError(
                f"kind {kind.value!r}: {'; '.join(problems)}. A {kind.value!r} record takes "
                f"{wanted}; fix kind or the geometry fields"
            )
        if kind is AnnotationKind.MASK:
            if self.mask_rle is not None and self.mask_asset_id is not None:
                raise ValueError(
                    "kind 'mask' takes exactly one of mask_rle or mask_asset_id, not both"
                )
            if self.mask_value is not None and self.mask_asset_id is None:
                raise ValueError("mask_value is only meaningful with mask_asset_id; drop it")
        if self.keypoints is not None and self.keypoint_visibility is not None:
            check_keypoint_visibility(self.keypoint_visibility, self.keypoints)
        if kind is AnnotationKind.CAPTION and not (self.text and self.text.strip()):
            raise ValueError("kind 'caption' requires non-empty text")
        if kind is not AnnotationKind.CAPTION and not self.label.strip():
            raise ValueError(
                f"label is required for kind {kind.value!r}; only captions may leave it empty"
            )
        if self.asset_id is None and self.datum_id is None:
            raise ValueError("set asset_id and/or datum_id: an annotation must label something")
        return self
