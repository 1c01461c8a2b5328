"""The Lake: the facade a user opens. It wires the layers together and has no logic of its own."""

from __future__ import annotations

import math
import operator
import os
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import pyarrow as pa

from lakecore.catalog import Catalog, CommitResult, Snapshot
from lakecore.catalog.commit import Build
from lakecore.datasets import Datasets
from lakecore.datasets.gc import GcReport
from lakecore.datasets.gc import collect as gc_collect
from lakecore.entities.aliases import Aliases
from lakecore.entities.annotations import Annotations
from lakecore.entities.assets import Assets
from lakecore.entities.collections import Collections, Retentions
from lakecore.entities.datums import Datums
from lakecore.entities.summary import summary
from lakecore.errors import ConfigError, LakeNotFoundError, StorageError, ValidationError
from lakecore.query import QueryEngine
from lakecore.storage import (
    DEFAULT_LARGE_THRESHOLD,
    LakeUri,
    PayloadStore,
    StorageOptions,
    filesystem,
    parse,
)
from lakecore.storage._errors import storage_errors
from lakecore.storage.options import check_options
from lakecore.tables import TableStore, entity_specs
from lakecore.tables.write import Compact, Op, Reindex
from schemas import LakeInfo, MountConfig, MountKind
from schemas._common import check_mount_name

__all__ = ["FORMAT_VERSION", "Lake", "connect"]

FORMAT_VERSION = 1
"""The lake format this lakecore writes; lakes of a newer format are refused."""


