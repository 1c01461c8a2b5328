"""Annotation enums, schemas (label spaces and rules) and sets; re-exported by ``annotation``."""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Sequence
from typing import Annotated, ClassVar, Self

from pydantic import Field, field_validator, model_validator

from schemas._base import LakeModel, utcnow
from schemas._common import (
    INT32_MAX,
    INT32_MIN,
    IdStr,
    JsonDict,
    NonBlankStr,
    UtcDateTime,
    id_factory,
)
from schemas._types import I32, Index, PrimaryKey

__all__ = [
    "AnnotationKind",
    "AnnotationSchema",
    "AnnotationSet",
    "AnnotationSetPurpose",
    "AnnotationSetStatus",
    "AttributeRule",
    "AttributeType",
    "LabelDef",
    "SourceKind",
    "TaskType",
]


class TaskType(enum.StrEnum):
    """The vision task an annotation schema is for."""

    CLASSIFICATION = "classification"
    DETECTION = "detection"
    SEGMENTATION = "segmentation"
    INSTANCE_SEGMENTATION = "instance_segmentation"
    KEYPOINTS = "keypoints"
    CAPTIONING = "captioning"
    OTHER = "other"


class AnnotationKind(enum.StrEnum):
    """The geometry type of one annotation record."""

    CLASSIFICATION = "classification"
    BBOX = "bbox"
    ROTATED_BBOX = "rotated_bbox"
    POLYGON = "polygon"
    POLYLINE = "polyline"
    ELLIPSE = "ellipse"
    KEYPOINTS = "keypoints"
    MASK = "mask"
    CAPTION = "caption"


class SourceKind(enum.StrEnum):
    """Who or what produced an annotation."""

    HUMAN = "human"
    MODEL = "model"
    IMPORT = "import"
    RULE = "rule"


class LabelDef(LakeModel):
    """One label (class) of an annotation schema."""

    name: NonBlankStr = Field(description="The label string records carry in `label`.")
    label_id: I32 | None = Field(
        default=None, ge=INT32_MIN, le=INT32_MAX, description="Numeric class id, if any."
    )
    display_name: str | None = None
    color: str | None = Field(default=None, description='Display color, e.g. "#ff8800".')
    supercategory: str | None = None


class AttributeType(enum.StrEnum):
    """Value type of an annotation attribute."""

    STRING = "string"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    ENUM = "enum"


def _require_unique(values: Sequence[str | int], what: str) -> None:
    dupes = sorted(str(v) for v, n in Counter(values).items() if n > 1)
    if dupes:
        raise ValueError(f"{what} must be unique; duplicated: {dupes}")


class AttributeRule(LakeModel):
    """Declares one attribute records may (or must) carry in `attributes`."""

    name: NonBlankStr
    type: AttributeType = AttributeType.STRING
    required: bool = False
    choices: list[str] = Field(
        default_factory=list, description="Allowed values; required iff type is 'enum'."
    )

    @model_validator(mode="after")
    def _check_choices(self) -> Self:
        if self.type is AttributeType.ENUM and not self.choices:
            raise ValueError(
                f"attribute {self.name!r} has type 'enum' but no choices; list the allowed values"
            )
        if self.type is not AttributeType.ENUM and self.choices:
            raise ValueError(
                f"attribute {self.name!r} has choices but type {self.type.value!r}; "
                "use type='enum' or drop choices"
            )
        _require_unique(self.choices, f"choices of attribute {self.name!r}")
        return self


