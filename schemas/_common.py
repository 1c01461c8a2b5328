"""Shared field types and validation helpers for the schema modules (pure, no I/O)."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any

from pydantic import AfterValidator, ValidationInfo

from schemas._base import new_id

__all__ = [
    "FLOAT32_MAX",
    "INT32_MAX",
    "INT32_MIN",
    "NEW_INPUT",
    "IdStr",
    "JsonDict",
    "MountName",
    "NonBlankStr",
    "Sha256",
    "SplitName",
    "StorageKey",
    "UtcDateTime",
    "check_finite",
    "check_mount_name",
    "check_sha256",
    "check_split",
    "check_storage_key",
    "has_space_or_control",
    "id_factory",
]

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
FLOAT32_MAX = 3.4028234663852886e38

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_MOUNT_RE = re.compile(r"[A-Za-z0-9_.-]+")
_SPLIT_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def id_factory(prefix: str) -> Callable[[], str]:
    """Return a zero-argument default factory producing ``new_id(prefix)``."""
    return partial(new_id, prefix)


def has_space_or_control(value: str) -> bool:
    """Return True when ``value`` contains whitespace or a control/format character."""
    return any(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf") for ch in value)


def check_sha256(value: str) -> str:
    """Lower-case ``value`` and check it is a 64-character hex SHA-256 digest."""
    lowered = value.lower()
    if not _SHA256_RE.fullmatch(lowered):
        raise ValueError(
            f"sha256 must be 64 hexadecimal characters (got {value!r}); "
            "pass hashlib.sha256(payload).hexdigest()"
        )
    return lowered


def check_mount_name(value: str) -> str:
    """Check a mount name is non-empty and made of ``[A-Za-z0-9_.-]``."""
    if not _MOUNT_RE.fullmatch(value):
        raise ValueError(
            f"mount name {value!r} is invalid; use 1+ characters from A-Z, a-z, 0-9, '_', '.', '-'"
        )
    return value


def check_split(value: str) -> str:
    """Check a split name matches ``[A-Za-z0-9_.-]{1,64}`` (e.g. "train", "trainval")."""
    if not _SPLIT_RE.fullmatch(value):
        raise ValueError(
            f"split {value!r} is invalid; use 1-64 characters from A-Z, a-z, 0-9, '_', '.', '-'"
            " (e.g. 'train', 'val', 'trainval')"
        )
    return value


def check_storage_key(value: str) -> str:
    """Check a key is a non-empty relative path without '.'/'..' segments or control chars."""
    if not value:
        raise ValueError("key must be non-empty (a relative path inside the mount, e.g. 'ab/cd')")
    if value.startswith("/") or "\\" in value:
        raise ValueError(
            f"key {value!r} must be a relative path using '/' separators; drop the leading '/'"
        )
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError(f"key {value!r} contains control characters; remove them")
    if any(part in (".", "..") for part in value.split("/")):
        raise ValueError(f"key {value!r} must not contain '.' or '..' path segments")
    return value


NEW_INPUT = "lakecore-new-input"
"""Validation context key: set (``model_validate(data, context={NEW_INPUT: True})``) when a
model is built from new input, not read back from a table. Rules added after rows were first
written (no control characters in names) apply to new input only, so older lakes stay
readable."""


def _check_non_blank(value: str, info: ValidationInfo) -> str:
    if not value.strip():
        raise ValueError("must be a non-empty, non-blank string")
    new = bool(info.context and info.context.get(NEW_INPUT))
    if new and any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in value):
        raise ValueError(f"{value!r} contains control characters; remove them")
    return value


def _check_id(value: str) -> str:
    if not value or has_space_or_control(value):
        raise ValueError(
            f"id {value!r} is invalid; ids must be non-empty and contain no whitespace "
            "or control characters (omit the field to get a generated id)"
        )
    return value


def _ensure_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"datetime {value.isoformat()} is naive; pass a timezone-aware value, "
            "e.g. datetime.now(UTC)"
        )
    return value.astimezone(UTC)


def check_finite(values: Iterable[float], what: str) -> None:
    """Raise ValueError if any value is NaN/inf or does not fit in a float32."""
    for v in values:
        if not math.isfinite(v) or abs(v) > FLOAT32_MAX:
            raise ValueError(f"{what} must contain only finite float32 numbers (got {v!r})")


def _json_value(value: Any, path: str) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path} is {value!r}; JSON values must be finite numbers")
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{path} has a non-string key {k!r}; JSON object keys are strings")
            out[k] = _json_value(v, f"{path}[{k!r}]")
        return out
    raise ValueError(
        f"{path} has a {type(value).__name__} value; only JSON values are allowed "
        "(str, int, float, bool, None, list, dict) — convert it first, e.g. int(x) or x.tolist()"
    )


def _check_json_dict(value: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = _json_value(value, "value")
    return result


UtcDateTime = Annotated[datetime, AfterValidator(_ensure_utc)]
"""A timezone-aware datetime, normalised to UTC (naive values are rejected)."""

JsonDict = Annotated[dict[str, Any], AfterValidator(_check_json_dict)]
"""Free-form JSON object stored as a JSON string (tuples become lists; NaN is rejected)."""

Sha256 = Annotated[str, AfterValidator(check_sha256)]
"""A SHA-256 hex digest, normalised to lower case."""

MountName = Annotated[str, AfterValidator(check_mount_name)]
"""A mount name: ``[A-Za-z0-9_.-]+``."""

StorageKey = Annotated[str, AfterValidator(check_storage_key)]
"""A relative object key inside a mount (no leading "/", no "." or ".." segments)."""

SplitName = Annotated[str, AfterValidator(check_split)]
"""A split name: ``[A-Za-z0-9_.-]{1,64}``."""

NonBlankStr = Annotated[str, AfterValidator(_check_non_blank)]
"""A string that is not empty or only whitespace (and, in new input, without control
characters: see ``NEW_INPUT``)."""

IdStr = Annotated[str, AfterValidator(_check_id)]
"""An entity id: non-empty, no whitespace or control characters."""
