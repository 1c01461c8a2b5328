"""The catalog: pins the visible version of every table and commits multi-table writes."""

from lakecore.catalog.commit import Catalog, CommitResult, Snapshot

__all__ = ["Catalog", "CommitResult", "Snapshot"]
