"""Dataset versions (immutable, pinned snapshots) and the tag history that names them."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Self

from pydantic import AfterValidator, Field, field_validator, model_validator

from schemas._base import LakeModel, utcnow
from schemas._common import IdStr, JsonDict, UtcDateTime, has_space_or_control, id_factory
from schemas._types import Index, PrimaryKey, Token

__all__ = ["DatasetMember", "DatasetTag", "DatasetVersion"]

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
RESERVED_VERSION = "latest"
"""Resolves to the newest version; never a stored version or tag string."""


def _check_dataset_name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise ValueError(
            f"dataset_name {value!r} is invalid; use 1-128 characters from A-Z, a-z, 0-9, "
            "'_', '.', '-', starting with a letter or digit"
        )
    return value


def _check_version(value: str) -> str:
    if not 1 <= len(value) <= 128:
        raise ValueError(f"version/tag must be 1-128 characters long (got {len(value)})")
    if has_space_or_control(value):
        raise ValueError(f"version/tag {value!r} must not contain whitespace or control characters")
    if "@" in value:
        raise ValueError(f"version/tag {value!r} must not contain '@' (refs are 'name@version')")
    if value == RESERVED_VERSION:
        raise ValueError(
            f"{RESERVED_VERSION!r} is reserved (it always means the newest version); "
            "pick another version/tag string, e.g. 'v3'"
        )
    return value


DatasetName = Annotated[str, AfterValidator(_check_dataset_name)]
VersionStr = Annotated[str, AfterValidator(_check_version)]


class DatasetVersion(LakeModel):
    """An immutable dataset version: the table versions it pins and what it contains."""

    __table__: ClassVar[str] = "dataset_versions"

    version_id: Annotated[IdStr, PrimaryKey()] = Field(default_factory=id_factory("dsv"))
    dataset_name: Annotated[DatasetName, Index("BTREE")]
    version: VersionStr = Field(description='Version string, e.g. "v3" or "2024-05-01".')
    parent_version_id: str | None = Field(
        default=None, description="Version this one was derived from, if any."
    )
    message: str | None = None
    author: str | None = None
    catalog_version: int = Field(
        ge=0, description="Lake catalog version this dataset version was cut from."
    )
    pins: dict[str, int] = Field(
        default_factory=dict, description="Table name -> Lance table version it reads."
    )
    datum_count: int = Field(default=0, ge=0)
    annotation_set_ids: list[str] = Field(
        default_factory=list,
        description="Annotation sets the version reads; empty = every record on its datums.",
    )
    stats: JsonDict = Field(default_factory=dict)
    metadata: JsonDict = Field(default_factory=dict)
    created_at: UtcDateTime = Field(default_factory=utcnow)

    @field_validator("pins")
    @classmethod
    def _check_pins(cls, value: dict[str, int]) -> dict[str, int]:
        for table, version in value.items():
            if not table.strip():
                raise ValueError("pins has a blank table name; keys are table names")
            if version < 0:
                raise ValueError(f"pins[{table!r}] = {version} must be a Lance version >= 0")
        return value

    @model_validator(mode="after")
    def _check_parent(self) -> Self:
        if self.parent_version_id == self.version_id:
            raise ValueError("parent_version_id must differ from version_id")
        return self

    @property
    def ref(self) -> str:
        """Return ``"name@version"``."""
        return f"{self.dataset_name}@{self.version}"


class DatasetTag(LakeModel):
    """One append-only tag event; the newest event per (dataset_name, tag) wins."""

    __table__: ClassVar[str] = "dataset_tags"

    event_id: Annotated[IdStr, PrimaryKey()] = Field(default_factory=id_factory("dstag"))
    dataset_name: Annotated[DatasetName, Index("BTREE")]
    tag: VersionStr = Field(description='Tag name, e.g. "prod"; never "latest".')
    version_id: str | None = Field(
        default=None, description="Tagged DatasetVersion; None records that the tag was removed."
    )
    at: UtcDateTime = Field(default_factory=utcnow)
    by: str | None = None


class DatasetMember(LakeModel):
    """One datum in the current membership of a dataset (versions pin this table's versions).

    The row id is deterministic (``dataset_name/datum_id``), so committing a version that adds or
    removes k datums writes k rows, and a version reads its members by time travel.
    """

    __table__: ClassVar[str] = "dataset_members"

    member_id: Annotated[str, PrimaryKey()] = Field(
        default="", description='Deterministic: "{dataset_name}/{datum_id}" (computed when empty).'
    )
    dataset_name: Annotated[DatasetName, Index("BTREE")]
    datum_id: Annotated[IdStr, Index("BTREE"), Token()]
    split: str | None = Field(default=None, description="The datum's split in this dataset.")

    @model_validator(mode="before")
    @classmethod
    def _compute_id(cls, data: object) -> object:
        if isinstance(data, dict) and not data.get("member_id"):
            return {**data, "member_id": f"{data.get('dataset_name')}/{data.get('datum_id')}"}
        return data

    @model_validator(mode="after")
    def _check_id(self) -> Self:
        expected = f"{self.dataset_name}/{self.datum_id}"
        if self.member_id != expected:
            raise ValueError(f"member_id must be {expected!r} (got {self.member_id!r})")
        return self
