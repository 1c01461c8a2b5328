"""QueryEngine: read-only DuckDB SQL over every table of a lake and every dataset version.

One query sees one snapshot of the lake: the engine reads the catalog once per query and gives
the query temporary views (``assets``, ``datums``, ``annotation_records``, …, the derived
``boxes``, ``annotations``, ``datum_assets``, and ``"name@version[/part]"`` dataset versions) on
its own DuckDB cursor. Views are created on demand: the query is bound, and each table DuckDB
reports missing is provided and the bind retried; the names a query text needed are remembered,
so the next run of the same text provides them up front.

Each view reads a cached DuckDB native table of exactly the pinned table version when the cache
has it (see :mod:`lakecore.query._cache`), or a copy another engine left in the disk tier (see
:mod:`lakecore.query._disk`), else the Lance dataset at that version directly (DuckDB pushes
filters and projections into the Lance scan, which uses the scalar indices).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import re
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

from lakecore.errors import ConfigError, LakecoreError, QueryError, ValidationError
from lakecore.query._cache import CACHE_CATALOG, Build, Entry, TableCache
from lakecore.query._disk import DEFAULT_DISK_BUDGET, DiskTier, default_root
from lakecore.query._views import (
    DERIVED,
    MACROS,
    DatasetRef,
    derived_sql,
    parse_ref,
    quote_ident,
)

if TYPE_CHECKING:
    import duckdb
    import polars as pl

    from lakecore.catalog import Snapshot

__all__ = ["DEFAULT_MEMORY_BUDGET", "QueryCore", "QueryEngine"]

DEFAULT_MEMORY_BUDGET = 4 << 30
"""Bytes of cached table versions per engine unless configured (``LAKECORE_SQL_CACHE``)."""

Params = Sequence[Any] | Mapping[str, Any] | None

_MISSING = re.compile(r"Table with name (.+?) does not exist[!.]")
_CATALOG_QUERY = re.compile(
    r"\b(show\s+(all\s+)?tables|show_tables|information_schema|duckdb_tables|duckdb_views|"
    r"duckdb_columns|duckdb_constraints)\b",
    re.I,
)
_NO_CACHE = re.compile(r"^\s*(describe|show|pragma)\b", re.I)
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.I)
_MAX_BINDS = 64
_PARKED = 8
"""Cursors kept with their views for the next queries."""
_ON_PATH = "search path"
"""Signature tag of a name a cursor finds through its search path (a cached table)."""
_PATH = "\x00search_path"
"""Where a cursor's signatures keep its search path (no view has this name)."""
_CLUSTER = {"annotation_records": "datum_id"}
"""Tables sorted by another column than their key when cached (records: by datum)."""
_REF_PARTS = {
    "datums": "to_arrow",
    "annotations": "annotations",
    "assets": "assets",
    "members": "members",
}


class QueryCore(Protocol):
    """What the engine needs from a lake (``lakecore.Lake`` satisfies it).

    ``datasets`` (``get(name, version) -> DatasetVersionHandle``) is optional: without it
    dataset-version names are refused.
    """

    def snapshot(self) -> Snapshot:
        """A consistent view of every table."""
        ...


def parse_size(value: int | str) -> int:
    """Bytes from ``4294967296``, ``"4GiB"``, ``"512MB"``, ``"0"``."""
    if isinstance(value, int):
        return value
    m = _SIZE.fullmatch(value)
    if m is None or m.group(2).lower() not in _UNITS:
        raise ConfigError(f"cannot read {value!r} as a size; use e.g. 4GiB, 512MB or bytes")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _error(exc: Exception, query: str) -> QueryError:
    import duckdb

    message = str(exc)
    if isinstance(exc, duckdb.PermissionException):
        message = (
            f"lake SQL cannot read or write files, attach databases or load extensions ({message})"
        )
    return QueryError(message, sql=query, kind=type(exc).__name__)


