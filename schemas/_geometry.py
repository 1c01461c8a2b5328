"""Geometry value types and checks used by annotation records (re-exported by ``annotation``)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field, field_validator

from schemas._base import LakeModel
from schemas._common import INT32_MAX, check_finite
from schemas._types import F32, I32

__all__ = [
    "RLE",
    "PolygonPart",
    "check_bbox",
    "check_ellipse",
    "check_flat_points",
    "check_keypoint_visibility",
    "check_rotated_bbox",
]


def check_flat_points(values: Sequence[float], what: str, min_points: int) -> None:
    """Check a flat ``[x0, y0, x1, y1, ...]`` list: finite, even length, enough points."""
    check_finite(values, what)
    if len(values) % 2:
        raise ValueError(
            f"{what} has an odd number of coordinates ({len(values)}); "
            "pass flat x, y pairs: [x0, y0, x1, y1, ...]"
        )
    if len(values) < 2 * min_points:
        raise ValueError(
            f"{what} has {len(values) // 2} point(s) but needs at least {min_points} "
            f"({2 * min_points} numbers)"
        )


def check_bbox(value: Sequence[float]) -> None:
    """Check an ``(x, y, w, h)`` box: finite, w and h >= 0."""
    check_finite(value, "bbox")
    if value[2] < 0 or value[3] < 0:
        raise ValueError(
            f"bbox width/height must be >= 0 (got w={value[2]}, h={value[3]}); "
            "bbox is (x, y, w, h) with a top-left origin, not (x1, y1, x2, y2)"
        )


def check_rotated_bbox(value: Sequence[float]) -> None:
    """Check a ``(cx, cy, w, h, angle_deg)`` box: finite, w and h >= 0."""
    check_finite(value, "rotated_bbox")
    if value[2] < 0 or value[3] < 0:
        raise ValueError(
            f"rotated_bbox width/height must be >= 0 (got w={value[2]}, h={value[3]}); "
            "rotated_bbox is (cx, cy, w, h, angle_degrees)"
        )


def check_ellipse(value: Sequence[float]) -> None:
    """Check a ``(cx, cy, rx, ry, rotation)`` ellipse: finite, radii >= 0."""
    check_finite(value, "ellipse")
    if value[2] < 0 or value[3] < 0:
        raise ValueError(
            f"ellipse radii must be >= 0 (got rx={value[2]}, ry={value[3]}); "
            "ellipse is (cx, cy, rx, ry, rotation)"
        )


def check_keypoint_visibility(visibility: Sequence[int], keypoints: Sequence[float]) -> None:
    """Check one visibility flag in {0, 1, 2} per keypoint."""
    if len(visibility) * 2 != len(keypoints):
        raise ValueError(
            f"keypoint_visibility has {len(visibility)} entries but keypoints has "
            f"{len(keypoints) // 2} point(s); pass one flag per point"
        )
    bad = sorted({v for v in visibility if v not in (0, 1, 2)})
    if bad:
        raise ValueError(
            f"keypoint_visibility values must be 0 (not labelled), 1 (labelled, not visible) "
            f"or 2 (visible); got {bad}"
        )


class PolygonPart(LakeModel):
    """One polygon part: an exterior ring and optional holes, as flat x, y lists (pixels)."""

    exterior: list[F32] = Field(description="Flat [x0, y0, x1, y1, ...]; at least 3 points.")
    holes: list[list[F32]] = Field(
        default_factory=list, description="Interior rings, same layout as exterior."
    )

    @field_validator("exterior")
    @classmethod
    def _check_exterior(cls, value: list[float]) -> list[float]:
        check_flat_points(value, "exterior ring", 3)
        return value

    @field_validator("holes")
    @classmethod
    def _check_holes(cls, value: list[list[float]]) -> list[list[float]]:
        for i, ring in enumerate(value):
            check_flat_points(ring, f"holes[{i}] ring", 3)
        return value


class RLE(LakeModel):
    """A COCO compressed run-length-encoded mask (as produced by pycocotools ``encode``)."""

    height: I32 = Field(gt=0, le=INT32_MAX, description="Mask height in pixels.")
    width: I32 = Field(gt=0, le=INT32_MAX, description="Mask width in pixels.")
    counts: str = Field(description="COCO compressed RLE string (column-major runs).")

    @field_validator("counts")
    @classmethod
    def _check_counts(cls, value: str) -> str:
        if not value:
            raise ValueError("counts must be a non-empty COCO compressed RLE string")
        if any(not 48 <= ord(ch) <= 111 for ch in value):
            raise ValueError(
                "counts is not a COCO compressed RLE string (characters must be in '0'..'o'); "
                "if you have uncompressed counts, encode them with pycocotools.mask.frPyObjects"
            )
        return value
