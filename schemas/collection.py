"""Collections of assets, their membership rows and asset retention claims."""

from __future__ import annotations

import enum
from typing import Annotated, Any, ClassVar, Self

from pydantic import Field, field_validator, model_validator

from schemas._base import LakeModel, utcnow
from schemas._common import IdStr, JsonDict, NonBlankStr, SplitName, UtcDateTime, id_factory
from schemas._types import Index, PrimaryKey, Token

__all__ = [
    "AssetRetention",
    "Collection",
    "CollectionItem",
    "CollectionItemStatus",
    "CollectionStatus",
    "RetentionOwner",
    "RetentionPolicy",
]


class CollectionStatus(enum.StrEnum):
    """Lifecycle state of a collection."""

    ACTIVE = "active"
    ARCHIVED = "archived"


class Collection(LakeModel):
    """A named, curated group of assets (e.g. one import or one labelling batch)."""

    __table__: ClassVar[str] = "collections"

    collection_id: Annotated[IdStr, PrimaryKey()] = Field(default_factory=id_factory("collection"))
    name: Annotated[NonBlankStr, Index("BTREE")] = Field(max_length=256)
    description: str | None = None
    status: CollectionStatus = CollectionStatus.ACTIVE
    metadata: JsonDict = Field(default_factory=dict)
    created_at: UtcDateTime = Field(default_factory=utcnow)
    updated_at: UtcDateTime = Field(default_factory=utcnow)
    created_by: str | None = None


class CollectionItemStatus(enum.StrEnum):
    """Whether a member is visible in its collection."""

    ACTIVE = "active"
    HIDDEN = "hidden"


class CollectionItem(LakeModel):
    """Membership of one asset in one collection; the id is ``"{collection_id}/{asset_id}"``."""

    __table__: ClassVar[str] = "collection_items"

    item_id: Annotated[str, PrimaryKey()] = Field(
        default="",
        description='Deterministic: "{collection_id}/{asset_id}" (computed when omitted).',
    )
    collection_id: Annotated[IdStr, Index("BTREE")]
    asset_id: Annotated[IdStr, Index("BTREE")]
    split: SplitName | None = Field(default=None, description='e.g. "train", "val".')
    status: CollectionItemStatus = CollectionItemStatus.ACTIVE
    metadata: JsonDict = Field(default_factory=dict)
    added_at: UtcDateTime = Field(default_factory=utcnow)
    added_by: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _compute_item_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("item_id"):
            cid, aid = data.get("collection_id"), data.get("asset_id")
            if isinstance(cid, str) and isinstance(aid, str):
                return {**data, "item_id": f"{cid}/{aid}"}
        return data

    @field_validator("collection_id")
    @classmethod
    def _no_slash(cls, value: str) -> str:
        if "/" in value:
            raise ValueError(
                f"collection_id {value!r} must not contain '/' (item ids are "
                "'{collection_id}/{asset_id}')"
            )
        return value

    @model_validator(mode="after")
    def _check_item_id(self) -> Self:
        expected = f"{self.collection_id}/{self.asset_id}"
        if self.item_id != expected:
            raise ValueError(
                f"item_id {self.item_id!r} must equal '{{collection_id}}/{{asset_id}}' = "
                f"{expected!r}; omit item_id to have it computed"
            )
        return self


class RetentionOwner(enum.StrEnum):
    """Who holds a retention claim on an asset."""

    COLLECTION_IMPORT = "collection_import"
    DATASET_VERSION = "dataset_version"
    GLOBAL_CORPUS = "global_corpus"
    JOB_RUN = "job_run"
    MANUAL_PIN = "manual_pin"
    SYSTEM = "system"


class RetentionPolicy(enum.StrEnum):
    """What may happen to an asset once this claim no longer references it."""

    RETAIN = "retain"
    DELETE_WHEN_UNREFERENCED = "delete_when_unreferenced"
    ARCHIVE_WHEN_UNREFERENCED = "archive_when_unreferenced"


class AssetRetention(LakeModel):
    """A claim that keeps an asset alive (or lets it go) on behalf of an owner."""

    __table__: ClassVar[str] = "asset_retentions"

    retention_id: Annotated[IdStr, PrimaryKey()] = Field(default_factory=id_factory("retention"))
    asset_id: Annotated[IdStr, Index("BTREE"), Token()]
    owner_type: RetentionOwner
    owner_id: NonBlankStr = Field(description="Id of the owning entity (collection, version, ...).")
    policy: RetentionPolicy = RetentionPolicy.RETAIN
    expires_at: UtcDateTime | None = Field(
        default=None, description="When the claim lapses; None = never."
    )
    metadata: JsonDict = Field(default_factory=dict)
    created_at: UtcDateTime = Field(default_factory=utcnow)
    created_by: str | None = None
