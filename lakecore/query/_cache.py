"""A memory-bounded cache of table versions as DuckDB native tables.

A Lance table version and a dataset version never change, so an entry keyed by one never goes
stale: it is built once (``CREATE TABLE … AS SELECT * FROM <Lance dataset or Arrow table>
ORDER BY <key>``, in an in-memory database attached with DuckDB's compression, then compressed
by a ``CHECKPOINT``: about 10x smaller and 5-10x faster to aggregate than uncompressed) and
reused until a newer version of the same table supersedes it, or the memory budget pushes it
out (least recently used first). Queries lease the entries they read, so an entry is never
dropped or changed under a running query.

When the newer version only appended fragments to a cached one (``annotations.add``,
``datums.add_many``…) and nobody reads the old one, its table is taken over and only the new
rows are inserted: O(appended rows), not a rebuild.

With a disk tier (:mod:`lakecore.query._disk`), every table built is also written to a local
DuckDB file in the background, and a version missing from memory is first looked for there:
found, the file is attached read-only and serves the queries (no Lance scan, no build).

Small builds run in the query that first needs them. Large ones run in one background thread,
started once the query that asked for them has finished (so the build does not slow that query
down by competing for the same cores); queries that arrive meanwhile scan Lance directly
(filter and projection pushdown, scalar indices); once built, the next query reads the native
table. A version whose estimated
or measured size exceeds the budget is never cached: it is always scanned directly.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakecore.query._disk import DiskTier, literal

if TYPE_CHECKING:
    import duckdb

__all__ = ["CACHE_CATALOG", "Build", "Entry", "TableCache"]

log = logging.getLogger(__name__)

CACHE_CATALOG = "lc_cache"
"""The attached in-memory database (compressed) that holds the cached tables."""

MAX_ATTACHED = 16
"""Disk-tier files an engine keeps attached (least recently used detached first)."""

PERSIST_EVERY = 30.0
"""Seconds between two disk copies of the same table (a copy costs O(rows) of background work:
a process that appends and queries in a loop would otherwise copy the table after every
append)."""

Appended = Callable[[Any], tuple[int, Callable[[], Any]] | None]
"""Given a cached entry's ``meta``: (rows, loader of the rows appended since), or None."""


@dataclass(frozen=True)
class Build:
    """What to cache and how.

    Attributes:
        key: identity of the content (a table version's fingerprint, a dataset version id).
        group: what a newer key supersedes (``"table:assets"``).
        rows: rows to load (decides between building now and in the background).
        bytes_hint: estimated bytes while building; above the budget nothing is built.
        load: returns what DuckDB scans (a Lance dataset or an Arrow table).
        order_by: a quoted column the table is sorted by (zone maps make look-ups by it fast).
        meta: kept on the entry (the fragments of a table version).
        appended: tells whether the content only appends to a cached entry's.
        name: the name queries give the content (a lake table's): the table is created with
            that name, in a schema of its own, which a query's cursor puts on its search path
            instead of creating a view over it (binding a view of the 27 record columns took
            ~0.4 ms of a ~3 ms point look-up). None: an anonymous table that views select from.
    """

    key: Hashable
    group: str
    rows: int
    bytes_hint: int
    load: Callable[[], Any]
    order_by: str | None = None
    meta: Any = None
    appended: Appended | None = None
    name: str | None = None


@dataclass
class Entry:
    """One cached table version (in memory, or a disk-tier file attached read-only)."""

    key: Hashable
    name: str
    group: str
    size: int
    meta: Any = None
    refs: int = 0
    used: float = field(default_factory=time.monotonic)
    catalog: str = CACHE_CATALOG
    index: str | None = None
    """The quoted column the table has an ART index on."""
    schema: str | None = None
    """The schema of its own the table is in (named by ``Build.name``), or None: ``main``."""

    @property
    def on_disk(self) -> bool:
        """True for a disk-tier file (its ``size`` is 0: it takes no memory budget)."""
        return self.catalog != CACHE_CATALOG

    @property
    def relation(self) -> str:
        """The qualified DuckDB name of the cached table."""
        if self.schema is not None:
            return f'{self.catalog}."{self.schema}"."{self.name}"'
        return f'{self.catalog}."{self.name}"'

    @property
    def search_path(self) -> str | None:
        """The search-path entry that makes the table visible under its own name, or None."""
        return None if self.schema is None else f"{self.catalog}.{self.schema}"


