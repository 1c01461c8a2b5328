"""Table write operations, each committed as exactly one new Lance version.

An operation is data (``Append``, ``Upsert``, ``Delete``); :func:`apply_op` commits it on top of
an exact ``read_version`` and returns the version it produced. The commit protocol in
``lakecore.catalog`` checks that this is ``read_version + 1``: any other number means another
writer slipped in, and the transaction aborts.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import lance
import pyarrow as pa
from lance import LanceDataset
from lance.dataset import LanceOperation

from lakecore.errors import CommitError, SchemaError
from lakecore.tables.store import TableStore

__all__ = [
    "Append",
    "Compact",
    "Delete",
    "Op",
    "Reindex",
    "Upsert",
    "apply_op",
    "conform",
    "prewrite",
]

REINDEX_ROWS = 100_000
"""Unindexed rows in a table above which a commit also folds them into its indices."""

MAX_SEGMENTS = 8
"""Index segments (the first build plus one per refresh) after which a refresh merges them."""

SEGMENT_THREADS = min(8, max(2, os.cpu_count() or 2))
"""Index segments a refresh builds at once (Lance releases the GIL while building)."""

REINDEX_FRACTION = 0.25
"""...and the unindexed rows must also be this fraction of the indexed ones.

A refresh adds one segment per index for the new rows, but every ``MAX_SEGMENTS``-th refresh
merges them, and Lance 14 rewrites the whole index to merge (adding 100k rows to the 7 indices
of a 1M-row table: 0.14-0.19 s as a segment, 1.2 s merged, measured). With a fixed threshold
alone a table growing by 100k-row commits would pay O(rows²) in merges; waiting until the tail
is a quarter of the indexed rows keeps it O(rows), while lookups scan at most a fifth of a
table unindexed.
"""


@dataclass
class Append:
    """Append rows (fragments are written before the writer lease is taken)."""

    table: str
    data: pa.Table
    fragments: list[Any] | None = field(default=None, repr=False)


@dataclass
class Upsert:
    """Insert rows, replacing those with the same primary key."""

    table: str
    data: pa.Table


@dataclass
class Delete:
    """Delete the rows matching a Lance SQL predicate.

    With ``expect``, exactly that many rows must match, or the commit fails (used with
    ``_rowid IN (...)`` predicates: deleting by stable row id skips the key lookup, and the count
    proves the ids still name the rows they were read as).
    """

    table: str
    predicate: str
    expect: int | None = None


@dataclass
class Reindex:
    """Fold unindexed rows into the table's scalar indices.

    Rows are indexed as a new segment of each index (cost proportional to the new rows); once
    an index has ``MAX_SEGMENTS`` segments, or with ``merge=True``, every index is rebuilt as
    one segment instead (cost proportional to the table).
    """

    table: str
    merge: bool = False


@dataclass
class Compact:
    """Rewrite a table's small fragments into fewer large ones (content unchanged)."""

    table: str


Op = Append | Upsert | Delete | Reindex | Compact


