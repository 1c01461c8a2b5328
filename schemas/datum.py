"""Datums: the training samples of a dataset, each grouping one or more assets by role."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar

from pydantic import Field, field_validator

from schemas._base import LakeModel, utcnow
from schemas._common import IdStr, JsonDict, SplitName, UtcDateTime, id_factory
from schemas._types import Index, PrimaryKey

__all__ = ["Datum"]

_ROLE_RE = re.compile(r"[a-z][a-z0-9_]*")


class Datum(LakeModel):
    """One sample: named roles (e.g. "image", "depth") mapped to asset ids, plus a split."""

    __table__: ClassVar[str] = "datums"

    datum_id: Annotated[IdStr, PrimaryKey()] = Field(default_factory=id_factory("datum"))
    assets: dict[str, str] = Field(
        description='Role -> asset id, e.g. {"image": "asset_…", "mask": "asset_…"}.'
    )
    split: Annotated[SplitName | None, Index("BITMAP")] = Field(
        default=None, description='Free-form split name, e.g. "train", "val", "trainval".'
    )
    metadata: JsonDict = Field(default_factory=dict)
    created_at: UtcDateTime = Field(default_factory=utcnow)
    updated_at: UtcDateTime = Field(default_factory=utcnow)
    created_by: str | None = None

    @field_validator("assets")
    @classmethod
    def _check_assets(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError('assets needs at least one role, e.g. {"image": asset_id}')
        for role, asset_id in value.items():
            if not _ROLE_RE.fullmatch(role):
                raise ValueError(
                    f"role {role!r} is invalid; roles are lower-case identifiers matching "
                    "[a-z][a-z0-9_]* (e.g. 'image', 'depth_map')"
                )
            if not asset_id.strip():
                raise ValueError(f"role {role!r} has a blank asset id; pass the asset's id")
        return value
