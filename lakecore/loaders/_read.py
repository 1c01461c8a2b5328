"""Batched payload reads and a bounded, ordered prefetch pipeline (one per process).

Payloads the lake packs in its blob table are read as byte ranges of the table's files, which
the plan located once (``PayloadStore`` blob mounts' ``ranges``): sorted by file and offset,
with ``os.pread`` locally (the whole unit announced to the kernel first, so a cold read keeps
the disk busy) or merged ranged GETs through fsspec ``cat_ranges`` on object stores. Rows not
located that way (or whose file has gone since the plan) are read with one Lance
``read_blobs`` call per mount and batch, by stable row id; the others (payloads stored one
object each, folder mounts) go through the payload store's ``get_many``. The pipeline keeps at
most ``prefetch`` read units in flight on a thread pool and hands results back in order, so
memory is bounded by ``prefetch + 1`` units whatever the version's size.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from lakecore.loaders._plan import Locations, Source
from lakecore.storage import PayloadStore, filesystem, parse
from lakecore.storage._errors import storage_errors

__all__ = ["Reader", "ordered_prefetch"]

T = TypeVar("T")
U = TypeVar("U")

MERGE_GAP = 1 << 20
"""Object stores: ranges of one file at most this far apart are fetched by one request..."""
SMALL_GAP = 64 << 10
"""... when the gap is also at most this, or at most the next payload's size (never fetch
much more than the payloads: 4 KiB payloads 128 KiB apart are fetched one by one)..."""
MERGE_MAX = 16 << 20
"""... of at most this many bytes (unless one payload is larger)."""
OPEN_FILES = 64
"""Local files a reader keeps open (then it opens and closes per read)."""
_ADVISE = getattr(os, "posix_fadvise", None)


def _runs(start: np.ndarray, end: np.ndarray, gap: int | np.ndarray) -> list[tuple[int, int]]:
    """``[lo, hi)`` index runs of sorted ranges whose neighbours are at most ``gap`` apart
    (one gap for all, or one per neighbour pair)."""
    cut = np.flatnonzero(start[1:] - end[:-1] > gap) + 1
    bounds = [0, *cut.tolist(), len(start)]
    return list(itertools.pairwise(bounds))


def _bridgeable(size: np.ndarray) -> np.ndarray:
    """The largest gap before each range (but the first) that one request may span."""
    bridge: np.ndarray = np.minimum(MERGE_GAP, np.maximum(SMALL_GAP, size[1:]))
    return bridge


class Reader:
    """Reads payloads of a plan's locations in this process (the store is opened lazily)."""

    def __init__(self, source: Source) -> None:
        self._source = source
        self._store: PayloadStore | None = None
        self._fs: Any = None
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()
        self._fd_lock = threading.Lock()

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
        done = np.zeros(len(items), dtype=bool)
        if len(locs.files):
            self._read_ranges(locs, items, out, done)
        rowid = locs.rowid[items]
        mount = locs.mount[items]
        todo = (rowid >= 0) & ~done
        for code in np.unique(mount[todo]):
            sel = np.flatnonzero(todo & (mount == code))
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
            store = self.store  # (opened outside the lock: opening takes it too)
            with self._lock:  # the store's sha256 index is not meant for concurrent refreshes
                got_refs = store.get_many(refs)
            for j, blob in zip(missing, got_refs, strict=True):
                out[j] = blob
        return out  # type: ignore[return-value]

    # -- byte ranges of the blob table's files ---------------------------------------------------
    def _read_ranges(
        self, locs: Locations, items: np.ndarray, out: list[bytes | None], done: np.ndarray
    ) -> None:
        """Fill ``out``/``done`` for the items located in a file; failures are left to the
        row-id path (a file removed since the plan, e.g. by a cleanup of old versions)."""
        file = locs.file[items]
        empty = np.flatnonzero((file >= 0) & (locs.size[items] == 0))
        for j in empty.tolist():  # no I/O (and no empty HTTP range) for empty payloads
            out[j] = b""
        done[empty] = True
        located = np.flatnonzero((file >= 0) & (locs.size[items] > 0))
        if not len(located):
            return
        offset = locs.offset[items[located]]
        size = locs.size[items[located]]
        order = np.lexsort((offset, file[located]))
        js, file, offset, size = located[order], file[located][order], offset[order], size[order]
        cut = [0, *(np.flatnonzero(np.diff(file)) + 1).tolist(), len(js)]
        remote: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
        for lo, hi in itertools.pairwise(cut):
            path = locs.files[int(file[lo])]
            group = (js[lo:hi], offset[lo:hi], size[lo:hi])
            if os.path.isabs(path):
                self._pread(path, *group, out, done)
            else:
                remote.append((path, *group))
        if remote:
            self._cat_ranges(remote, out, done)

    def _open(self, path: str) -> tuple[int, bool]:
        """A read-only descriptor of ``path`` and whether the caller must close it."""
        with self._fd_lock:
            fd = self._fds.get(path)
            if fd is not None:
                return fd, False
            fd = os.open(path, os.O_RDONLY)
            if len(self._fds) < OPEN_FILES:
                self._fds[path] = fd
                return fd, False
            return fd, True

    def _pread(
        self,
        path: str,
        js: np.ndarray,
        offset: np.ndarray,
        size: np.ndarray,
        out: list[bytes | None],
        done: np.ndarray,
    ) -> None:
        try:
            fd, owned = self._open(path)
        except OSError:
            return
        try:
            if _ADVISE is not None and len(js) > 1:  # start every read of the unit at once
                end = offset + size
                for lo, hi in _runs(offset, end, 0):
                    _ADVISE(
                        fd, int(offset[lo]), int(end[hi - 1] - offset[lo]), os.POSIX_FADV_WILLNEED
                    )
            for j, at, n in zip(js.tolist(), offset.tolist(), size.tolist(), strict=True):
                data = os.pread(fd, n, at)
                if len(data) != n:
                    return  # a shorter file than planned: the row-id path decides
                out[j] = data
                done[j] = True
        except OSError:
            return
        finally:
            if owned:
                os.close(fd)

    def _cat_ranges(
        self,
        groups: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
        out: list[bytes | None],
        done: np.ndarray,
    ) -> None:
        """One concurrent ``cat_ranges`` call for every remote range of a unit, neighbours
        merged into requests of up to ``MERGE_MAX`` bytes."""
        if self._fs is None:
            self._fs = filesystem(parse(self._source.uri), self._source.options)
        paths: list[str] = []
        starts: list[int] = []
        ends: list[int] = []
        parts: list[tuple[list[int], list[int], list[int]]] = []
        for path, js, offset, size in groups:
            end = offset + size
            for lo, hi in _runs(offset, end, _bridgeable(size)):
                i = lo
                while i < hi:  # cut a run into requests of at most MERGE_MAX bytes
                    k = i + 1
                    while k < hi and end[k] - offset[i] <= MERGE_MAX:
                        k += 1
                    paths.append(path)
                    starts.append(int(offset[i]))
                    ends.append(int(end[k - 1]))
                    parts.append((js[i:k].tolist(), offset[i:k].tolist(), size[i:k].tolist()))
                    i = k
        try:
            got = self._fs.cat_ranges(paths, starts, ends, on_error="return")
        except Exception:  # the row-id path reads them (and reports what is wrong)
            return
        for blob, start, (rows, offs, sizes) in zip(got, starts, parts, strict=True):
            if isinstance(blob, BaseException) or len(blob) < offs[-1] + sizes[-1] - start:
                continue
            if len(rows) == 1:
                out[rows[0]] = blob if len(blob) == sizes[0] else blob[: sizes[0]]
                done[rows[0]] = True
                continue
            view = memoryview(blob)
            for j, at, n in zip(rows, offs, sizes, strict=True):
                out[j] = bytes(view[at - start : at - start + n])
                done[j] = True

    def close(self) -> None:
        """Close the files this reader keeps open."""
        with self._fd_lock:
            fds, self._fds = self._fds, {}
        for fd in fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)

    def __del__(self, _close: Callable[[int], None] = os.close) -> None:
        # Also runs at interpreter exit, when module globals (os, contextlib) may already be
        # None: use only the function bound here and builtins. Nothing else can hold this
        # reader any more, so no lock is needed.
        fds = getattr(self, "_fds", None)  # (None if __init__ did not finish)
        if not fds:
            return
        self._fds = {}
        for fd in fds.values():
            try:  # noqa: SIM105 (contextlib may be gone at exit)
                _close(fd)
            except OSError:  # a descriptor closed elsewhere
                pass


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
