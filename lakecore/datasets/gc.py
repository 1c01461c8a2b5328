"""Garbage collection: reclaim table versions and payloads that nothing can read any more.

Kept, always: the versions the catalog pins now, every version (catalog and tables) a dataset
version reads, anything younger than ``grace`` (readers may hold snapshots), the latest version
of every table; and every payload an asset references in any of those kept table versions (which
covers aliases, collection items and retentions: they hold assets). Runs under the writer lease.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import lance
import pyarrow as pa
import pyarrow.compute as pc

from lakecore.entities._base import in_filter
from lakecore.storage import BlobMount
from lakecore.tables.write import COMPACT_FRAGMENTS, Compact

if TYPE_CHECKING:
    from lakecore.catalog import Catalog
    from lakecore.storage import PayloadStore

__all__ = ["GcReport", "collect"]

TAG_PREFIX = "lakecore-v"


@dataclass
class GcReport:
    """What gc found and (unless a dry run) removed."""

    dry_run: bool
    bytes_before: int = 0
    bytes_after: int = 0
    versions_removed: dict[str, int] = field(default_factory=dict)
    versions_kept: dict[str, int] = field(default_factory=dict)
    payloads_live: int = 0
    payload_bytes_live: int = 0
    payloads_dead: int = 0
    payload_bytes_dead: int = 0
    compacted: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The report as plain data."""
        return dict(self.__dict__)


def _du(fs: Any, path: str) -> int:
    try:
        return int(fs.du(path, total=True))
    except (OSError, FileNotFoundError):
        return 0


def _keep_sets(catalog: Catalog) -> tuple[dict[str, set[int]], set[int]]:
    """Table versions and catalog versions that must survive."""
    snap = catalog.snapshot()
    keep = {name: {v} for name, v in snap.pins.items()}
    cats = {snap.catalog_version}
    records = snap.to_table("dataset_versions", columns=["catalog_version"])
    for cv in sorted(set(records["catalog_version"].to_pylist())):
        cats.add(cv)
        for name, v in catalog.snapshot_at(cv).pins.items():
            keep.setdefault(name, set()).add(v)
    return keep, cats


def _removable(ds: lance.LanceDataset, keep: set[int], cutoff: datetime) -> list[int]:
    latest = ds.latest_version
    out = []
    for info in ds.versions():
        v = int(info["version"])
        ts = _aware(info["timestamp"])
        if v not in keep and v != latest and ts < cutoff:
            out.append(v)
    return out


def _clean(uri: str, options: Any, keep: set[int], cutoff: datetime, dry_run: bool) -> int:
    ds = lance.dataset(uri, storage_options=options)
    doomed = _removable(ds, keep, cutoff)
    if dry_run or not doomed:
        return len(doomed)
    tags = ds.tags.list()
    for name, info in tags.items():  # our tags on versions nothing needs any more
        if name.startswith(TAG_PREFIX) and int(info["version"]) not in keep:
            ds.tags.delete(name)
    for v in keep:
        name = f"{TAG_PREFIX}{v}"
        if name not in tags and v <= ds.latest_version:
            with contextlib.suppress(OSError, ValueError):  # gone, or tagged already
                ds.tags.create(name, v)
    ds.cleanup_old_versions(versions=doomed, error_if_tagged_old_versions=False)
    return len(doomed)


def _live_shas(catalog: Catalog, keep: dict[str, set[int]]) -> pa.Array:
    parts = []
    for v in sorted(keep.get("assets", ())):
        table = catalog.store.at("assets", v).to_table(columns=["sha256"])
        parts.append(table["sha256"].combine_chunks())
    return pc.unique(pa.concat_arrays(parts)) if parts else pa.array([], pa.string())