class QueryEngine:
    """Read-only SQL (DuckDB) over a lake's tables and dataset versions.

    Args:
        core: the lake (``snapshot()``; ``datasets`` for dataset-version names).
        memory_budget: bytes of cached table versions (int or ``"4GiB"``); 0 disables the
            cache. Default: ``LAKECORE_SQL_CACHE`` or 4 GiB.
        sync_rows: table versions of at most this many rows are cached by the first query that
            reads them; larger ones in the background while queries scan Lance directly.
        background: build large cached tables in a background thread (False: synchronously).
        threads: DuckDB worker threads (default: DuckDB's, the number of cores).
        disk_cache: where cached table versions are also kept on disk for other engines and
            processes (a folder; one subfolder per lake). Default: ``LAKECORE_SQL_DISK_CACHE``
            or ``~/.cache/lakecore/sql``; False (or the variable set to ``off``) disables it.
            Lakes in ``memory://`` never use it.
        disk_budget: bytes of the lake's files there (int or ``"8GiB"``). Default:
            ``LAKECORE_SQL_DISK_BUDGET`` or 8 GiB; least recently used files go first.

    Example:
        >>> engine = QueryEngine(lake)  # doctest: +SKIP
        >>> engine.sql("SELECT label, count(*) AS n FROM boxes GROUP BY label")  # doctest: +SKIP
    """

    def __init__(
        self,
        core: QueryCore,
        *,
        memory_budget: int | str | None = None,
        sync_rows: int = 250_000,
        background: bool = True,
        threads: int | None = None,
        disk_cache: str | os.PathLike[str] | bool | None = None,
        disk_budget: int | str | None = None,
    ) -> None:
        if memory_budget is None:
            memory_budget = os.environ.get("LAKECORE_SQL_CACHE", DEFAULT_MEMORY_BUDGET)
        if disk_budget is None:
            disk_budget = os.environ.get("LAKECORE_SQL_DISK_BUDGET", DEFAULT_DISK_BUDGET)
        self._disk = _disk_tier(core, disk_cache, parse_size(disk_budget))
        self._core = core
        self._budget = parse_size(memory_budget)
        self._sync_rows = sync_rows
        self._background = background
        self._threads = threads
        self._home = "memory.main"
        """The schema of the engine's own database (where the macros are), once opened."""
        self._db: duckdb.DuckDBPyConnection | None = None
        self._cache: TableCache | None = None
        self._lock = threading.Lock()
        self._versions: dict[tuple[str, int], _Version] = {}
        self._needed: collections.OrderedDict[str, tuple[str, ...]] = collections.OrderedDict()
        self._refs: dict[tuple[str, str, int | None, int | None], Any] = {}
        self._parked: list[tuple[duckdb.DuckDBPyConnection, dict[str, Hashable]]] = []

    def __repr__(self) -> str:
        return f"QueryEngine({self._core!r}, memory_budget={self._budget})"

    # -- the database -----------------------------------------------------------------------------
    def _database(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._db is None:
                self._db = self._open()
                self._cache = TableCache(
                    self._new_cursor,
                    budget=self._budget,
                    sync_rows=self._sync_rows,
                    background=self._background,
                    disk=self._disk,
                )
            return self._db

    def _open(self) -> duckdb.DuckDBPyConnection:
        import duckdb

        config: dict[str, Any] = {
            "python_enable_replacements": False,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "allow_community_extensions": False,
        }
        if self._threads:
            config["threads"] = self._threads
        db = duckdb.connect(":memory:", config=config)
        db.execute("SET GLOBAL TimeZone = 'UTC'")
        db.execute(f"ATTACH ':memory:' AS {CACHE_CATALOG} (COMPRESS)")
        for macro in MACROS:
            db.execute(macro)
        home = db.execute("SELECT current_database() || '.' || current_schema()").fetchone()
        self._home = str(home[0]) if home else "memory.main"  # where the macros are
        if self._disk is not None:  # the lake's own disk-tier folder, nothing else
            db.execute("SET allowed_directories = $1", [[self._disk.allowed]])
        db.execute("SET enable_external_access = false")
        db.execute("SET lock_configuration = true")
        return db

    def _new_cursor(self) -> duckdb.DuckDBPyConnection:
        db = self._database() if self._db is None else self._db
        with self._lock:
            return db.cursor()

    @property
    def cache(self) -> TableCache:
        """The engine's cache of table versions (``info()``, ``wait()``, ``clear()``)."""
        self._database()
        assert self._cache is not None
        return self._cache

    # -- queries ----------------------------------------------------------------------------------
    def sql(self, query: str, params: Params = None) -> pa.Table:
        """Run a read-only query at one snapshot of the lake and return its rows.

        Args:
            query: one SELECT/WITH/FROM/VALUES, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN or
                ``PRAGMA table_info`` statement (DuckDB SQL).
            params: values bound to ``?``/``$1`` (a sequence) or ``$name`` (a mapping); never
                interpolated into the text.

        Raises:
            QueryError: the SQL is invalid, refers to an unknown table or dataset version, is
                not read-only, or touches files; ``details['sql']`` holds the query.
        """
        run, table = self._start(query, params, stream=False)
        run.close(ok=True)
        return table

    def sql_reader(
        self, query: str, params: Params = None, *, batch_size: int = 65_536
    ) -> pa.RecordBatchReader:
        """Like :meth:`sql` but streams the rows (the query's snapshot is held until the reader
        is exhausted or closed)."""
        run, reader = self._start(query, params, stream=True, batch_size=batch_size)

        def batches() -> Iterator[pa.RecordBatch]:
            done = False
            try:
                while True:
                    try:
                        batch = reader.read_next_batch()
                    except StopIteration:
                        done = True
                        return
                    yield batch
            except LakecoreError:
                raise
            except Exception as exc:
                raise _error(exc, query) from None
            finally:
                run.close(ok=done)

        return pa.RecordBatchReader.from_batches(reader.schema, batches())

    def _start(
        self, query: str, params: Params, *, stream: bool, batch_size: int = 65_536
    ) -> tuple[_Run, Any]:
        import duckdb

        from lakecore.query._safety import check_read_only

        db = self._database()
        statement = check_read_only(db, query)
        text = statement.query
        snapshot = self._core.snapshot()
        memo = self._needed.get(query)
        parked = self._unpark() if memo is not None else None
        cursor, sigs = parked if parked is not None else (self._new_cursor(), {})
        run = _Run(self, cursor, snapshot, query, cache=_NO_CACHE.match(text) is None, sigs=sigs)
        try:
            if _CATALOG_QUERY.search(text):  # SHOW TABLES & co. list every view
                run.plain = True
                for name in self.table_names(snapshot):
                    run.provide(name, cache=False)
            for name in memo or ():
                run.provide(name, strict=False)
            tried: set[str] = set()
            for _ in range(_MAX_BINDS):
                try:
                    run.use_path()
                    result = _execute(run.cursor, text, _params(params), stream, batch_size)
                    break
                except duckdb.CatalogException as exc:
                    m = _MISSING.search(str(exc))
                    missing = m.group(1) if m else None
                    if missing is None or missing in tried:
                        raise _error(exc, query) from None
                    if not run.provide(missing):
                        views = ", ".join(self.table_names(snapshot))
                        raise QueryError(
                            f"no table or view named {missing!r}. Lake SQL has: {views}, and "
                            'dataset versions as "name@version[/part]"',
                            sql=query,
                            table=missing,
                        ) from None
                    tried.add(missing)
            else:  # pragma: no cover - a query naming more than 64 tables
                raise QueryError("the query names too many tables", sql=query)
            self._remember(query, run.order)
            return run, result
        except LakecoreError:
            run.close()
            raise
        except Exception as exc:
            run.close()
            raise _error(exc, query) from None

    def _park(self, cursor: duckdb.DuckDBPyConnection, sigs: dict[str, Hashable]) -> bool:
        """Keep a cursor whose query ended cleanly (its views serve the next run of a query
        text seen before); False when the pool is full."""
        with self._lock:
            if self._db is None or len(self._parked) >= _PARKED:
                return False
            self._parked.append((cursor, sigs))
            return True

    def _unpark(self) -> tuple[duckdb.DuckDBPyConnection, dict[str, Hashable]] | None:
        with self._lock:
            return self._parked.pop() if self._parked else None

    def _remember(self, query: str, names: list[str]) -> None:
        with self._lock:
            self._needed[query] = tuple(names)
            self._needed.move_to_end(query)
            while len(self._needed) > 2048:
                self._needed.popitem(last=False)

    # -- what a view reads -------------------------------------------------------------------------
    def table_names(self, snapshot: Snapshot | None = None) -> list[str]:
        """Every view a query can name: the lake's tables, then the derived views."""
        snap = snapshot or self._core.snapshot()
        return sorted(snap.pins) + [d for d in DERIVED if d not in snap.pins]

    def _describe(self, snapshot: Snapshot, name: str) -> _Version:
        """What a table version holds: its fragments (files, deletions), rows and bytes.

        The fingerprint names the data (fragments and the schema), so a commit that only
        rebuilt indices maps to the same cached table.
        """
        version = snapshot.pins[name]
        hit = self._versions.get((name, version))
        if hit is not None:
            return hit
        ds = snapshot.dataset(name)
        schema = _canonical(ds.schema).to_string()
        digest = hashlib.sha256(schema.encode())
        fragments: dict[int, tuple[Any, ...]] = {}
        rows: dict[int, int] = {}
        disk = 0
        for fragment in ds.get_fragments():
            meta = fragment.metadata
            files = tuple((f.path, f.file_size_bytes) for f in meta.files)
            deletion = meta.deletion_file  # its path holds its random id and read version
            fragments[meta.id] = (files, deletion.path(meta.id) if deletion else None)
            digest.update(repr((meta.id, fragments[meta.id])).encode())
            rows[meta.id] = int(meta.num_rows)
            disk += sum(size or 0 for _, size in files)
        described = _Version(digest.hexdigest()[:24], schema, fragments, rows, disk)
        with self._lock:
            if len(self._versions) > 8192:
                self._versions.clear()
            self._versions[(name, version)] = described
        return described

    def _resolve(self, ref: DatasetRef, snapshot: Snapshot) -> Any:
        datasets = getattr(self._core, "datasets", None)
        if datasets is None:
            raise QueryError("this lake has no dataset versions to query", sql="")
        key = (
            ref.dataset,
            ref.version,
            snapshot.pins.get("dataset_versions"),
            snapshot.pins.get("dataset_tags"),
        )
        handle = self._refs.get(key)
        if handle is None:
            handle = datasets.get(ref.dataset, ref.version)
            with self._lock:
                if len(self._refs) > 1024:
                    self._refs.clear()
                self._refs[key] = handle
        return handle

    # -- other front ends -------------------------------------------------------------------------
    def duckdb(self, refs: Sequence[str] = ()) -> duckdb.DuckDBPyConnection:
        """A new DuckDB connection of your own with the lake registered, at one snapshot.

        Every table is a view over its Lance dataset at the snapshot (filters and projections
        are pushed into Lance), plus the derived views and macros, plus the dataset versions
        named in ``refs`` (``["voc@1.0", "voc@1.0/annotations"]``). The connection is not
        read-only and not locked (``COPY … TO``, your own files, ``CREATE TABLE`` all work):
        it is yours. Views live in this connection only, not in its cursors. A lone string is
        one ref.
        """
        import duckdb

        if not isinstance(refs, Iterable):
            refs = [refs]  # refused just below
        refs = [refs] if isinstance(refs, str) else list(refs)
        bad = [r for r in refs if not isinstance(r, str)]
        if bad:
            raise ValidationError(
                f"refs: expected 'name@version[/part]' strings, got {bad[0]!r}", field="refs"
            )
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            for macro in MACROS:
                con.execute(macro)
            snapshot = self._core.snapshot()
            for name in sorted(snapshot.pins):
                register(con, name, snapshot.dataset(name))
            for name, (_, deps) in DERIVED.items():
                if name in snapshot.pins:
                    continue
                sources = {k: quote_ident(v) for k, v in deps.items()}
                con.execute(f"CREATE TEMP VIEW {name} AS {derived_sql(name, sources)}")
            for text in refs:
                ref = parse_ref(text)
                if ref is None:
                    raise QueryError(
                        f"{text!r} is not a dataset version (name@version[/part])", sql=""
                    )
                handle = self._resolve(ref, snapshot)
                if ref.part in _REF_PARTS:
                    register(con, text, getattr(handle, _REF_PARTS[ref.part])())
                else:
                    base = "annotations" if ref.part == "boxes" else "datums"
                    inner = f"{ref.dataset}@{ref.version}/{base}"
                    if inner not in refs:
                        register(con, inner, getattr(handle, _REF_PARTS[base])())
                    source = {"records" if base == "annotations" else "datums": quote_ident(inner)}
                    con.execute(
                        f"CREATE TEMP VIEW {quote_ident(text)} AS {derived_sql(ref.part, source)}"
                    )
        except BaseException:
            con.close()  # a bad ref: no half-made connection is left open
            raise
        return con

    def polars(self, table: str) -> pl.LazyFrame:
        """A polars LazyFrame of a table (or view, or ``"name@version[/part]"``) as of now.

        A lake table is scanned lazily from its Lance dataset at the current snapshot (filters
        and projections pushed down); views and dataset versions are read through SQL.
        """
        import polars as pl

        if not isinstance(table, str):
            raise ValidationError(
                f"table: expected a table, view or 'name@version' name, got {table!r}",
                field="table",
            )
        snapshot = self._core.snapshot()
        if table in snapshot.pins:
            return pl.scan_pyarrow_dataset(snapshot.dataset(table))
        rows = self.sql(f"SELECT * FROM {quote_ident(table)}")
        return pl.from_arrow(rows).lazy()  # type: ignore[union-attr]

    # -- cache control ----------------------------------------------------------------------------
    def warm(self, tables: Sequence[str] | None = None) -> None:
        """Cache the current version of ``tables`` (default: every table) now, and wait."""
        snapshot = self._core.snapshot()
        run = _Run(self, self._new_cursor(), snapshot, "", cache=True, sync=True)
        try:
            for name in tables or sorted(snapshot.pins):
                run.provide(name)
        finally:
            run.close()

    def close(self) -> None:
        """Stop background work and close the database (the engine reopens on next use)."""
        with self._lock:
            db, cache = self._db, self._cache
            self._db = self._cache = None
            parked, self._parked = self._parked, []
        for cursor, _ in parked:
            with contextlib.suppress(Exception):
                cursor.close()
        if cache is not None:
            cache.close()
        if db is not None:
            db.close()


def _disk_tier(
    core: QueryCore, setting: str | os.PathLike[str] | bool | None, budget: int
) -> DiskTier | None:
    """The lake's disk tier, or None (disabled, or a lake without a lasting location)."""
    if setting is False or budget <= 0:
        return None
    root = default_root() if setting is None or setting is True else Path(setting)
    location = getattr(core, "location", None)
    lake_id = getattr(getattr(core, "info", None), "lake_id", None)
    if root is None or location is None or lake_id is None:
        return None
    if location.given.lower().startswith("memory://"):
        return None
    # where the lake is (an absolute path, or the object store's endpoint and URI) and its id
    options = getattr(core, "storage_options", None) or {}
    endpoint = sorted((k, v) for k, v in options.items() if "endpoint" in k or "region" in k)
    return DiskTier(root, repr((location.uri, endpoint, lake_id)), budget)


def register(con: duckdb.DuckDBPyConnection, name: str, source: Any) -> None:
    """Register a Lance dataset or Arrow table as view ``name`` of ``con``.

    Lance cannot evaluate pushed-down filters on fixed-size-list (``bbox``) or struct
    (``storage.key``) columns, so those columns are passed through ``coalesce(c, NULL)``: DuckDB
    then filters them itself, while every other filter still reaches Lance and its indices.
    """
    schema = source.schema
    opaque = [
        f.name for f in schema if pa.types.is_fixed_size_list(f.type) or pa.types.is_struct(f.type)
    ]
    if not opaque:
        con.register(name, source)
        return
    hidden = f"__lance_{hashlib.sha256(name.encode()).hexdigest()[:16]}"
    con.register(hidden, source)
    replace = ", ".join(f"coalesce({quote_ident(c)}, NULL) AS {quote_ident(c)}" for c in opaque)
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {quote_ident(name)} AS "
        f"SELECT * REPLACE ({replace}) FROM {quote_ident(hidden)}"
    ).fetchall()


