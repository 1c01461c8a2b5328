"""Assets (stored payloads with their metadata), aliases and alias history."""

from __future__ import annotations

import enum
from typing import Annotated, ClassVar, Self

from pydantic import AfterValidator, Field, field_validator, model_validator

from schemas._base import LakeModel, utcnow
from schemas._common import (
    INT32_MAX,
    IdStr,
    JsonDict,
    NonBlankStr,
    Sha256,
    UtcDateTime,
    has_space_or_control,
    id_factory,
)
from schemas._types import I32, Index, PrimaryKey, Token
from schemas.storage import StorageRef

__all__ = [
    "ASSET_ID_PREFIX",
    "Alias",
    "AliasAction",
    "AliasEvent",
    "Asset",
    "AssetKind",
    "SubjectKind",
]

ASSET_ID_PREFIX = "asset_"
"""Every asset id starts with this; aliases may not (so an id and an alias never collide)."""


class AssetKind(enum.StrEnum):
    """What an asset's payload is."""

    IMAGE = "image"
    MASK = "mask"
    VIDEO = "video"
    POINTCLOUD = "pointcloud"
    DOCUMENT = "document"
    EMBEDDING = "embedding"
    ARTIFACT = "artifact"
    BLOB = "blob"
    OTHER = "other"


class SubjectKind(enum.StrEnum):
    """What kind of entity a derived asset (e.g. a mask) belongs to."""

    ASSET = "asset"
    ANNOTATION = "annotation"


class Asset(LakeModel):
    """One stored payload (image, mask, video, ...) and its descriptive metadata."""

    __table__: ClassVar[str] = "assets"

    asset_id: Annotated[IdStr, PrimaryKey()] = Field(default_factory=id_factory("asset"))
    kind: Annotated[AssetKind, Index("BITMAP")]
    media_type: str = Field(description='IANA media type, e.g. "image/jpeg".')
    sha256: Annotated[Sha256, Index("BTREE"), Token()] = Field(
        description="SHA-256 of the payload."
    )
    size_bytes: int = Field(ge=0, description="Payload size in bytes.")
    width: I32 | None = Field(default=None, ge=0, le=INT32_MAX, description="Pixels, if known.")
    height: I32 | None = Field(default=None, ge=0, le=INT32_MAX, description="Pixels, if known.")
    storage: StorageRef = Field(description="Primary location of the payload.")
    replicas: list[StorageRef] = Field(
        default_factory=list, description="Further copies of the same payload."
    )
    subject_kind: SubjectKind | None = Field(
        default=None, description="Kind of entity this asset derives from (set with subject_id)."
    )
    subject_id: str | None = Field(
        default=None, description="Id of the asset/annotation this asset derives from."
    )
    metadata: JsonDict = Field(default_factory=dict)
    created_at: UtcDateTime = Field(default_factory=utcnow)
    updated_at: UtcDateTime = Field(default_factory=utcnow)
    created_by: str | None = None

    @field_validator("asset_id")
    @classmethod
    def _check_asset_id(cls, value: str) -> str:
        if not value.startswith(ASSET_ID_PREFIX) or value == ASSET_ID_PREFIX:
            raise ValueError(
                f"asset_id {value!r} must start with {ASSET_ID_PREFIX!r} followed by an id; "
                "omit asset_id to get a generated one"
            )
        return value

    @field_validator("media_type")
    @classmethod
    def _check_media_type(cls, value: str) -> str:
        major, sep, minor = value.partition("/")
        if not sep or not major.strip() or not minor.strip():
            raise ValueError(
                f"media_type {value!r} must look like 'type/subtype', e.g. 'image/jpeg'"
            )
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        for name, ref in [("storage", self.storage)] + [
            (f"replicas[{i}]", r) for i, r in enumerate(self.replicas)
        ]:
            if ref.sha256 != self.sha256:
                raise ValueError(
                    f"{name}.sha256 {ref.sha256} does not match the asset's sha256 "
                    f"{self.sha256}; a StorageRef must describe this asset's exact payload"
                )
            if ref.size != self.size_bytes:
                raise ValueError(
                    f"{name}.size {ref.size} does not match the asset's size_bytes "
                    f"{self.size_bytes}; a StorageRef must describe this asset's exact payload"
                )
        if (self.subject_kind is None) != (self.subject_id is None):
            raise ValueError("subject_kind and subject_id must be set together (or both left None)")
        return self


def _check_alias(value: str) -> str:
    if not 1 <= len(value) <= 512:
        raise ValueError(f"alias must be 1-512 characters long (got {len(value)})")
    if has_space_or_control(value):
        raise ValueError(
            f"alias {value!r} contains whitespace or control characters; use e.g. '-' or '_'"
        )
    if value.startswith("/") or value.endswith("/"):
        raise ValueError(f"alias {value!r} must not start or end with '/'")
    if "//" in value:
        raise ValueError(f"alias {value!r} must not contain '//' (empty path segment)")
    if value.startswith(ASSET_ID_PREFIX):
        raise ValueError(
            f"alias {value!r} must not start with {ASSET_ID_PREFIX!r}; that prefix is "
            "reserved for asset ids"
        )
    return value


AliasStr = Annotated[str, AfterValidator(_check_alias)]
"""A validated alias string (1-512 chars, no whitespace, no leading "asset_")."""


class Alias(LakeModel):
    """A human-readable name that points at an asset; the alias string is the key."""

    __table__: ClassVar[str] = "aliases"

    alias: Annotated[AliasStr, PrimaryKey()] = Field(
        description='Path-like name, e.g. "cams/front/2024-05-01/0001.jpg".'
    )
    asset_id: Annotated[NonBlankStr, Index("BTREE")]
    created_at: UtcDateTime = Field(default_factory=utcnow)
    updated_at: UtcDateTime = Field(default_factory=utcnow)
    created_by: str | None = None


class AliasAction(enum.StrEnum):
    """What an alias history event did."""

    SET = "set"
    REPOINT = "repoint"
    REMOVE = "remove"


class AliasEvent(LakeModel):
    """One append-only entry of alias history (set, repoint or remove)."""

    __table__: ClassVar[str] = "alias_history"

    event_id: Annotated[IdStr, PrimaryKey()] = Field(default_factory=id_factory("aliasevt"))
    alias: Annotated[AliasStr, Index("BTREE")]
    action: AliasAction
    asset_id: str | None = Field(default=None, description="New target; None on remove.")
    previous_asset_id: str | None = Field(
        default=None, description="Target before this event; None when the alias was new."
    )
    at: UtcDateTime = Field(default_factory=utcnow)
    by: str | None = None

    @model_validator(mode="after")
    def _check_action(self) -> Self:
        act = self.action
        if act is AliasAction.REMOVE and self.asset_id is not None:
            raise ValueError("asset_id must be None when action is 'remove'")
        if act is not AliasAction.REMOVE and not self.asset_id:
            raise ValueError(f"asset_id is required when action is {act.value!r}")
        if act is AliasAction.SET and self.previous_asset_id is not None:
            raise ValueError(
                "previous_asset_id must be None when action is 'set' (use 'repoint' to "
                "move an existing alias)"
            )
        if act in (AliasAction.REPOINT, AliasAction.REMOVE) and not self.previous_asset_id:
            raise ValueError(
                f"previous_asset_id is required when action is {act.value!r} "
                "(the asset the alias pointed at before)"
            )
        return self
