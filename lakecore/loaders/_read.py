"""Batched payload reads and a bounded, ordered prefetch pipeline (one per process).

Payloads the lake packs in its blob table are read with one ``read_blobs`` call per mount and
batch, by stable row id, sorted (sequential within the file); the others (payloads stored one
object each, folder mounts) go through the payload store's ``get_many``. The pipeline keeps at
most ``prefetch`` read units in flight on a thread pool and hands results back in order, so
memory is bounded by ``prefetch + 1`` units whatever the version's size.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from lakecore.loaders._plan import Locations, Source
from lakecore.storage import PayloadStore
from lakecore.storage._errors import storage_errors

__all__ = ["Reader", "ordered_prefetch"]

T = TypeVar("T")
U = TypeVar("U")


class Reader:
    """Reads payloads of a plan's locations in this process (the store is opened lazily)."""

    def __init__(self, source: Source) -> None:
        self._source = source
        self._store: PayloadStore | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> PayloadStore:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = self._source.open()
        return self._store

    def read(self, locs: Locations, items: np.ndarray) -> list[bytes]:
        """The payload bytes of ``items`` (indices into ``locs``), in order."""
        out: list[bytes | None] = [None] * len(items)
        rowid = locs.rowid[items]
        mount = locs.mount[items]
        for code in np.unique(mount[rowid >= 0]):
            sel = np.flatnonzero((rowid >= 0) & (mount == code))
            unique, inverse = np.unique(rowid[sel], return_inverse=True)
            blob_mount = self.store.mount(locs.mounts[int(code)])
            with storage_errors("reading payloads"):
                got = blob_mount.dataset().read_blobs(  # type: ignore[union-attr]
                    "data", ids=unique.tolist(), preserve_order=True
                )
            data = [blob for _address, blob in got]
            for j, k in zip(sel.tolist(), inverse.tolist(), strict=True):
                out[j] = data[k]
        missing = [j for j, b in enumerate(out) if b is None]
        if missing:  # stored one object each, on a folder mount, or gone from the blob table
            refs = [locs.ref(int(items[j])) for j in missing]
            with self._lock:  # the store's sha256 index is not meant for concurrent refreshes
                got_refs = self.store.get_many(refs)
            for j, blob in zip(missing, got_refs, strict=True):
                out[j] = blob
        return out  # type: ignore[return-value]


def ordered_prefetch(units: Iterable[T], work: Callable[[T], U], *, prefetch: int) -> Iterator[U]:
    """``work(unit)`` for each unit on ``prefetch`` threads, yielded in input order.

    At most ``prefetch`` units are in flight besides the one being consumed. With
    ``prefetch=0`` everything runs in the calling thread.
    """
    if prefetch <= 0:
        for unit in units:
            yield work(unit)
        return
    pending: deque[Future[U]] = deque()
    source = iter(units)
    pool = ThreadPoolExecutor(max_workers=prefetch, thread_name_prefix="lakecore-loader")
    try:
        for unit in source:
            pending.append(pool.submit(work, unit))
            if len(pending) > prefetch:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def byte_units(
    positions: np.ndarray, sizes: np.ndarray, *, step: int, max_items: int, max_bytes: int
) -> list[np.ndarray]:
    """Cut ``positions`` into read units of whole ``step``-sized groups, bounded in items and
    bytes (a unit holds at least one group)."""
    n = len(positions)
    if n == 0:
        return []
    step = max(step, 1)
    group_starts = np.arange(0, n, step)
    group_bytes = np.add.reduceat(sizes, group_starts) if len(sizes) else np.zeros(0, np.int64)
    cum = np.concatenate(([0], np.cumsum(group_bytes)))
    per_unit = max(max_items // step, 1)
    out: list[np.ndarray] = []
    g = 0
    groups = len(group_starts)
    while g < groups:
        # the furthest group end within the byte budget, at least one group, at most per_unit
        end = int(np.searchsorted(cum, cum[g] + max_bytes, side="right")) - 1
        end = min(max(end, g + 1), g + per_unit, groups)
        lo = int(group_starts[g])
        hi = int(group_starts[end]) if end < groups else n
        out.append(positions[lo:hi])
        g = end
    return out


def unit_sizes(locations: dict[str, Locations], positions: np.ndarray) -> np.ndarray:
    """Payload bytes per position, all roles summed."""
    total = np.zeros(len(positions), dtype=np.int64)
    for locs in locations.values():
        total += locs.size[positions]
    return total
