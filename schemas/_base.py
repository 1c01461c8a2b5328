"""The one frozen base model every entity derives from."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

__all__ = ["LakeModel", "new_id", "utcnow"]


class LakeModel(BaseModel):
    """Frozen, strict-about-extras base of every lakecore entity and request."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        use_enum_values=False,
        validate_default=True,
    )


def new_id(prefix: str) -> str:
    """Return a new entity id such as ``asset_1f0c…`` (prefix + uuid4 hex)."""
    return f"{prefix}_{uuid.uuid4().hex}"


def utcnow() -> datetime:
    """Return the current time, timezone-aware UTC, at microsecond precision."""
    return datetime.now(UTC)