class Lake:
    """An open lake. Use :func:`connect` to get one.

    Attributes:
        uri: the lake's location as given.
        info: the lake's ``lake.json`` (id, format, mounts).
        objects: the payload store (``put``, ``put_many``, ``get``, ``get_many``, ``open``,
            ``head``, ``exists``, ``copy``, ``register``).
        assets, aliases, collections, retentions, datums, annotations: the entity API
            (batch-first, validated, atomic).
        datasets: immutable dataset versions (build, resolve, read, diff, tag).
    """

    def __init__(
        self,
        location: LakeUri,
        info: LakeInfo,
        options: StorageOptions | None,
        *,
        lease_ttl: float,
        large_threshold: int,
        background_index: bool = True,
    ) -> None:
        self.location = location
        self.uri = location.given
        self.info = info
        self.storage_options = dict(options or {})
        fs = filesystem(location, options)
        self._fs = fs
        self.objects = PayloadStore(location, info, options, large_threshold=large_threshold)
        self._tables = TableStore(location, entity_specs(), options)
        self._catalog = Catalog(
            location, self._tables, fs, lease_ttl=lease_ttl, background_index=background_index
        )
        self.assets = Assets(self)
        self.aliases = Aliases(self)
        self.collections = Collections(self)
        self.retentions = Retentions(self)
        self.datums = Datums(self)
        self.annotations = Annotations(self)
        self.datasets = Datasets(self)
        self._query: QueryEngine | None = None

    def __repr__(self) -> str:
        return f"Lake({self.uri!r}, id={self.info.lake_id!r})"

    # -- snapshots and commits (used by the entity API) ----------------------------------------
    def snapshot(self) -> Snapshot:
        """A consistent view of every table, as of now."""
        return self._catalog.snapshot()

    def snapshot_at(self, catalog_version: int) -> Snapshot:
        """The consistent view of the lake as of an earlier catalog version.

        Raises:
            ValidationError: ``catalog_version`` is not an int >= 1 (``field="catalog_version"``).
            VersionNotFoundError: the catalog has no such version (or it was cleaned up).
        """
        try:
            version = operator.index(catalog_version)
        except TypeError:
            version = 0
        if isinstance(catalog_version, bool) or version < 1:
            raise ValidationError(
                f"catalog_version must be an int >= 1 (a Snapshot's catalog_version), got "
                f"{catalog_version!r}",
                field="catalog_version",
            )
        return self._catalog.snapshot_at(version)

    def protect(self, catalog_version: int, pins: dict[str, int]) -> None:
        """Tag a catalog version and table versions so clean-up never removes them."""
        self._catalog.protect(catalog_version, pins)

    def table(self, name: str, *, snapshot: Snapshot | None = None, **scan: Any) -> pa.Table:
        """Read a whole table (``columns=``, ``filter=``) at a snapshot (default: now)."""
        return (snapshot or self.snapshot()).to_table(name, **scan)

    def commit(
        self, ops: Sequence[Op] = (), *, build: Build | None = None, message: str | None = None
    ) -> CommitResult:
        """Commit table operations atomically across tables (see ``lakecore.catalog``)."""
        return self._catalog.commit(ops, build=build, message=message)

    def prepare(self, op: Op) -> Op:
        """Write an append's data files ahead of its commit (see ``Catalog.prepare``)."""
        return self._catalog.prepare(op)

    def discard(self, op: Op) -> None:
        """Remove the files ``prepare`` wrote for an op that will not be committed."""
        self._catalog.discard(op)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for this lake's background work: index refreshes after large writes, and the
        SQL engine's cache builds (at most ``timeout`` seconds).

        Nothing needs it for correctness (reads see committed rows at once); it is for timing,
        and for handing the lake's files to something else right after writing.

        Raises:
            ValidationError: ``timeout`` is not None nor a number of seconds >= 0.
        """
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not timeout >= 0  # NaN too
        ):
            raise ValidationError(
                f"timeout must be None (wait for ever) or a number of seconds >= 0, got "
                f"{timeout!r}",
                field="timeout",
            )
        deadline = None if timeout is None else time.monotonic() + timeout
        self._catalog.refresher.wait(timeout)
        if self._query is not None:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            self._query.cache.wait(left)

    # -- SQL (DuckDB, imported on first use) ----------------------------------------------------
    @property
    def query(self) -> QueryEngine:
        """The lake's SQL engine (one per lake; caches immutable table versions)."""
        if self._query is None:
            self._query = QueryEngine(self)
        return self._query

    def sql(self, query: str, params: Any = None) -> pa.Table:
        """Run read-only SQL over every table and dataset version; see ``docs/sql.md``."""
        return self.query.sql(query, params)

    def sql_reader(self, query: str, params: Any = None) -> pa.RecordBatchReader:
        """Like :meth:`sql`, streamed as Arrow record batches."""
        return self.query.sql_reader(query, params)

    def duckdb(self, refs: Sequence[str] = ()) -> Any:
        """A DuckDB connection with every table (and the named dataset versions) registered."""
        return self.query.duckdb(refs)

    def polars(self, table: str) -> Any:
        """A polars LazyFrame of a table, a view or a ``"name@version"`` dataset version."""
        return self.query.polars(table)

    def gc(
        self, *, dry_run: bool = True, grace: timedelta = timedelta(hours=1), compact: bool = True
    ) -> GcReport:
        """Reclaim table versions and payloads nothing can read (see ``lakecore.datasets.gc``).

        Never removes what a committed dataset version, the current lake, an alias, a
        collection item or a retention holds, nor anything younger than ``grace``.

        Raises:
            ValidationError: ``grace`` is not a ``timedelta`` >= 0, or ``dry_run`` / ``compact``
                is not a bool (nothing is removed).
        """
        if not isinstance(grace, timedelta) or grace < timedelta(0):
            raise ValidationError(
                f"grace must be a datetime.timedelta >= 0 (e.g. timedelta(hours=1)), got {grace!r}",
                field="grace",
            )
        for field, flag in (("dry_run", dry_run), ("compact", compact)):
            if not isinstance(flag, bool):
                raise ValidationError(f"{field} must be True or False, got {flag!r}", field=field)
        return gc_collect(
            self._catalog,
            self.objects,
            self._fs,
            self.location.uri,
            dry_run=dry_run,
            grace=grace,
            compact=compact,
        )

    def optimize(self) -> dict[str, int]:
        """Compact every table's small fragments and rebuild its scalar indices as one segment.

        One atomic commit; what readers see does not change. Returns the tables' new versions.
        """
        snap = self.snapshot()
        ops: list[Op] = []
        for name in sorted(snap.pins):
            if len(snap.dataset(name).get_fragments()) > 1:
                ops.append(Compact(name))
            ops.append(Reindex(name, merge=True))
        return dict(self._catalog.commit(ops, message="optimize").tables)

    def summary(self) -> dict[str, Any]:
        """Row counts of every table, payload count and bytes."""
        return summary(self)

    @property
    def table_names(self) -> list[str]:
        """The lake's entity tables."""
        return sorted(self._tables.specs)

    def describe(self) -> dict[str, Any]:
        """Lake id, format, mounts, and row count and version of every table."""
        snap = self.snapshot()
        return {
            "uri": self.uri,
            "lake_id": self.info.lake_id,
            "format_version": self.info.format_version,
            "catalog_version": snap.catalog_version,
            "mounts": self.objects.describe(),
            "default_mount": self.info.default_mount,
            "tables": {
                name: {"rows": snap.count(name), "version": snap.pins[name]}
                for name in sorted(snap.pins)
            },
        }