def _payloads(
    payloads: PayloadStore, live: pa.Array, cutoff: datetime, dry_run: bool, report: GcReport
) -> None:
    mount = payloads.mount(payloads.default_mount)
    if not isinstance(mount, BlobMount):  # a folder mount: the lake does not own its files
        return
    blob_uri = mount.table_uri
    ds = mount.dataset(refresh=True)
    old = [int(i["version"]) for i in ds.versions() if _aware(i["timestamp"]) < cutoff]
    rows = ds.to_table(columns=["sha256", "size"])
    is_live = pc.is_in(rows["sha256"], value_set=live)
    report.payloads_live = int(pc.sum(is_live).as_py() or 0)
    report.payload_bytes_live = int(pc.sum(rows["size"].filter(is_live)).as_py() or 0)
    if old:
        settled = lance.dataset(blob_uri, version=max(old), storage_options=mount.storage_options)
        settled_rows = settled.to_table(columns=["sha256", "size"])
        young = pc.invert(pc.is_in(rows["sha256"], value_set=settled_rows["sha256"]))
        young_shas = rows["sha256"].filter(young)
        dead_mask = pc.and_(
            pc.invert(pc.is_in(settled_rows["sha256"], value_set=live)),
            pc.invert(pc.is_in(settled_rows["sha256"], value_set=young_shas)),
        )
        dead = settled_rows.filter(dead_mask)
    else:
        dead = rows.slice(0, 0)
    report.payloads_dead = dead.num_rows
    report.payload_bytes_dead = int(pc.sum(dead["size"]).as_py() or 0)
    fs = mount.fs
    objects = mount.objects.uri
    try:
        large = fs.find(objects, detail=True)
    except (OSError, FileNotFoundError):
        large = {}
    live_set = set(live.to_pylist())
    stale = [
        p
        for p, info in large.items()
        if p.rsplit("/", 1)[-1] not in live_set and _mtime(info) < cutoff
    ]
    report.payloads_dead += len(stale)
    report.payload_bytes_dead += sum(int(large[p]["size"]) for p in stale)
    if dry_run:
        return
    shas = dead["sha256"].to_pylist()
    for start in range(0, len(shas), 4096):
        ds.delete(in_filter("sha256", shas[start : start + 4096]))
    if shas:
        ds.optimize.compact_files()
        ds.cleanup_old_versions(older_than=timedelta(0), error_if_tagged_old_versions=False)
    if stale:
        fs.rm(stale)
    mount.refresh()


def _aware(ts: Any) -> datetime:
    """A Lance version timestamp as an aware datetime (Lance gives naive UTC)."""
    if not isinstance(ts, datetime):
        raise TypeError(f"unexpected Lance version timestamp {ts!r}")
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def _mtime(info: dict[str, Any]) -> datetime:
    for key in ("LastModified", "mtime", "last_modified"):
        value = info.get(key)
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, (int, float)):
            return datetime.fromtimestamp(value, UTC)
    return datetime.now(UTC)


def collect(
    catalog: Catalog,
    payloads: PayloadStore,
    fs: Any,
    root: str,
    *,
    dry_run: bool = True,
    grace: timedelta = timedelta(hours=1),
    compact: bool = True,
) -> GcReport:
    """Reclaim unreachable table versions and payloads; see the module docstring.

    Args:
        dry_run: only report what would be removed.
        grace: keep anything younger than this (snapshots readers may still hold).
        compact: rewrite tables with many small fragments first (a normal, atomic commit).
    """
    started = time.monotonic()
    report = GcReport(dry_run=dry_run, bytes_before=_du(fs, root))
    if compact and not dry_run:
        snap = catalog.snapshot()
        ops = [
            Compact(name)
            for name in sorted(snap.pins)
            if len(snap.dataset(name).get_fragments()) > COMPACT_FRAGMENTS
        ]
        if ops:
            result = catalog.commit(ops, message="gc: compact")
            report.compacted = sorted(result.tables)
    cutoff = datetime.now(UTC) - grace
    catalog.lease.acquire(catalog.lease_timeout)
    try:
        keep, cats = _keep_sets(catalog)
        store = catalog.store
        for name in sorted(keep):
            report.versions_kept[name] = len(keep[name])
            report.versions_removed[name] = _clean(
                store.uri(name), store.options, keep[name], cutoff, dry_run
            )
        report.versions_kept["_catalog"] = len(cats)
        report.versions_removed["_catalog"] = _clean(
            catalog.uri, store.options, cats, cutoff, dry_run
        )
        _payloads(payloads, _live_shas(catalog, keep), cutoff, dry_run, report)
    finally:
        catalog.lease.release()
    report.bytes_after = report.bytes_before if dry_run else _du(fs, root)
    report.seconds = time.monotonic() - started
    return report
