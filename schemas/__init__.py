"""lakecore entity models: pure pydantic descriptions of every table row and value type.

Nothing here does I/O or imports pyarrow/lance; ``lakecore.tables.arrow`` maps the field
types (and the markers from :mod:`schemas._types`) to Arrow.
"""

from __future__ import annotations

from schemas._base import LakeModel, new_id, utcnow
from schemas._types import F32, I8, I32, ArrowType, Index, IndexKind, PrimaryKey, Token
from schemas.annotation import (
    RLE,
    AnnotationKind,
    AnnotationRecord,
    AnnotationSchema,
    AnnotationSet,
    AnnotationSetPurpose,
    AnnotationSetStatus,
    AttributeRule,
    AttributeType,
    LabelDef,
    PolygonPart,
    Provenance,
    SourceKind,
    TaskType,
)
from schemas.asset import Alias, AliasAction, AliasEvent, Asset, AssetKind, SubjectKind
from schemas.collection import (
    AssetRetention,
    Collection,
    CollectionItem,
    CollectionItemStatus,
    CollectionStatus,
    RetentionOwner,
    RetentionPolicy,
)
from schemas.dataset import DatasetMember, DatasetTag, DatasetVersion
from schemas.datum import Datum
from schemas.storage import LakeInfo, MountConfig, MountKind, StorageRef
from schemas.sync import PayloadStatus, ReplicationState, UploadSession, UploadStatus

TABLE_MODELS: tuple[type[LakeModel], ...] = (
    Asset,
    Alias,
    AliasEvent,
    Collection,
    CollectionItem,
    AssetRetention,
    AnnotationSchema,
    AnnotationSet,
    AnnotationRecord,
    Datum,
    DatasetVersion,
    DatasetTag,
    DatasetMember,
    UploadSession,
    ReplicationState,
)
"""Every model stored as a Lance table (each has ``__table__``), in creation order."""

__all__ = [
    "F32",
    "I8",
    "I32",
    "RLE",
    "TABLE_MODELS",
    "Alias",
    "AliasAction",
    "AliasEvent",
    "AnnotationKind",
    "AnnotationRecord",
    "AnnotationSchema",
    "AnnotationSet",
    "AnnotationSetPurpose",
    "AnnotationSetStatus",
    "ArrowType",
    "Asset",
    "AssetKind",
    "AssetRetention",
    "AttributeRule",
    "AttributeType",
    "Collection",
    "CollectionItem",
    "CollectionItemStatus",
    "CollectionStatus",
    "DatasetMember",
    "DatasetTag",
    "DatasetVersion",
    "Datum",
    "Index",
    "IndexKind",
    "LabelDef",
    "LakeInfo",
    "LakeModel",
    "MountConfig",
    "MountKind",
    "PayloadStatus",
    "PolygonPart",
    "PrimaryKey",
    "Provenance",
    "ReplicationState",
    "RetentionOwner",
    "RetentionPolicy",
    "SourceKind",
    "StorageRef",
    "SubjectKind",
    "TaskType",
    "Token",
    "UploadSession",
    "UploadStatus",
    "new_id",
    "utcnow",
]