def _read_info(location: LakeUri, options: StorageOptions | None) -> LakeInfo | None:
    fs = filesystem(location, options)
    path = location.child("lake.json").uri
    with storage_errors(f"reading {path}"):
        try:
            raw = fs.cat_file(path)
        except FileNotFoundError:
            return None
    try:
        return LakeInfo.model_validate_json(raw)
    except ValueError as exc:
        raise ConfigError(f"{path} is not a valid lake.json: {exc}") from exc


def _initialise(location: LakeUri, options: StorageOptions | None, info: LakeInfo) -> LakeInfo:
    """Create payload store, tables and catalog, then publish lake.json (create-if-absent)."""
    probe = Lake(location, info, options, lease_ttl=30.0, large_threshold=DEFAULT_LARGE_THRESHOLD)
    probe.objects.create()
    versions = probe._tables.create_missing()
    probe._catalog.create(versions)
    fs = filesystem(location, options)
    path = location.child("lake.json").uri
    try:
        with storage_errors(f"writing {path}"):
            fs.pipe_file(path, info.model_dump_json(indent=2).encode(), mode="create")
    except StorageError:
        winner = _read_info(location, options)
        if winner is None:
            raise
        return winner
    return info


def connect(
    uri: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, str] | None = None,
    create: bool = True,
    mounts: Mapping[str, str] | None = None,
    lease_ttl: float = 30.0,
    large_threshold: int = DEFAULT_LARGE_THRESHOLD,
    background_index: bool = True,
) -> Lake:
    """Open the lake at ``uri``, creating it when absent (unless ``create=False``).

    Args:
        uri: a local folder, ``s3://bucket/prefix``, ``gs://…``, ``az://…`` or ``memory://name``.
        storage_options: object-store options (``endpoint``, ``aws_access_key_id``, …; see
            ``lakecore.storage.options``), used for the lake and its folder mounts.
        create: create a new lake when none exists at ``uri``.
        mounts: extra folder mounts to add, name -> URI (a str or path; kept in
            ``lake.json``). Every mount is checked (name, URI, storage backend) before
            ``lake.json`` is written: a bad one raises :class:`ConfigError` and changes nothing.
        lease_ttl: seconds after which a crashed writer's lease may be taken over.
        large_threshold: payloads of at least this many bytes are stored one object each.
        background_index: index the rows of a large write in a background commit right after
            it (the write returns sooner; :meth:`Lake.wait` waits for it). False: every commit
            indexes its rows itself before it returns.

    Raises:
        ConfigError: a bad argument (``uri``, ``storage_options``, ``mounts``, ``lease_ttl``,
            ``large_threshold``; ``details["field"]`` names it). Nothing is created or changed.
        LakeNotFoundError: no lake at ``uri`` and ``create=False``.

    Example:
        >>> import lakecore
        >>> lake = lakecore.connect("memory://doc-example")
        >>> ref = lake.objects.put(b"hello")
        >>> lake.objects.get(ref)
        b'hello'
    """
    # every argument is checked before anything is read, created or written
    location = parse(uri)
    check_options(storage_options)
    _check_settings(lease_ttl, large_threshold)
    added = None if mounts is None else _mount_configs(storage_options, mounts)
    info = _read_info(location, storage_options)
    if info is None:
        if not create:
            raise LakeNotFoundError(f"no lake at {location.given!r} (lake.json missing)")
        fresh = LakeInfo()
        if added:
            fresh = _merge_mounts(fresh, added)
        info = _initialise(location, storage_options, fresh)
    if info.format_version > FORMAT_VERSION:
        raise ConfigError(
            f"the lake at {location.given!r} has format {info.format_version}, newer than this "
            f"lakecore ({FORMAT_VERSION}): upgrade lakecore"
        )
    if added:
        info = _add_mounts(location, storage_options, info, added)
    lake = Lake(
        location,
        info,
        storage_options,
        lease_ttl=lease_ttl,
        large_threshold=large_threshold,
        background_index=background_index,
    )
    pins = lake.snapshot().pins
    if set(lake._tables.specs) - set(pins):  # a lake made by an older lakecore
        missing = {n: v for n, v in lake._tables.create_missing().items() if n not in pins}
        lake._catalog.commit(add_tables=missing, message="add tables")
    return lake


