"""Upload sessions and cross-lake replication state."""

from __future__ import annotations

import enum
import secrets
from typing import Annotated, Any, ClassVar, Self

from pydantic import Field, field_validator, model_validator

from schemas._base import LakeModel, utcnow
from schemas._common import (
    IdStr,
    JsonDict,
    MountName,
    NonBlankStr,
    Sha256,
    StorageKey,
    UtcDateTime,
    id_factory,
)
from schemas._types import Index, PrimaryKey
from schemas.storage import StorageRef

__all__ = [
    "PayloadStatus",
    "ReplicationState",
    "UploadSession",
    "UploadStatus",
]


class UploadStatus(enum.StrEnum):
    """State of an upload session."""

    PENDING = "pending"
    COMPLETED = "completed"
    EXPIRED = "expired"
    FAILED = "failed"
    ABORTED = "aborted"


def _new_finalize_token() -> str:
    return secrets.token_hex(16)


class UploadSession(LakeModel):
    """A (possibly multi-part) upload of one payload into a mount, finalized by token."""

    __table__: ClassVar[str] = "upload_sessions"

    session_id: Annotated[IdStr, PrimaryKey()] = Field(default_factory=id_factory("upload"))
    finalize_token: str = Field(
        default_factory=_new_finalize_token,
        repr=False,
        description="Secret the uploader presents to finalize the session.",
    )
    mount: MountName = Field(description="Mount the payload is uploaded into.")
    key: StorageKey | None = Field(
        default=None, description="Requested key; None lets the lake choose (content-addressed)."
    )
    status: Annotated[UploadStatus, Index("BITMAP")] = UploadStatus.PENDING
    expected_size: int | None = Field(default=None, ge=0)
    expected_sha256: Sha256 | None = None
    part_count: int = Field(default=0, ge=0, description="Parts received so far.")
    staging_prefix: NonBlankStr = Field(description="Where parts are staged until finalize.")
    storage: StorageRef | None = Field(
        default=None, description="Final location; set once completed."
    )
    failure_reason: str | None = None
    metadata: JsonDict = Field(default_factory=dict)
    created_at: UtcDateTime = Field(default_factory=utcnow)
    expires_at: UtcDateTime
    completed_at: UtcDateTime | None = None
    created_by: str | None = None

    @field_validator("finalize_token")
    @classmethod
    def _check_token(cls, value: str) -> str:
        if len(value) < 16:
            raise ValueError(
                "finalize_token must be at least 16 characters; omit it to generate one"
            )
        return value

    @model_validator(mode="after")
    def _check_state(self) -> Self:
        if self.expires_at <= self.created_at:
            raise ValueError(
                f"expires_at ({self.expires_at.isoformat()}) must be after created_at "
                f"({self.created_at.isoformat()})"
            )
        if self.status is UploadStatus.COMPLETED and self.storage is None:
            raise ValueError("a completed upload needs storage (where the payload ended up)")
        if self.storage is not None:
            if self.expected_sha256 is not None and self.storage.sha256 != self.expected_sha256:
                raise ValueError(
                    f"storage.sha256 {self.storage.sha256} does not match expected_sha256 "
                    f"{self.expected_sha256}"
                )
            if self.expected_size is not None and self.storage.size != self.expected_size:
                raise ValueError(
                    f"storage.size {self.storage.size} does not match expected_size "
                    f"{self.expected_size}"
                )
        return self


class PayloadStatus(enum.StrEnum):
    """Transfer state of one asset's payload to a target lake."""

    PENDING = "pending"
    TRANSFERRING = "transferring"
    VERIFIED = "verified"
    FAILED = "failed"


class ReplicationState(LakeModel):
    """Replication progress of one asset to one target lake; id ``"{asset_id}@{target}"``."""

    __table__: ClassVar[str] = "replication_states"

    state_id: Annotated[str, PrimaryKey()] = Field(
        default="",
        description='Deterministic: "{asset_id}@{target_lake_id}" (computed when omitted).',
    )
    asset_id: Annotated[IdStr, Index("BTREE")]
    target_lake_id: IdStr = Field(description="Lake the payload is replicated to.")
    origin_lake_id: IdStr = Field(description="Lake the asset was first created in.")
    origin_asset_id: IdStr = Field(description="The asset's id in its origin lake.")
    payload_status: Annotated[PayloadStatus, Index("BITMAP")] = PayloadStatus.PENDING
    last_error: str | None = None
    last_attempt_at: UtcDateTime | None = None
    verified_at: UtcDateTime | None = Field(
        default=None, description="When the target confirmed the payload hash."
    )
    local_delete_eligible_at: UtcDateTime | None = Field(
        default=None, description="From when the local copy may be deleted."
    )
    local_deleted_at: UtcDateTime | None = None
    updated_at: UtcDateTime = Field(default_factory=utcnow)

    @model_validator(mode="before")
    @classmethod
    def _compute_state_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("state_id"):
            aid, target = data.get("asset_id"), data.get("target_lake_id")
            if isinstance(aid, str) and isinstance(target, str):
                return {**data, "state_id": f"{aid}@{target}"}
        return data

    @field_validator("asset_id")
    @classmethod
    def _no_at(cls, value: str) -> str:
        if "@" in value:
            raise ValueError(
                f"asset_id {value!r} must not contain '@' (state ids are '{{asset_id}}@{{lake}}')"
            )
        return value

    @model_validator(mode="after")
    def _check_state(self) -> Self:
        expected = f"{self.asset_id}@{self.target_lake_id}"
        if self.state_id != expected:
            raise ValueError(
                f"state_id {self.state_id!r} must equal '{{asset_id}}@{{target_lake_id}}' = "
                f"{expected!r}; omit state_id to have it computed"
            )
        if self.payload_status is PayloadStatus.VERIFIED and self.verified_at is None:
            raise ValueError("payload_status 'verified' requires verified_at")
        return self
