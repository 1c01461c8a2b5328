"""Object storage: URIs, storage options, fsspec filesystems, the payload store, the lease."""

from lakecore.storage.lease import Lease
from lakecore.storage.options import StorageOptions, filesystem, lance_options
from lakecore.storage.payloads import (
    DEFAULT_LARGE_THRESHOLD,
    BlobMount,
    PayloadSource,
    PayloadStore,
    Progress,
)
from lakecore.storage.uri import LakeUri, join, parse

__all__ = [
    "DEFAULT_LARGE_THRESHOLD",
    "BlobMount",
    "LakeUri",
    "Lease",
    "PayloadSource",
    "PayloadStore",
    "Progress",
    "StorageOptions",
    "filesystem",
    "join",
    "lance_options",
    "parse",
]
