"""The multi-table commit protocol.

A small Lance table, the catalog (rows ``(table, version)``), pins the visible version of every
entity table. Readers read the catalog once and every table at its pinned version: a consistent
snapshot of the whole lake. A writer, per transaction:

1. writes the data files of its appends (invisible until committed);
2. takes the writer lease (throughput only; safety does not depend on it);
3. reads the catalog: its Lance version ``cv`` and the pins;
4. for every table it touches, rolls the table back to its pin if anything lies beyond it
   (**R1**: always, not only after a crash) and checks that the result equals the pin (**R2**);
5. commits each operation on top of an exact read version and requires the new version to be
   exactly one more (**R3**); anything else means another writer slipped in: abort and retry;
6. swaps the catalog by an Overwrite committed with ``read_version=cv``; losing that swap aborts
   and redoes the whole transaction, never re-swaps the same pins (**R4**).

Rows of a killed or stalled writer therefore always lie beyond the pins, where no reader looks,
and the next writer rolls them back.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import fsspec
import lance
import numpy as np
import pyarrow as pa
from lance import LanceDataset
from lance.commit import CommitConflictError as LanceConflictError
from lance.dataset import LanceOperation

from lakecore.catalog.background import IndexRefresher
from lakecore.errors import (
    CommitConflictError,
    CommitError,
    LakecoreError,
    StorageError,
    TableNotFoundError,
    ValidationError,
    VersionNotFoundError,
)
from lakecore.storage import LakeUri, Lease
from lakecore.tables import TableStore
from lakecore.tables.write import (
    Append,
    Compact,
    Op,
    Reindex,
    Upsert,
    apply_op,
    conform,
    needs_reindex,
)
from lakecore.tables.write import prewrite as _prewrite

__all__ = ["CATALOG_SCHEMA", "Catalog", "CommitResult", "Snapshot", "set_fault_hook"]

CATALOG_SCHEMA = pa.schema(
    [
        pa.field("table", pa.string(), nullable=False),
        pa.field("version", pa.int64(), nullable=False),
    ]
)

_fault_hook: Callable[[str], None] | None = None
PREPARE_THREADS = 4
"""Appends whose data files a commit writes at once."""
_PIN_CACHE = 256
"""Catalog versions whose pins a Catalog keeps in memory."""


def set_fault_hook(hook: Callable[[str], None] | None) -> None:
    """Testing only: call ``hook(step)`` at every step of a commit (to kill or stall there)."""
    global _fault_hook
    _fault_hook = hook


def _step(name: str) -> None:
    if _fault_hook is not None:
        _fault_hook(name)


class _Fenced(Exception):
    """Another writer changed a table under this transaction."""


def _lost_race(exc: BaseException) -> bool:
    """True when Lance refused a commit because another writer committed first.

    Besides ``CommitConflictError``, Lance 14 raises a plain ``OSError`` ("Retryable commit
    conflict ... preempted by concurrent transaction") e.g. when a compaction meets an update.
    """
    return isinstance(exc, LanceConflictError) or "retryable commit conflict" in str(exc).lower()


@dataclass(frozen=True)
class Snapshot:
    """A consistent view of the whole lake: every table at the version the catalog pins."""

    store: TableStore
    catalog_version: int
    pins: dict[str, int]

    def dataset(self, name: str) -> LanceDataset:
        """The Lance dataset of a table at its pinned version."""
        try:
            version = self.pins[name]
        except KeyError:
            raise TableNotFoundError(f"the lake has no table {name!r}", table=name) from None
        return self.store.at(name, version)

    def to_table(
        self,
        name: str,
        *,
        columns: Sequence[str] | None = None,
        filter: str | None = None,
        with_row_id: bool = False,
    ) -> pa.Table:
        """Read (part of) a table at its pinned version (``with_row_id``: add ``_rowid``).

        Args:
            columns: a list of column names (``None``: all); a lone ``str`` is one column
                (``"asset_id"`` reads ``["asset_id"]``), as elsewhere in lakecore.
            filter: a Lance SQL predicate, e.g. ``"kind = 'image'"``.

        Raises:
            ValidationError: ``columns`` is not a list of the table's column names (the message
                lists them), or ``filter`` is not a str or does not parse or plan against the
                table (``details["field"]`` is ``"columns"`` or ``"filter"``).
            TableNotFoundError: the lake has no table ``name``.
        """
        ds = self.dataset(name)
        with _scan_input(ds, name, columns, filter) as cols:
            return ds.to_table(columns=cols, filter=filter, with_row_id=with_row_id)

    def count(self, name: str, filter: str | None = None) -> int:
        """Count a table's rows (matching ``filter``) at its pinned version.

        Raises:
            ValidationError: ``filter`` is not a str or does not parse or plan against the
                table (``field="filter"``).
            TableNotFoundError: the lake has no table ``name``.
        """
        ds = self.dataset(name)
        with _scan_input(ds, name, None, filter):
            return int(ds.count_rows(filter=filter))


_LANCE_INPUT = "Invalid user input"
"""How Lance's messages for a bad projection or filter begin (it raises them as ValueError, or
OSError from ``count_rows``); I/O errors never do, and are left alone."""
_ROW_COLUMNS = frozenset(
    {"_rowid", "_rowaddr", "_rowoffset", "_row_created_at_version", "_row_last_updated_at_version"}
)
"""Columns Lance adds to any table on request."""


def _plans(ds: LanceDataset, columns: list[str] | None, filter: object) -> bool:
    """True when Lance plans a scan of ``columns`` with ``filter`` (no data file is read), so
    an error of that scan did not come from its input."""
    try:
        ds.scanner(columns=columns, filter=filter).explain_plan()
    except (ValueError, OSError):
        return False
    return True


@contextlib.contextmanager
def _scan_input(
    ds: LanceDataset, table: str, columns: object, filter: object
) -> Iterator[list[str] | None]:
    """Check a scan's ``columns`` and ``filter`` (yields the columns as a list; a lone ``str``
    is one column) and turn Lance's "invalid user input" errors about them into
    :class:`ValidationError`.

    Unknown or repeated columns are diagnosed only after Lance refused the scan, so nothing
    Lance accepts (``_rowid``, nested ``"storage.key"``) is refused here and a good scan pays
    nothing.
    """
    cols: list[str] | None = None
    if isinstance(columns, str):
        cols = [columns]
    elif columns is not None:
        if isinstance(columns, bytes) or not isinstance(columns, Iterable):
            raise ValidationError(
                f"columns must be a list of column names (e.g. ['asset_id']), got {columns!r}",
                field="columns",
            )
        cols = list(columns)
        bad = [c for c in cols if not isinstance(c, str)]
        if bad:
            raise ValidationError(
                f"columns must be column names (str), got {bad[0]!r} of type "
                f"{type(bad[0]).__name__}",
                field="columns",
            )
    if filter is not None and not isinstance(filter, str):
        raise ValidationError(
            f"filter must be a Lance SQL predicate (str, e.g. \"kind = 'image'\") or None, got "
            f"{filter!r}",
            field="filter",
        )
    try:
        yield cols
    except (ValueError, OSError) as exc:
        text = str(exc)
        if not text.startswith(_LANCE_INPUT) or _plans(ds, cols, filter):
            raise  # not about the input (Lance says "invalid input" of a damaged file too)
        reason = re.sub(r",\s*/\S+\.rs:\d+:\d+", "", text).removeprefix(_LANCE_INPUT + ": ")
        names = ds.schema.names
        if cols is not None:
            dup = next((c for i, c in enumerate(cols) if c in cols[:i]), None)
            unknown = [c for c in cols if c.split(".")[0] not in names and c not in _ROW_COLUMNS]
            if unknown or dup is not None or filter is None:
                what = (
                    f"has no column(s) {unknown}"
                    if unknown
                    else f"got column {dup!r} twice"
                    if dup is not None
                    else f"cannot read columns {cols} ({reason})"
                )
                raise ValidationError(
                    f"columns: table {table!r} {what}; its columns are {names}",
                    field="columns",
                    table=table,
                ) from exc
        if filter is None:
            raise
        raise ValidationError(
            f"bad filter {filter!r} on table {table!r}: {reason}. Write a Lance SQL predicate "
            f"over the table's columns {names}, e.g. \"kind = 'image'\"",
            field="filter",
            table=table,
            filter=filter,
        ) from exc


@dataclass(frozen=True)
class CommitResult:
    """What a commit produced."""

    snapshot: Snapshot
    txn_id: str
    attempts: int
    tables: dict[str, int] = field(default_factory=dict)
    indexing: tuple[str, ...] = ()
    """Tables whose indices a background commit is refreshing (their new rows are readable
    now; lookups by an indexed column scan those rows until the refresh lands)."""


Build = Callable[[Snapshot], Iterable[Op]]


class Catalog:
    """Reads snapshots of a lake and commits multi-table transactions atomically.

    Args:
        root: the lake root.
        store: the lake's tables.
        fs: the lake's filesystem (for the lease).
        lease_ttl: seconds before a crashed writer's lease may be taken over.
        lease_timeout: seconds a writer waits for the lease before giving up.
        background_index: a commit that leaves many rows unindexed returns without indexing
            them; a background commit refreshes the indices (see ``lakecore.catalog.background``).
            False: the commit refreshes them itself before it returns.
    """

    def __init__(
        self,
        root: LakeUri,
        store: TableStore,
        fs: fsspec.AbstractFileSystem,
        *,
        lease_ttl: float = 30.0,
        lease_timeout: float = 300.0,
        max_attempts: int = 8,
        background_index: bool = True,
    ) -> None:
        self.uri = root.child("_catalog.lance").uri
        self.background_index = background_index
        self.refresher = IndexRefresher(self)
        self.store = store
        self.lease = Lease(fs, root.child("_lease").uri, ttl=lease_ttl)
        self.fs = fs
        self.lease_timeout = lease_timeout
        self.max_attempts = max_attempts
        self._local = threading.Lock()
        self._cache_lock = threading.Lock()
        self._pin_cache: dict[tuple[int, tuple[str, ...]], dict[str, int]] = {}
        self._kept = threading.local()
        """Per thread: ``handle`` = (process id, catalog dataset) that ``_read`` brings up to
        date instead of reopening (one per thread: reads never wait for each other, and a
        forked child never meets a lock some other thread held)."""

    # -- reading ------------------------------------------------------------------------------
    def exists(self) -> bool:
        """True when the catalog has been created."""
        try:
            lance.dataset(self.uri, storage_options=self.store.options)
        except (OSError, ValueError):
            return False
        return True

    def create(self, pins: dict[str, int]) -> None:
        """Create the catalog with initial pins (no-op if another process did first)."""
        table = pa.table(
            {"table": list(pins), "version": list(pins.values())}, schema=CATALOG_SCHEMA
        )
        try:
            lance.write_dataset(table, self.uri, mode="create", storage_options=self.store.options)
        except (OSError, ValueError) as exc:
            if "exist" not in str(exc).lower():
                raise StorageError(f"cannot create the lake catalog: {exc}") from exc

    def _read(self) -> tuple[int, dict[str, int]]:
        """The latest catalog version and its pins.

        The thread's kept handle is brought up to date with ``checkout_latest`` (it looks for a
        newer version as opening does: ~12 us when there is none, against ~170 us to open the
        catalog, on local disk). It is opened afresh in a forked child (Lance handles are not
        fork-safe) and after any error.
        """
        kept: tuple[int, LanceDataset] | None = getattr(self._kept, "handle", None)
        if kept is not None and kept[0] == os.getpid():
            try:
                kept[1].checkout_latest()  # type: ignore[no-untyped-call]
                return int(kept[1].version), self._pins(kept[1])
            except Exception:  # deleted, recreated, unreachable: open it afresh below
                self._kept.handle = None
        try:
            ds = lance.dataset(self.uri, storage_options=self.store.options)
            pins = self._pins(ds)
        except (OSError, ValueError) as exc:
            why = re.sub(r",\s*/\S+\.rs:\d+:\d+", "", str(exc))  # Lance's source locations
            raise StorageError(
                f"cannot read the lake catalog at {self.uri}: {why} (lake.json is there: is this "
                "a complete lake, not a partial copy?)"
            ) from exc
        self._kept.handle = (os.getpid(), ds)
        return int(ds.version), pins

    def _pins(self, ds: LanceDataset, known: dict[str, int] | None = None) -> dict[str, int]:
        """The pins of one catalog version (a copy), read once per version.

        A catalog version never changes, so its pins are cached; the key also holds the
        version's data files (randomly named by Lance), so a catalog deleted and created again at
        the same place is never confused with the old one. ``known``: the pins this process
        just wrote as that version (they are kept without reading them back).
        """
        key = (
            int(ds.version),
            # ``DataFile.path`` builds a class per call (a shim for the old method): 14 us
            tuple(
                getattr(f, "_path", None) or f.path
                for fr in ds.get_fragments()
                for f in fr.data_files()
            ),
        )
        if known is None:
            with self._cache_lock:
                cached = self._pin_cache.get(key)
            if cached is not None:
                return dict(cached)
            rows = ds.to_table()
            pins = dict(zip(rows["table"].to_pylist(), rows["version"].to_pylist(), strict=True))
        else:
            pins = dict(known)
        with self._cache_lock:
            self._pin_cache[key] = pins
            while len(self._pin_cache) > _PIN_CACHE:
                self._pin_cache.pop(next(iter(self._pin_cache)))
        return dict(pins)

    def snapshot(self) -> Snapshot:
        """Read the catalog once and return the consistent view it pins."""
        cv, pins = self._read()
        return Snapshot(self.store, cv, pins)

    def snapshot_at(self, catalog_version: int) -> Snapshot:
        """The view the catalog pinned at an earlier version of itself (time travel)."""
        try:
            ds = lance.dataset(
                self.uri, version=catalog_version, storage_options=self.store.options
            )
            pins = self._pins(ds)
        except (OSError, ValueError) as exc:
            raise VersionNotFoundError(
                f"the lake catalog has no version {catalog_version} (cleaned up?)",
                catalog_version=catalog_version,
            ) from exc
        return Snapshot(self.store, catalog_version, pins)

    def protect(self, catalog_version: int, pins: dict[str, int]) -> None:
        """Tag a catalog version and table versions (``lakecore-v<N>``) against clean-up.

        Idempotent. Lance's ``cleanup_old_versions`` keeps tagged versions; lakecore's own gc
        also recomputes what to keep from the dataset versions, so tags are a second guard.
        """
        targets = [(self.uri, catalog_version)] + [(self.store.uri(t), v) for t, v in pins.items()]
        for uri, version in targets:
            ds = lance.dataset(uri, storage_options=self.store.options)
            name = f"lakecore-v{version}"
            if name in ds.tags.list():
                continue
            try:
                ds.tags.create(name, version)
            except (OSError, ValueError) as exc:  # created concurrently: fine
                if "exist" not in str(exc).lower():
                    raise StorageError(f"cannot tag {uri} version {version}: {exc}") from exc

    # -- writing ------------------------------------------------------------------------------
    def commit(
        self,
        ops: Sequence[Op] = (),
        *,
        build: Build | None = None,
        message: str | None = None,
        add_tables: dict[str, int] | None = None,
    ) -> CommitResult:
        """Commit operations on several tables as one atomic change of the lake.

        Args:
            ops: operations known up front (append data files are written before the lease).
            build: called under the lease with the snapshot the transaction is based on; it
                validates against that snapshot (raising aborts with nothing written) and returns
                more operations. It is called again if the transaction is retried.
            message: recorded with the catalog commit.
            add_tables: new tables to pin (name -> version), for lake upgrades.

        Returns:
            The new snapshot and the tables it moved. When there is nothing to change (no
            operation, no new table) the catalog is left as it is and the result holds the
            snapshot the transaction was based on.

        Raises:
            CommitConflictError: other writers kept winning for ``max_attempts`` tries.
            LakecoreError: whatever ``build`` raised (nothing is written).
        """
        fixed = self._prepare_all(ops)
        txn_id = uuid.uuid4().hex
        with self._local:
            self.lease.acquire(self.lease_timeout)
            try:
                _step("lease_acquired")
                for attempt in range(1, self.max_attempts + 1):
                    try:
                        result = self._attempt(fixed, build, message, txn_id, attempt, add_tables)
                        break
                    except _Fenced:
                        for op in fixed:
                            if isinstance(op, Append):
                                op.fragments = None
                        time.sleep(0.05 * attempt)
                else:
                    raise CommitConflictError(
                        f"gave up after {self.max_attempts} attempts: other writers kept "
                        "changing the lake; retry later",
                        attempts=self.max_attempts,
                    )
            finally:
                self.lease.release()
                _step("released")
        if result.indexing:  # the commit has landed: nothing after this may raise
            self.refresher.request(result.indexing)
        return result

    def prepare(self, op: Op) -> Op:
        """Conform ``op`` and write its data files if it is an append, without committing.

        The files stay invisible until a commit of ``op`` references them; a caller that
        drops ``op`` instead leaves them unreferenced (Lance's clean-up removes such files
        after its grace period, as after a crash). Committing ``op`` later reuses them.
        """
        if isinstance(op, (Append, Upsert)):
            op.data = conform(self.store, op.table, op.data)
        if isinstance(op, Append):
            _prewrite(self.store, op)
        return op

    def discard(self, op: Op) -> None:
        """Remove the data files :meth:`prepare` wrote for ``op``, which no commit references
        (a batch that failed its checks). Best effort: a file left behind is only wasted space,
        which Lance's clean-up (``lake.gc``) reclaims once it is a week old."""
        if not isinstance(op, Append) or not op.fragments:
            return
        base = f"{self.store.uri(op.table)}/data"
        fragments, op.fragments = op.fragments, None
        with contextlib.suppress(Exception):
            self.fs.rm([f"{base}/{d.path}" for fragment in fragments for d in fragment.files])

    def _prepare_all(self, ops: Iterable[Op]) -> list[Op]:
        """Conform every operation and write the appends' data files, several at once.

        Lance releases the GIL while it encodes and writes, and a small append costs a few
        milliseconds of fixed work: a commit of three appends (a dataset version: members,
        version row, retentions) spends about half as long here as when written one by one.
        """
        ops = list(ops)
        if sum(isinstance(op, Append) and op.fragments is None for op in ops) < 2:
            return [self.prepare(op) for op in ops]
        with ThreadPoolExecutor(max_workers=min(len(ops), PREPARE_THREADS)) as pool:
            return list(pool.map(self.prepare, ops))

    def _attempt(
        self,
        fixed: list[Op],
        build: Build | None,
        message: str | None,
        txn_id: str,
        attempt: int,
        add_tables: dict[str, int] | None,
    ) -> CommitResult:
        cv, pins = self._read()
        added = {k: v for k, v in (add_tables or {}).items() if k not in pins}
        pins.update(added)
        _step("catalog_read")
        snap = Snapshot(self.store, cv, dict(pins))
        ops = list(fixed)
        if build is not None:
            ops.extend(self._prepare_all(build(snap)))
        if not ops and not added:  # nothing to change: no empty catalog version
            return CommitResult(snap, txn_id, attempt)
        by_table: dict[str, list[Op]] = {}
        for op in ops:
            if op.table not in pins:
                raise TableNotFoundError(f"the lake has no table {op.table!r}", table=op.table)
            by_table.setdefault(op.table, []).append(op)
        new_pins = dict(pins)
        indexing: list[str] = []
        try:
            for name, table_ops in by_table.items():
                version = self._rollback(name, pins[name])
                for op in table_ops:
                    version = self._fenced(op, version)
                if needs_reindex(self.store.at(name, version), self.store, name):
                    if self.background_index:
                        indexing.append(name)
                    else:
                        version = self._fenced(Reindex(name), version)
                new_pins[name] = version
                self.lease.renew()
                _step(f"table_committed:{name}")
        except _Fenced:
            raise
        except LakecoreError:
            raise
        except (OSError, ValueError) as exc:
            if _lost_race(exc):
                raise _Fenced(str(exc)) from exc
            raise CommitError(f"commit failed while writing tables: {exc}") from exc
        _step("before_swap")
        self._swap(cv, new_pins, message, txn_id)
        _step("after_swap")
        return CommitResult(
            Snapshot(self.store, cv + 1, new_pins),
            txn_id,
            attempt,
            {k: v for k, v in new_pins.items() if pins.get(k) != v},
            tuple(indexing),
        )

    def _fenced(self, op: Op, version: int) -> int:
        produced = apply_op(self.store, op, version)
        if isinstance(op, Compact):
            if produced == version:
                return version  # nothing to compact
            # Lance commits a compaction of an indexed table as two versions (the rewrite, then
            # the index remap): instead of "exactly one more", check that the rows are the same
            # ones, unchanged (another writer's append, delete or update would show)
            if produced > version and self._same_rows(op.table, version, produced):
                return produced
            raise _Fenced(f"{op.table}: the compaction saw another writer's change")
        if produced != version + 1:
            raise _Fenced(f"{op.table}: expected version {version + 1}, produced {produced}")
        return produced

    def _same_rows(self, name: str, before: int, after: int) -> bool:
        """True when two versions of a table hold the same rows, unchanged.

        Compaction keeps each row's stable id and its last-updated version; another writer's
        append or delete changes the ids, and its update (which keeps the id) the version.
        """

        def rows(version: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
            ds = self.store.at(name, version)
            table = ds.scanner(
                columns=["_row_last_updated_at_version"], with_row_id=True
            ).to_table()
            ids = table["_rowid"].to_numpy()
            order = np.argsort(ids, kind="stable")
            return ids[order], table["_row_last_updated_at_version"].to_numpy()[order]

        (ids_a, upd_a), (ids_b, upd_b) = rows(before), rows(after)
        return bool(np.array_equal(ids_a, ids_b) and np.array_equal(upd_a, upd_b))

    def _rollback(self, name: str, pin: int) -> int:
        """R1 + R2: bring the table's latest version back to the pinned content."""
        latest = self.store.latest(name)
        if latest.version == pin:
            return pin
        pinned = self.store.at(name, pin)
        try:
            lance.dataset(
                self.store.uri(name), version=pin, storage_options=self.store.options
            ).restore()  # type: ignore[no-untyped-call]
        except OSError as exc:
            raise _Fenced(f"{name}: restore lost a race ({exc})") from exc
        restored = self.store.latest(name)
        same = [f.metadata for f in restored.get_fragments()] == [
            f.metadata for f in pinned.get_fragments()
        ]
        if not same:
            raise _Fenced(f"{name}: another writer committed right after the rollback")
        return int(restored.version)

    def _swap(self, cv: int, pins: dict[str, int], message: str | None, txn_id: str) -> None:
        table = pa.table(
            {"table": list(pins), "version": list(pins.values())}, schema=CATALOG_SCHEMA
        )
        try:
            frags = lance.fragment.write_fragments(
                table, self.uri, schema=CATALOG_SCHEMA, storage_options=self.store.options
            )
            swapped = LanceDataset.commit(
                self.uri,
                LanceOperation.Overwrite(CATALOG_SCHEMA, frags),
                read_version=cv,
                storage_options=self.store.options,
                commit_message=f"lakecore txn {txn_id}: {message or ''}".strip(),
            )
        except OSError as exc:
            if _lost_race(exc):
                raise _Fenced(f"catalog swap lost to another writer ({exc})") from exc
            raise CommitError(f"cannot swap the lake catalog: {exc}") from exc
        # the next read finds this version without reading its pins back (~1.3 ms)
        with contextlib.suppress(Exception):
            self._pins(swapped, known=pins)
            self._kept.handle = (os.getpid(), swapped)