class TableCache:
    """Cached table versions of one DuckDB database.

    Args:
        cursor: returns a new cursor of the database (each thread uses its own).
        budget: bytes the cached tables may use together (0 disables the cache).
        sync_rows: builds of at most this many rows run in the query that needs them; larger
            ones in the background (when ``background``).
        background: build large versions in a background thread (else synchronously too).
        disk: the lake's disk tier: built tables are also written there, and versions missing
            from memory are read from there when present.
    """

    def __init__(
        self,
        cursor: Callable[[], duckdb.DuckDBPyConnection],
        *,
        budget: int,
        sync_rows: int,
        background: bool,
        disk: DiskTier | None = None,
    ) -> None:
        self._cursor = cursor
        self.disk = disk
        self.budget = budget
        self.sync_rows = sync_rows
        self.background = background
        self._entries: dict[Hashable, Entry] = {}
        self._too_big: set[Hashable] = set()
        self._failed: set[Hashable] = set()
        self._pending: dict[Hashable, Future[None]] = {}
        self._queued: dict[Hashable, Build] = {}
        self._deferred: list[Build] = []
        self._futures: set[Future[None]] = set()
        self._wanted: dict[str, Hashable] = {}
        self._doomed: list[Entry] = []
        self._lock = threading.RLock()
        self._build = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._compressor: ThreadPoolExecutor | None = None
        self._seq = itertools.count(1)
        self._closed = False
        self._building: duckdb.DuckDBPyConnection | None = None
        self._uncompressed = False
        self._checkpoint_queued = False
        self._persisted: dict[str, float] = {}

    # -- leasing --------------------------------------------------------------------------------
    def acquire(self, build: Build, *, wait: bool = False) -> Entry | None:
        """A leased entry for ``build.key`` (built now if small), or None: scan the source
        directly this time. Release with :meth:`release`.

        With ``wait``, a build waits for the builder when it is busy (``engine.warm``); without,
        the query scans directly and the build is queued.
        """
        with self._lock:
            self._wanted[build.group] = build.key
            entry = self._entries.get(build.key)
            if entry is not None:
                entry.refs += 1
                entry.used = time.monotonic()
                return entry
            closed = self._closed
        if self.disk is not None and not closed:
            entry = self._attach(build)
            if entry is not None:
                return entry
        with self._lock:
            if (
                self._closed
                or self.budget <= 0
                or build.key in self._too_big
                or build.key in self._failed
                or build.bytes_hint > self.budget
            ):
                return None
            if self.background and self._rows(build) > self.sync_rows:
                self._queue(build)
                return None
        if not self._build.acquire(blocking=wait):
            # the builder is busy (a large table in the background): do not make this query
            # wait for it; scan directly now and build this one next
            with self._lock:
                self._queue(build)
            return None
        try:
            entry = self._build_locked(build, lease=True)
        finally:
            self._build.release()
        if entry is not None and self._uncompressed:
            self._schedule_checkpoint()
        return entry

    def release(self, entry: Entry) -> None:
        """End a lease; a superseded entry is dropped once nobody reads it."""
        with self._lock:
            entry.refs -= 1
            if entry.refs > 0 or self._entries.get(entry.key) is not entry:
                return
            if self._wanted.get(entry.group) == entry.key:
                return
            if any(b.group == entry.group for b in self._queued_builds()):
                return  # a queued build of a newer version may append to it
            del self._entries[entry.key]
            self._doomed.append(entry)
        if self._build.acquire(blocking=False):
            try:
                self._drop_doomed()
            finally:
                self._build.release()

    # -- the disk tier ----------------------------------------------------------------------------
    def _attach(self, build: Build) -> Entry | None:
        """A leased entry of the disk tier's file of ``build.key``, or None."""
        import duckdb

        assert self.disk is not None
        path = self.disk.find(build.key)
        if path is None:
            return None
        alias = f"lc_disk_{next(self._seq)}"
        cur = self._cursor()
        try:
            cur.execute(f"ATTACH '{literal(path)}' AS {alias} (READ_ONLY)").fetchall()
        except duckdb.Error:
            log.warning("lakecore SQL cache: cannot read %s; removed", path, exc_info=True)
            self.disk.discard(path)
            return None
        finally:
            cur.close()
        entry = Entry(build.key, "t", build.group, 0, build.meta, refs=1, catalog=alias)
        with self._lock:
            found = self._entries.get(build.key)
            if found is not None or self._closed:  # another query attached or built it meanwhile
                self._doomed.append(entry)
                if found is not None:
                    found.refs += 1
                    found.used = time.monotonic()
            else:
                self._entries[build.key] = entry
                self._evict(entry)
        if self._build.acquire(blocking=False):
            try:
                self._drop_doomed()
            finally:
                self._build.release()
        return found if found is not None else (None if self._closed else entry)

    def _persist(self, key: Hashable) -> None:
        """Write the in-memory table of ``key`` to the disk tier (a background job)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.on_disk or self._closed or self.disk is None:
                return
            last = self._persisted.get(entry.group)
            if last is not None and time.monotonic() - last < PERSIST_EVERY:
                return
            self._persisted[entry.group] = time.monotonic()
            entry.refs += 1
        leased = [entry]

        def pinned() -> None:  # the copy's transaction sees this version from now on: let
            self.release(leased.pop())  # appends take the table over meanwhile

        try:  # no build lock: reading the table needs none, and queries may build meanwhile
            cur = self._cursor()
            try:
                self.disk.store(cur, entry.relation, key, pinned, index=entry.index)
            finally:
                cur.close()
        except Exception:  # the disk tier only saves other engines time
            if not self._closed:
                log.warning("lakecore SQL cache: writing %r to disk failed", key, exc_info=True)
        finally:
            if leased:
                self.release(leased.pop())

    # -- building -------------------------------------------------------------------------------
    def _rows(self, build: Build) -> int:
        """Rows a build would load: only the appended ones when it can extend an entry."""
        base = self._append_base(build)
        return base[1] if base is not None else build.rows

    def _append_base(self, build: Build) -> tuple[Entry, int, Callable[[], Any]] | None:
        """An idle cached entry that ``build`` only appends to (call locked)."""
        if build.appended is None:
            return None
        for entry in sorted(self._entries.values(), key=lambda e: -e.used):
            if entry.group != build.group or entry.refs or entry.key == build.key:
                continue
            if entry.on_disk:  # read-only, and other processes may read the file
                continue
            found = build.appended(entry.meta)
            if found is not None:
                return entry, found[0], found[1]
        return None

    def _queue(self, build: Build) -> None:
        """Build in the background once :meth:`start` is called (call locked)."""
        if build.key in self._queued or self._closed:
            return
        self._queued[build.key] = build
        self._deferred.append(build)

    def start(self) -> None:
        """Start the background builds queued so far (a query calls this when it ends)."""
        with self._lock:
            deferred, self._deferred = self._deferred, []
            if self._closed:
                return
            for build in deferred:
                future = self._executor().submit(self._job, build)
                self._pending[build.key] = future
                self._track(future)

    def _queued_builds(self) -> list[Build]:
        return list(self._queued.values())

    def _track(self, future: Future[None]) -> Future[None]:
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._untrack)
        return future

    def _untrack(self, future: Future[None]) -> None:
        with self._lock:
            self._futures.discard(future)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lakecore-sql-cache")
        return self._pool

    def _job(self, build: Build) -> None:
        try:
            with self._build:
                self._build_locked(build, lease=False)
            if self._uncompressed:
                self._schedule_checkpoint()
        except Exception:  # a failed build only costs speed: queries keep scanning directly
            if not self._closed:
                log.warning("lakecore SQL cache: building %r failed", build.key, exc_info=True)
            with self._lock:
                self._failed.add(build.key)
        finally:
            with self._lock:
                self._pending.pop(build.key, None)
                self._queued.pop(build.key, None)

    def _memory(self, cur: duckdb.DuckDBPyConnection) -> int:
        rows = cur.execute(
            "SELECT sum(memory_usage_bytes) FROM duckdb_memory() "
            "WHERE tag IN ('IN_MEMORY_TABLE', 'ART_INDEX')"
        ).fetchall()
        return int(rows[0][0] or 0) if rows else 0

    def _checkpoint(self, cur: duckdb.DuckDBPyConnection) -> bool:
        """Compress new tables (and free dropped ones) if nothing else is running: DuckDB
        compresses in-memory tables at a checkpoint, which needs a moment without open
        transactions. True once it ran (call with the build lock held)."""
        import duckdb

        try:
            cur.execute(f"CHECKPOINT {CACHE_CATALOG}").fetchall()
        except duckdb.TransactionException:
            return False
        with self._lock:
            self._uncompressed = False
        return True

    def _deferred_checkpoint(self) -> None:
        """Wait (up to a minute) for a moment to compress. Each try holds the build lock
        (DuckDB makes writers wait for a running checkpoint, and a build measures the memory
        its table takes), the waiting between tries does not: a build or a query's drop goes
        ahead, and the next try comes after it."""
        deadline = time.monotonic() + 60.0
        pause = 0.01
        cur = self._cursor()
        try:
            while True:
                with self._lock:
                    if not self._uncompressed or self._closed:
                        return
                if self._build.acquire(blocking=False):
                    try:
                        if self._checkpoint(cur):
                            return
                    finally:
                        self._build.release()
                if time.monotonic() >= deadline:
                    return
                time.sleep(pause)
                pause = min(pause * 2, 0.25)
        finally:
            cur.close()

    def _schedule_checkpoint(self) -> None:
        """Compress on a thread of its own: an open result stream can hold the checkpoint off
        for as long as it is read, and the builder must not wait for it."""
        with self._lock:
            if self._closed or self._checkpoint_queued:
                return
            self._checkpoint_queued = True
            if self._compressor is None:
                self._compressor = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="lakecore-sql-compress"
                )
            executor = self._compressor

        def job() -> None:
            with self._lock:
                self._checkpoint_queued = False
            try:
                self._deferred_checkpoint()
            except Exception:  # compression only saves memory and time
                log.warning("lakecore SQL cache: checkpoint failed", exc_info=True)

        try:
            self._track(executor.submit(job))
        except RuntimeError:  # closed meanwhile, or the interpreter is exiting: no compression
            with self._lock:
                self._checkpoint_queued = False

    def _build_locked(self, build: Build, *, lease: bool) -> Entry | None:
        """Build (or extend) the table of ``build`` (the build lock is held)."""
        key = build.key
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                if lease:
                    entry.refs += 1
                    entry.used = time.monotonic()
                return entry
            if self._closed or key in self._too_big:
                return None
            if not lease and self._wanted.get(build.group) != key:
                return None  # a newer version was asked for meanwhile: build that one
            base = self._append_base(build)
            if base is not None:  # take the old table over: nobody reads it, nobody can now
                del self._entries[base[0].key]
        self._drop_doomed()
        if base is None:
            seq = next(self._seq)
            schema = None if build.name is None else f"e{seq}"
            name, load, old_size = build.name or f"t{seq}", build.load, 0
        else:
            name, schema, load, old_size = base[0].name, base[0].schema, base[2], base[0].size
        draft = Entry(key, name, build.group, 0, schema=schema)  # where the table goes
        cur = self._cursor()
        with self._lock:
            self._building = cur
        try:
            started = time.perf_counter()
            source = load()
            bytes_hint = build.bytes_hint
            if isinstance(getattr(source, "nbytes", None), int):  # an Arrow table
                bytes_hint = max(bytes_hint, source.nbytes)
            cur.register("__lakecore_source", source)
            before = self._memory(cur)
            relation = draft.relation
            if base is None:
                if schema is not None:
                    cur.execute(f'CREATE SCHEMA {CACHE_CATALOG}."{schema}"').fetchall()
                order = f" ORDER BY {build.order_by}" if build.order_by else ""
                statement = f"CREATE TABLE {relation} AS SELECT * FROM __lakecore_source{order}"
            else:
                statement = f"INSERT INTO {relation} SELECT * FROM __lakecore_source"
            cur.execute(statement).fetchall()
            if base is None and build.order_by:  # an ART index: look-ups by the key are
                # O(log n) instead of a zone-map scan (1M records: 5.9 -> 2.7 ms, +12 MB)
                index = f'CREATE INDEX "{schema or name}_key" ON {relation} ({build.order_by})'
                cur.execute(index).fetchall()
            cur.unregister("__lakecore_source")
            with self._lock:
                self._uncompressed = True
            # compress now if nothing else runs; otherwise the compression thread waits for a
            # quiet moment (neither the query nor the next build waits for it)
            compressed = self._checkpoint(cur)
            delta = self._memory(cur) - before
            size = old_size + (delta if delta > 0 else max(bytes_hint, 1))
            log.debug(
                "%s %r as %s: %d bytes%s in %.3f s",
                "cached" if base is None else "appended to",
                key,
                name,
                size,
                "" if compressed else " (not compressed yet)",
                time.perf_counter() - started,
            )
            if size > self.budget:
                _drop(cur, draft)
                with self._lock:
                    self._too_big.add(key)
                return None
        except BaseException:
            if base is not None:  # the taken-over table is in an unknown state: drop it
                with self._lock:
                    self._doomed.append(base[0])
            elif schema is not None:  # what the failed build left (an interrupted cursor
                with contextlib.suppress(Exception):  # may refuse: then it stays, empty)
                    _drop(cur, draft)
            raise
        finally:
            with self._lock:
                self._building = None
            cur.close()
        entry = Entry(
            key, name, build.group, size, build.meta, refs=1 if lease else 0, schema=schema
        )
        entry.index = build.order_by if base is None else base[0].index
        persist_now = False
        with self._lock:
            self._entries[key] = entry
            self._evict(entry)
            if self.disk is not None and not self._closed:
                try:
                    self._track(self._executor().submit(self._persist, key))
                except RuntimeError:  # the interpreter is exiting (a CLI call that built this
                    persist_now = True  # on its way out): copy it now, for the next process
        self._drop_doomed()
        if persist_now:
            self._persist(key)
        return entry

    def _evict(self, keep: Entry) -> None:
        """Move superseded and least recently used idle entries to the doomed list (locked)."""
        idle = [e for e in self._entries.values() if e.refs == 0 and e is not keep]
        for e in idle:
            if self._wanted.get(e.group) != e.key:
                del self._entries[e.key]
                self._doomed.append(e)
        total = sum(e.size for e in self._entries.values())
        attached = sum(e.on_disk for e in self._entries.values())
        for e in sorted((e for e in idle if e.key in self._entries), key=lambda e: e.used):
            if e.on_disk and attached > MAX_ATTACHED:  # files cost no memory, but handles
                attached -= 1
            elif e.on_disk or total <= self.budget:
                continue
            else:
                total -= e.size
            del self._entries[e.key]
            self._doomed.append(e)

    def _drop_doomed(self) -> None:
        """Drop the tables of evicted entries (call with the build lock held)."""
        with self._lock:
            doomed, self._doomed = self._doomed, []
        if not doomed:
            return
        cur = self._cursor()
        try:
            for e in doomed:
                try:
                    if e.on_disk:
                        cur.execute(f"DETACH DATABASE IF EXISTS {e.catalog}").fetchall()
                    else:
                        _drop(cur, e)
                except Exception:  # the others are still dropped; this one costs memory only
                    log.warning("lakecore SQL cache: cannot drop %s", e.relation, exc_info=True)
            self._checkpoint(cur)  # frees the memory when nothing is running
        finally:
            cur.close()

    # -- control ------------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> None:
        """Wait for the background work (builds, compression) queued so far."""
        self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                futures = list(self._futures)
            if not futures:
                return
            left = None if deadline is None else max(deadline - time.monotonic(), 0)
            wait(futures, timeout=left)
            if deadline is not None and time.monotonic() >= deadline:
                return

    def clear(self) -> None:
        """Drop every idle entry and forget which versions were too big."""
        self.wait()
        with self._build:
            with self._lock:
                for key, e in list(self._entries.items()):
                    if e.refs == 0:
                        del self._entries[key]
                        self._doomed.append(e)
                self._too_big.clear()
                self._failed.clear()
            self._drop_doomed()

    def info(self) -> dict[str, Any]:
        """Budget, bytes used and the cached entries (for diagnostics and tests)."""
        with self._lock:
            entries = [
                {
                    "key": e.key,
                    "table": e.relation,
                    "bytes": e.size,
                    "in_use": e.refs,
                    "source": "disk" if e.on_disk else "memory",
                }
                for e in self._entries.values()
            ]
            return {
                "budget": self.budget,
                "bytes": sum(e["bytes"] for e in entries),
                "entries": entries,
                "pending": len(self._queued),
                "too_big": len(self._too_big),
            }

    def close(self) -> None:
        """Stop the background builder (queued builds are cancelled)."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            compressor, self._compressor = self._compressor, None
            building = self._building
            self._deferred.clear()
        if building is not None:  # do not wait minutes for a large build nobody will use
            building.interrupt()
        for executor in (pool, compressor):  # a waiting checkpoint sees ``_closed`` and stops
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)


def _drop(cur: duckdb.DuckDBPyConnection, entry: Entry) -> None:
    """Drop an in-memory entry's table (and its schema of its own)."""
    cur.execute(f"DROP TABLE IF EXISTS {entry.relation}").fetchall()
    if entry.schema is not None:
        cur.execute(f'DROP SCHEMA IF EXISTS {entry.catalog}."{entry.schema}"').fetchall()