def conform(store: TableStore, name: str, data: pa.Table) -> pa.Table:
    """Return ``data`` with exactly the table's schema (column order and types), or raise."""
    schema = store.specs[name].schema
    missing = [n for n in schema.names if n not in data.column_names]
    extra = [n for n in data.column_names if n not in schema.names]
    if missing or extra:
        raise SchemaError(
            f"rows for table {name!r} do not match its columns (missing {missing}, unknown "
            f"{extra})",
            table=name,
            missing=missing,
            extra=extra,
        )
    try:
        data = data.select(schema.names)
        columns = [
            col if col.type == field.type else col.cast(field.type)
            for col, field in zip(data.columns, schema, strict=True)
        ]
        return pa.Table.from_arrays(columns, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise SchemaError(f"rows for table {name!r} have wrong types: {exc}", table=name) from exc


def prewrite(store: TableStore, op: Append) -> None:
    """Write an append's data files now; they stay invisible until committed."""
    if op.fragments is None:
        schema = store.specs[op.table].schema
        op.fragments = lance.fragment.write_fragments(
            op.data,
            store.uri(op.table),
            schema=schema,
            storage_options=store.options,
        )


def needs_reindex(ds: LanceDataset, store: TableStore, name: str) -> bool:
    """True when a table's indices miss enough rows to be worth refreshing: at least
    ``REINDEX_ROWS`` and at least ``REINDEX_FRACTION`` of the rows they cover.

    A table of fewer rows than ``REINDEX_ROWS`` cannot miss that many: its indices' statistics
    are not read (one read per index, 7 for the annotation records, on every commit)."""
    indices = store.specs[name].indices
    if not indices or ds.count_rows() < REINDEX_ROWS:
        return False
    for column, _ in indices:
        try:
            stats = ds.stats.index_stats(f"{column}_idx")
        except (KeyError, ValueError, OSError):
            continue
        unindexed = stats.get("num_unindexed_rows", 0)
        if unindexed >= max(REINDEX_ROWS, REINDEX_FRACTION * stats.get("num_indexed_rows", 0)):
            return True
    return False


def apply_op(store: TableStore, op: Op, read_version: int) -> int:
    """Commit one operation on top of ``read_version``; return the version it produced."""
    uri = store.uri(op.table)
    opts = store.options
    if isinstance(op, Append):
        prewrite(store, op)
        if op.fragments is None:  # prewrite always sets them
            raise RuntimeError(f"{op.table}: append without written fragments")
        nd = LanceDataset.commit(
            uri,
            LanceOperation.Append(op.fragments),
            read_version=read_version,
            storage_options=opts,
        )
        return int(nd.version)
    ds = lance.dataset(uri, version=read_version, storage_options=opts)
    if isinstance(op, Upsert):
        key = store.specs[op.table].key
        if key is None:
            raise SchemaError(f"table {op.table!r} has no primary key to upsert on")
        txn, _ = (
            ds.merge_insert(key)
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute_uncommitted(op.data)
        )
        nd = LanceDataset.commit(uri, txn, read_version=read_version, storage_options=opts)
        return int(nd.version)
    if isinstance(op, Delete):
        result = ds.delete(op.predicate)
        deleted = int((result or {}).get("num_deleted_rows", -1))
        if op.expect is not None and deleted != op.expect:
            raise CommitError(
                f"{op.table}: expected to delete {op.expect} rows, {deleted} matched; the rows "
                "changed since they were read (the lake is unchanged: this commit is dropped)",
                table=op.table,
            )
        return int(ds.version)
    if isinstance(op, Compact):
        return apply_compact(store, op, read_version)
    return apply_reindex(store, op, ds)


def _segment(
    uri: str, version: int, options: dict[str, str] | None, job: tuple[str, str, list[int]]
) -> Any:
    """Build (not commit) one index segment over some fragments of a table version."""
    column, kind, fragments = job
    ds = lance.dataset(uri, version=version, storage_options=options)  # one per thread
    return ds.create_index_uncommitted(
        column, kind, name=f"{column}_idx", fragment_ids=fragments, replace=True
    )


def apply_reindex(store: TableStore, op: Reindex, ds: LanceDataset) -> int:
    """Index the rows of ``ds`` its indices miss, committed as one new version.

    The new fragments of every index become one new segment each, built in parallel threads
    (Lance releases the GIL) and committed together by one ``CreateIndex``. An index at
    ``MAX_SEGMENTS`` segments, or ``op.merge``, makes Lance rebuild every index as one segment.
    """
    fragments = [f.fragment_id for f in ds.get_fragments()]
    covered: dict[str, set[int]] = {}
    segments: dict[str, int] = {}
    for index in ds.describe_indices():
        have = covered.setdefault(index.name, set())
        for segment in index.segments:
            have.update(segment.fragment_ids)
        segments[index.name] = segments.get(index.name, 0) + len(index.segments)
    jobs = []
    for column, kind in store.specs[op.table].indices:
        name = f"{column}_idx"
        if name in covered:
            new = [f for f in fragments if f not in covered[name]]
            if new:
                jobs.append((column, kind, new))
    most = max(segments.values(), default=0)
    uri, options = store.uri(op.table), store.options
    built = []
    if jobs and not op.merge and most < MAX_SEGMENTS:
        with ThreadPoolExecutor(max_workers=min(len(jobs), SEGMENT_THREADS)) as pool:
            built = list(pool.map(partial(_segment, uri, ds.version, options), jobs))
    elif jobs or (op.merge and most > 1):
        ds.optimize.optimize_indices(num_indices_to_merge=most)
        return int(ds.version)
    # new segments, or nothing to do: still exactly one new version (the commit protocol
    # requires one per operation; before, a lake already indexed could not be optimized)
    nd = LanceDataset.commit(
        uri, LanceOperation.CreateIndex(built, []), read_version=ds.version, storage_options=options
    )
    return int(nd.version)


COMPACT_FRAGMENTS = 16
"""A table with more fragments than this is worth compacting."""


def apply_compact(store: TableStore, op: Compact, read_version: int) -> int:
    """Compact on top of ``read_version``; returns the same version when nothing was done."""
    ds = lance.dataset(store.uri(op.table), version=read_version, storage_options=store.options)
    ds.optimize.compact_files()
    return int(ds.version)
