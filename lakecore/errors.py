"""The one exception tree of lakecore.

Every error lakecore raises derives from :class:`LakecoreError`. Leaves also derive from the
matching builtin (``FileNotFoundError``, ``LookupError``, ``ValueError``…) so code that already
catches those keeps working. Every error carries a stable ``code`` string and a ``details``
dict, and pickles (loaders and writers run in spawned processes).

Foreign exceptions (Lance, pyarrow, fsspec, botocore, OSError) are translated at the layer that
called them, chained with ``from``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AliasAlreadyExistsError",
    "AliasNotFoundError",
    "AlreadyExistsError",
    "AssetNotFoundError",
    "CollectionAlreadyExistsError",
    "CollectionNotFoundError",
    "CommitConflictError",
    "CommitError",
    "CommitStateUnknownError",
    "ConfigError",
    "InUseError",
    "IngestError",
    "LakeNotFoundError",
    "LakecoreError",
    "LakecoreWarning",
    "LeaseTimeoutError",
    "MountNotFoundError",
    "NotFoundError",
    "NotInstalledError",
    "ObjectNotFoundError",
    "PayloadArgumentError",
    "PerformanceWarning",
    "PreconditionFailedError",
    "QueryError",
    "RemoteError",
    "ReplicationError",
    "SchemaError",
    "SchemaMismatchError",
    "StorageError",
    "StoragePermissionError",
    "TableNotFoundError",
    "ValidationError",
    "VersionNotFoundError",
]


class LakecoreError(Exception):
    """Root of every lakecore error; carries a stable ``code`` and ``details``."""

    code = "lakecore_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.details))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[LakecoreError], message: str, details: dict[str, Any]) -> LakecoreError:
    return cls(message, **details)


# --- configuration -----------------------------------------------------------------------------


class ConfigError(LakecoreError, ValueError):
    """A setting, URI or storage option is invalid."""

    code = "config_error"


class NotInstalledError(LakecoreError, ImportError):
    """An optional extra is missing; the message names the extra to install."""

    code = "not_installed"


# --- storage -----------------------------------------------------------------------------------


class StorageError(LakecoreError, OSError):
    """Object storage failed (I/O, network, permissions)."""

    code = "storage_error"


class ObjectNotFoundError(StorageError, FileNotFoundError):
    """A payload or object does not exist where its reference points."""

    code = "object_not_found"


class StoragePermissionError(StorageError, PermissionError):
    """Storage refused the operation for lack of permission."""

    code = "storage_permission"


class PreconditionFailedError(StorageError):
    """A conditional write lost (the object already exists or changed)."""

    code = "precondition_failed"


class MountNotFoundError(StorageError, LookupError):
    """A storage reference names a mount the lake does not have."""

    code = "mount_not_found"


# --- lookups -----------------------------------------------------------------------------------


class NotFoundError(LakecoreError, LookupError):
    """Something looked up by name or id does not exist."""

    code = "not_found"


class LakeNotFoundError(NotFoundError):
    """No lake exists at the URI (and creation was not asked for)."""

    code = "lake_not_found"


class TableNotFoundError(NotFoundError):
    """The lake has no table of that name."""

    code = "table_not_found"


class VersionNotFoundError(NotFoundError):
    """A table or dataset version does not exist (or was cleaned up)."""

    code = "version_not_found"


class AssetNotFoundError(NotFoundError):
    """No asset has that id."""

    code = "asset_not_found"


class AliasNotFoundError(NotFoundError):
    """No alias of that name exists."""

    code = "alias_not_found"


class CollectionNotFoundError(NotFoundError):
    """No collection of that id or name exists."""

    code = "collection_not_found"


# --- uniqueness --------------------------------------------------------------------------------


class AlreadyExistsError(LakecoreError):
    """Something that must be unique exists already."""

    code = "already_exists"


class AliasAlreadyExistsError(AlreadyExistsError):
    """The alias points at another asset."""

    code = "alias_exists"


class CollectionAlreadyExistsError(AlreadyExistsError):
    """A collection of that name exists already."""

    code = "collection_exists"


# --- data --------------------------------------------------------------------------------------


class SchemaError(LakecoreError, ValueError):
    """Data does not fit the entity schema."""

    code = "schema_error"


class SchemaMismatchError(SchemaError):
    """A stored table's schema differs from the schema its model derives."""

    code = "schema_mismatch"


class ValidationError(SchemaError):
    """Rows failed validation; ``details`` names the row and the field."""

    code = "validation_error"


class PayloadArgumentError(ValidationError, TypeError):
    """An argument of the payload store (``lake.objects``) has the wrong type; ``details`` name
    the ``field`` (and the ``row`` of a list item). Also a ``TypeError``, as a bad payload
    raised before this class existed."""

    code = "validation_error"


class InUseError(LakecoreError, ValueError):
    """An operation would break a reference (e.g. deleting an asset a datum uses)."""

    code = "in_use"


# --- commits -----------------------------------------------------------------------------------


class CommitError(LakecoreError):
    """A write could not be committed."""

    code = "commit_error"


class CommitConflictError(CommitError):
    """A concurrent writer won; refresh and retry."""

    code = "commit_conflict"


class CommitStateUnknownError(CommitError):
    """The outcome of a commit is unknown; check before retrying."""

    code = "commit_state_unknown"


class LeaseTimeoutError(CommitError, TimeoutError):
    """The writer lease could not be taken in time (another writer holds it)."""

    code = "lease_timeout"


# --- higher layers -----------------------------------------------------------------------------


class QueryError(LakecoreError):
    """A SQL query failed; ``details['sql']`` holds the statement."""

    code = "query_error"


class ReplicationError(LakecoreError):
    """Replication between lakes failed."""

    code = "replication_error"


class IngestError(LakecoreError):
    """An importer rejected its input."""

    code = "ingest_error"


class RemoteError(LakecoreError):
    """The lakecore service answered with an error (client side only)."""

    code = "remote_error"


# --- warnings ----------------------------------------------------------------------------------


class LakecoreWarning(UserWarning):
    """Root of lakecore's warnings."""


class PerformanceWarning(LakecoreWarning):
    """An operation will be slow as called; the message says how to do better."""
