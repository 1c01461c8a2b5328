"""Where payload bytes live: storage references, mounts and the lake descriptor."""

from __future__ import annotations

import enum
from typing import Annotated, Self

from pydantic import Field, field_validator, model_validator

from schemas._base import LakeModel, utcnow
from schemas._common import (
    MountName,
    Sha256,
    StorageKey,
    UtcDateTime,
    check_mount_name,
    id_factory,
)
from schemas._types import Token

__all__ = ["LakeInfo", "MountConfig", "MountKind", "StorageRef"]


class StorageRef(LakeModel):
    """Points at one stored payload: a mount, a key inside it, and the payload's hash and size."""

    mount: MountName = Field(description="Name of the mount (see LakeInfo.mounts).")
    key: Annotated[StorageKey, Token()] = Field(description="Relative object key inside the mount.")
    sha256: Annotated[Sha256, Token()] = Field(
        description="SHA-256 of the payload bytes (lower-case hex)."
    )
    size: int = Field(ge=0, description="Payload size in bytes.")

    @property
    def qualified_key(self) -> str:
        """Return ``"{mount}/{key}"``."""
        return f"{self.mount}/{self.key}"


class MountKind(enum.StrEnum):
    """How a mount stores payloads."""

    LAKE = "lake"
    """Packed into the lake's own blob table."""
    FOLDER = "folder"
    """One object per payload under a URI (local path, s3://, gs://, az://, memory://)."""


class MountConfig(LakeModel):
    """Configuration of one named mount."""

    kind: MountKind
    uri: str | None = Field(
        default=None, description="Root URI of a folder mount; must be None for a lake mount."
    )
    read_only: bool = False

    @model_validator(mode="after")
    def _check_uri(self) -> Self:
        if self.kind is MountKind.FOLDER and not (self.uri and self.uri.strip()):
            raise ValueError(
                "uri is required for a 'folder' mount; pass e.g. uri='s3://bucket/prefix'"
            )
        if self.kind is MountKind.LAKE and self.uri is not None:
            raise ValueError(
                "uri must be None for a 'lake' mount (payloads live in the lake itself); "
                "drop uri or use kind='folder'"
            )
        return self


def _default_mounts() -> dict[str, MountConfig]:
    return {"lake": MountConfig(kind=MountKind.LAKE)}


class LakeInfo(LakeModel):
    """Content of ``lake.json``: the lake's identity, format version and mounts."""

    lake_id: str = Field(default_factory=id_factory("lake"))
    format_version: int = Field(default=1, ge=1, description="On-disk format version.")
    created_at: UtcDateTime = Field(default_factory=utcnow)
    default_mount: MountName = Field(
        default="lake", description="Mount that new payloads go to unless told otherwise."
    )
    mounts: dict[str, MountConfig] = Field(default_factory=_default_mounts)

    @field_validator("mounts")
    @classmethod
    def _check_mount_names(cls, value: dict[str, MountConfig]) -> dict[str, MountConfig]:
        if not value:
            raise ValueError(
                "mounts must define at least one mount, e.g. {'lake': {'kind': 'lake'}}"
            )
        for name in value:
            check_mount_name(name)
        return value

    @model_validator(mode="after")
    def _check_default_mount(self) -> Self:
        if self.default_mount not in self.mounts:
            raise ValueError(
                f"default_mount {self.default_mount!r} is not one of the mounts "
                f"{sorted(self.mounts)}; add it to mounts or pick an existing one"
            )
        return self