@dataclass(frozen=True)
class _Version:
    """A table version as the cache sees it."""

    fingerprint: str
    schema: str
    fragments: dict[int, tuple[Any, ...]]
    rows_of: dict[int, int]
    disk: int

    @property
    def rows(self) -> int:
        return sum(self.rows_of.values())

    def appended_to(self, old: Any, ds: Any) -> tuple[int, Callable[[], Any]] | None:
        """(rows, loader of the new rows) when this version only appended fragments to
        ``old`` (untouched: same files, same deletions, same schema), else None."""
        if not isinstance(old, _Version) or old.schema != self.schema:
            return None
        if any(self.fragments.get(fid) != frag for fid, frag in old.fragments.items()):
            return None
        new = [fid for fid in self.fragments if fid not in old.fragments]
        if not new:
            return None

        def load() -> pa.Table:
            return ds.scanner(fragments=[ds.get_fragment(fid) for fid in new]).to_table()

        return sum(self.rows_of[fid] for fid in new), load


def _cluster_key(table: str) -> str | None:
    """The column a cached table is sorted by: look-ups by it skip most row groups."""
    from lakecore.tables.spec import entity_specs

    column = _CLUSTER.get(table)
    if column is None:
        spec = entity_specs().get(table)
        column = spec.key if spec is not None else None
    return quote_ident(column) if column else None