def _check_settings(lease_ttl: object, large_threshold: object) -> None:
    """Refuse a ``lease_ttl`` or ``large_threshold`` that is not a positive number."""
    if (
        isinstance(lease_ttl, bool)
        or not isinstance(lease_ttl, (int, float))
        or not 0 < lease_ttl < math.inf
    ):
        raise ConfigError(
            f"lease_ttl must be a number of seconds > 0 (e.g. 30.0), got {lease_ttl!r}",
            field="lease_ttl",
        )
    if isinstance(large_threshold, bool) or not hasattr(large_threshold, "__index__"):
        raise ConfigError(
            f"large_threshold must be an int number of bytes >= 1, got {large_threshold!r}",
            field="large_threshold",
        )
    if operator.index(large_threshold) < 1:
        raise ConfigError(
            f"large_threshold must be >= 1 byte, got {large_threshold}", field="large_threshold"
        )


_MOUNTS_HINT = "pass mounts as a dict of name -> folder URI, e.g. {'raw': 's3://bucket/raw'}"


def _mount_configs(options: StorageOptions | None, mounts: object) -> dict[str, MountConfig]:
    """Check the ``mounts`` argument of :func:`connect` and return its mount configurations.

    Every name must be a valid mount name and every URI a str or path that parses (a local path,
    ``file://``, ``s3://bucket[/prefix]``, ``gs://…``, ``az://…``, ``memory://name``) and whose
    storage backend is installed. Storage is not contacted.

    Raises:
        ConfigError: naming the mount and what is accepted.
    """
    if not isinstance(mounts, Mapping):
        raise ConfigError(
            f"mounts must be a dict, got type {type(mounts).__name__} ({mounts!r}): {_MOUNTS_HINT}",
            field="mounts",
        )
    out: dict[str, MountConfig] = {}
    for name, uri in mounts.items():
        if not isinstance(name, str):
            raise ConfigError(
                f"mount name {name!r} is of type {type(name).__name__}, not a str: {_MOUNTS_HINT}",
                field="mounts",
                mount=repr(name),
            )
        try:
            check_mount_name(name)
        except ValueError as exc:
            raise ConfigError(str(exc), field="mounts", mount=name) from None
        if not isinstance(uri, (str, os.PathLike)):
            raise ConfigError(
                f"mount {name!r}: its URI must be a str or a path (a local folder, "
                f"s3://bucket/prefix, gs://…, az://… or memory://name), got type "
                f"{type(uri).__name__} ({uri!r})",
                field="mounts",
                mount=name,
            )
        try:
            filesystem(parse(uri), options)  # the backend is installed (nothing is contacted)
        except ConfigError as exc:
            raise ConfigError(f"mount {name!r}: {exc}", field="mounts", mount=name) from None
        out[name] = MountConfig(kind=MountKind.FOLDER, uri=os.fspath(uri))
    return out


def _merge_mounts(info: LakeInfo, added: Mapping[str, MountConfig]) -> LakeInfo:
    """``info`` with the ``added`` mounts (checked: no name may change its configuration)."""
    new = dict(info.mounts)
    for name, cfg in added.items():
        if name in new and new[name] != cfg:
            old = new[name]
            was = "the lake's own payload store" if old.kind is MountKind.LAKE else repr(old.uri)
            raise ConfigError(
                f"mount {name!r} exists already as {was}: a mount cannot be re-pointed; pick "
                "another name",
                field="mounts",
                mount=name,
            )
        new[name] = cfg
    if new == info.mounts:
        return info
    try:
        return LakeInfo.model_validate({**info.model_dump(), "mounts": new})
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigError(f"bad mounts: {exc}", field="mounts") from None


def _add_mounts(
    location: LakeUri,
    options: StorageOptions | None,
    info: LakeInfo,
    added: Mapping[str, MountConfig],
) -> LakeInfo:
    """Add checked mounts (see :func:`_mount_configs`) to ``lake.json``; a no-op when it has
    them already. Every check runs before ``lake.json`` is rewritten."""
    merged = _merge_mounts(info, added)
    if merged is info:
        return info
    fs = filesystem(location, options)
    with storage_errors("updating lake.json"):
        fs.pipe_file(location.child("lake.json").uri, merged.model_dump_json(indent=2).encode())
    return merged