class AnnotationSchema(LakeModel):
    """A label space plus the rules records of an annotation set must follow."""

    __table__: ClassVar[str] = "annotation_schemas"

    schema_id: Annotated[IdStr, PrimaryKey()] = Field(default_factory=id_factory("annschema"))
    name: Annotated[NonBlankStr, Index("BTREE")]
    version: NonBlankStr = "1"
    task_type: TaskType
    allowed_kinds: list[AnnotationKind] = Field(
        description="Annotation kinds records of this schema may have (at least one)."
    )
    labels: list[LabelDef] = Field(default_factory=list)
    attributes: list[AttributeRule] = Field(default_factory=list)
    allow_additional_attributes: bool = Field(
        default=False, description="Whether records may carry attributes not declared here."
    )
    allow_scores: bool = False
    require_scores: bool = False
    score_min: float = Field(default=0.0, allow_inf_nan=False)
    score_max: float = Field(default=1.0, allow_inf_nan=False)
    keypoint_names: list[str] = Field(
        default_factory=list, description="Keypoint order for kind 'keypoints'."
    )
    skeleton: list[tuple[I32, I32]] = Field(
        default_factory=list, description="Edges as 0-based index pairs into keypoint_names."
    )
    metadata: JsonDict = Field(default_factory=dict)
    created_at: UtcDateTime = Field(default_factory=utcnow)
    created_by: str | None = None

    @field_validator("allowed_kinds")
    @classmethod
    def _unique_kinds(cls, value: list[AnnotationKind]) -> list[AnnotationKind]:
        if not value:
            raise ValueError("allowed_kinds must list at least one kind, e.g. ['bbox']")
        _require_unique([k.value for k in value], "allowed_kinds")
        return value

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, value: list[LabelDef]) -> list[LabelDef]:
        _require_unique([lab.name for lab in value], "label names")
        _require_unique([lab.label_id for lab in value if lab.label_id is not None], "label_ids")
        return value

    @field_validator("attributes")
    @classmethod
    def _unique_attributes(cls, value: list[AttributeRule]) -> list[AttributeRule]:
        _require_unique([a.name for a in value], "attribute names")
        return value

    @field_validator("keypoint_names")
    @classmethod
    def _unique_keypoints(cls, value: list[str]) -> list[str]:
        if any(not n.strip() for n in value):
            raise ValueError("keypoint_names must not contain empty names")
        _require_unique(value, "keypoint_names")
        return value

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        if self.require_scores and not self.allow_scores:
            raise ValueError("require_scores=True needs allow_scores=True; set both")
        if self.score_min > self.score_max:
            raise ValueError(
                f"score_min ({self.score_min}) must be <= score_max ({self.score_max})"
            )
        n = len(self.keypoint_names)
        if self.skeleton and not n:
            raise ValueError("skeleton needs keypoint_names; define keypoint_names first")
        for i, (a, b) in enumerate(self.skeleton):
            if not (0 <= a < n and 0 <= b < n):
                raise ValueError(
                    f"skeleton[{i}] = ({a}, {b}) is out of range; indices are 0-based into "
                    f"keypoint_names (0..{n - 1})"
                )
        return self

    def label_names(self) -> list[str]:
        """Return the label names in declaration order."""
        return [lab.name for lab in self.labels]

    def score_in_range(self, score: float) -> bool:
        """Return True when ``score`` is finite and within ``[score_min, score_max]``."""
        return math.isfinite(score) and self.score_min <= score <= self.score_max


class AnnotationSetPurpose(enum.StrEnum):
    """Why an annotation set exists."""

    GROUND_TRUTH = "ground_truth"
    PREDICTION = "prediction"
    REVIEW = "review"
    SNAPSHOT = "snapshot"
    OTHER = "other"


class AnnotationSetStatus(enum.StrEnum):
    """Lifecycle state of an annotation set."""

    DRAFT = "draft"
    ACTIVE = "active"
    ARCHIVED = "archived"


class AnnotationSet(LakeModel):
    """A named group of annotation records from one source (e.g. ground truth, a model run)."""

    __table__: ClassVar[str] = "annotation_sets"

    set_id: Annotated[IdStr, PrimaryKey()] = Field(default_factory=id_factory("annset"))
    name: Annotated[NonBlankStr, Index("BTREE")]
    purpose: AnnotationSetPurpose
    source_kind: SourceKind
    schema_id: Annotated[str | None, Index("BTREE")] = Field(
        default=None, description="AnnotationSchema the records follow, if any."
    )
    status: AnnotationSetStatus = AnnotationSetStatus.ACTIVE
    metadata: JsonDict = Field(default_factory=dict)
    created_at: UtcDateTime = Field(default_factory=utcnow)
    updated_at: UtcDateTime = Field(default_factory=utcnow)
    created_by: str | None = None