def _execute(
    cursor: duckdb.DuckDBPyConnection, text: str, params: Any, stream: bool, batch_size: int
) -> pa.Table | pa.RecordBatchReader:
    """Run one statement to an Arrow table or reader.

    DuckDB's relation API (``cursor.sql(...).to_arrow_table()``) binds a statement to build
    the relation and again to run it; its ``_seam.submit`` runs it once, which saves about
    1 ms of a 4 ms point look-up. The public path is the fallback.
    """
    import duckdb

    submit = getattr(getattr(duckdb, "_seam", None), "submit", None)
    if submit is not None:
        result = submit(cursor, text, params, "stream" if stream else "arrow", batch_size)
        return result.arrow_reader() if stream else result.arrow_table()
    relation = cursor.sql(text, params=params)
    if relation is None:
        empty = pa.table({})
        return pa.RecordBatchReader.from_batches(empty.schema, iter(())) if stream else empty
    return relation.to_arrow_reader(batch_size) if stream else relation.to_arrow_table()


def _params(params: Params) -> Any:
    if params is None:
        return None
    if isinstance(params, Mapping):
        return dict(params)
    if isinstance(params, (str, bytes)):
        raise QueryError("params must be a sequence or a mapping, not a string", sql="")
    return list(params)


class _Run:
    """One query's cursor, temporary views and cache leases."""

    def __init__(
        self,
        engine: QueryEngine,
        cursor: duckdb.DuckDBPyConnection,
        snapshot: Snapshot,
        query: str,
        *,
        cache: bool,
        sync: bool = False,
        sigs: dict[str, Hashable] | None = None,
    ) -> None:
        self.engine = engine
        self.cursor = cursor
        self.sigs: dict[str, Hashable] = {} if sigs is None else sigs
        self.snapshot = snapshot
        self.query = query
        self.cache = cache
        self.sync = sync
        self.plain = False  # register Lance datasets as they are (catalog listings)
        self.views: set[str] = set()
        self.path: dict[str, str] = {}
        """Names served by a cached table found through the search path -> its schema."""
        self.order: list[str] = []
        self.leases: list[Entry] = []
        self._closed = False

    def close(self, *, ok: bool = False) -> None:
        """Release the leases; keep the cursor (and its views) for the next query when ``ok``."""
        if self._closed:
            return
        self._closed = True
        cache = self.engine._cache
        for entry in self.leases:
            if cache is not None:
                cache.release(entry)
        self.leases.clear()
        if cache is not None:
            cache.start()  # background builds this query asked for: now that it is done
        if ok and self.cache and not self.plain and self.engine._park(self.cursor, self.sigs):
            return
        with contextlib.suppress(Exception):
            self.cursor.close()

    def provide(self, name: str, *, cache: bool | None = None, strict: bool = True) -> bool:
        """Create the view ``name`` in this query's cursor; False when no such view exists."""
        use_cache = self.cache if cache is None else cache
        try:
            made = self._provide(name, use_cache)
        except LakecoreError as exc:
            if not strict:
                return False
            if isinstance(exc, QueryError):
                exc.details.setdefault("sql", self.query)
                if not exc.details["sql"]:
                    exc.details["sql"] = self.query
                raise
            raise QueryError(str(exc), sql=self.query, kind=type(exc).__name__) from exc
        if made and name not in self.order:
            self.order.append(name)
        return made

    def _provide(self, name: str, use_cache: bool) -> bool:
        lower = name.lower()
        if lower in self.views or name in self.views:
            return True
        if lower in self.snapshot.pins:
            self._table(lower, use_cache)
            return True
        if lower in DERIVED:
            _, deps = DERIVED[lower]
            for dep in deps.values():
                self._provide(dep, use_cache)
            sources = {k: quote_ident(v) for k, v in deps.items()}
            self._view(lower, derived_sql(lower, sources))
            return True
        ref = parse_ref(name)
        if ref is None:
            return False
        self._version(ref, use_cache)
        return True

    def _view(self, name: str, select: str) -> None:
        if self.sigs.get(name) != select:  # a parked cursor may have it already
            self.sigs.pop(name, None)
            self.cursor.execute(
                f"CREATE OR REPLACE TEMP VIEW {quote_ident(name)} AS {select}"
            ).fetchall()
            self.sigs[name] = select
        self.views.add(name)

    def _forget(self, name: str) -> None:
        """Drop what the cursor has under ``name`` (a view or a registration), if anything.
        Qualified: unqualified, DROP VIEW would find a cached table on the search path."""
        if self.sigs.pop(name, None) is not None:
            self.cursor.execute(f"DROP VIEW IF EXISTS temp.main.{quote_ident(name)}").fetchall()

    def _direct(self, name: str, load: Callable[[], Any], sig: Hashable) -> None:
        """Register a Lance dataset or Arrow table as ``name`` (scanned, never cached)."""
        sig = (sig, self.plain)
        if self.sigs.get(name) != sig:
            self._forget(name)  # register() cannot replace a view
            source = load()
            if self.plain:
                self.cursor.register(name, source)
            else:
                register(self.cursor, name, source)
            self.sigs[name] = sig
        self.views.add(name)

    def _table(self, name: str, use_cache: bool) -> None:
        snapshot = self.snapshot
        ds = snapshot.dataset(name)
        entry = None
        if use_cache:
            described = self.engine._describe(snapshot, name)
            entry = self.engine.cache.acquire(
                Build(
                    ("table", name, described.fingerprint),
                    f"table:{name}",
                    rows=0 if self.sync else described.rows,
                    bytes_hint=described.disk * 4,
                    load=lambda: ds,
                    order_by=_cluster_key(name),
                    meta=described,
                    appended=lambda old: described.appended_to(old, ds),
                    name=name,
                ),
                wait=self.sync,
            )
        if entry is None:
            self._direct(name, lambda: ds, ("table", name, snapshot.pins[name]))
            return
        self.leases.append(entry)
        if entry.search_path is None:  # a disk-tier copy: a view over it
            self._view(name, f"SELECT * FROM {entry.relation}")
            return
        if self.sigs.get(name) != (_ON_PATH, entry.search_path):
            self._forget(name)  # a view of the name would hide the table
            self.sigs[name] = (_ON_PATH, entry.search_path)
        self.path[name] = entry.search_path
        self.views.add(name)
        self.use_path()  # now: views created next (derived ones) are bound against it

    def use_path(self) -> None:
        """Point the cursor's search path at the schemas of this run's cached tables (and only
        those: a parked cursor's earlier path could show another version of a table), then at
        the database's own schema (the macros)."""
        schemas = sorted(set(self.path.values()))
        want = ",".join([*schemas, self.engine._home]) if schemas else ""
        if self.sigs.get(_PATH, "") != want:
            if want:
                self.cursor.execute(f"SET search_path = '{want}'").fetchall()
            else:
                self.cursor.execute("RESET search_path").fetchall()
            self.sigs[_PATH] = want

    def _version(self, ref: DatasetRef, use_cache: bool) -> None:
        try:
            handle = self.engine._resolve(ref, self.snapshot)
        except LakecoreError as exc:
            message = str(exc) if ref.text in str(exc) else f"{ref.text}: {exc}"
            raise QueryError(message, sql=self.query, kind=type(exc).__name__) from exc
        if ref.part not in _REF_PARTS:  # derived: boxes / datum_assets of the version
            base = "annotations" if ref.part == "boxes" else "datums"
            inner = f"{ref.dataset}@{ref.version}/{base}"
            self._provide(inner, use_cache)
            placeholder = "records" if base == "annotations" else "datums"
            self._view(ref.text, derived_sql(ref.part, {placeholder: quote_ident(inner)}))
            return
        method = _REF_PARTS[ref.part]
        produced: list[pa.Table] = []

        def load() -> pa.Table:
            if not produced:
                produced.append(getattr(handle, method)())
            return produced[0]

        entry = None
        if use_cache:
            vid = handle.record.version_id
            entry = self.engine.cache.acquire(
                Build(("version", vid, ref.part), f"version:{vid}:{ref.part}", 0, 0, load),
                wait=self.sync,
            )
        if entry is None:
            self._direct(ref.text, load, ("version", handle.record.version_id, ref.part))
        else:
            self.leases.append(entry)
            self._view(ref.text, f"SELECT * FROM {entry.relation}")


def _canonical(schema: pa.Schema) -> pa.Schema:
    """``schema`` with each field's metadata in sorted key order (Lance does not keep the order
    of field metadata from one version to the next)."""
    return pa.schema(
        [f.with_metadata(dict(sorted(f.metadata.items()))) if f.metadata else f for f in schema],
        metadata=dict(sorted(schema.metadata.items())) if schema.metadata else None,
    )
