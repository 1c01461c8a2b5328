"""The content-addressed payload store.

A payload is located by a :class:`schemas.StorageRef` ``(mount, key, sha256, size)``. Mounts:

* the lake's own mount (kind ``lake``, named ``lake`` by default): payloads below
  ``large_threshold`` are packed into a blob-encoded Lance column (``payloads/blobs.lance``,
  one row per sha256, so the same bytes are stored once; key ``blob/<sha256>``); larger ones are
  streamed into one object each (``payloads/objects/<aa>/<sha256>``, key ``objects/<aa>/<sha>``)
  with memory flat whatever their size.
* folder mounts (kind ``folder``): a local folder or a bucket prefix holding one object per
  payload. ``put`` writes ``by-sha256/<aa>/<sha256>`` unless a key is given; ``register`` turns an
  object already there into a reference without copying it.

Payload writes are not part of a lake commit: they are idempotent (content-addressed) and
invisible until a committed row references them; garbage collection reclaims the others.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, BinaryIO, Union

import lance
import numpy as np
import pyarrow as pa

from lakecore.errors import (
    ConfigError,
    MountNotFoundError,
    ObjectNotFoundError,
    PayloadArgumentError,
    PreconditionFailedError,
    StorageError,
    ValidationError,
)
from lakecore.storage._errors import storage_errors
from lakecore.storage.options import StorageOptions, filesystem, lance_options
from lakecore.storage.uri import LakeUri, parse
from schemas import LakeInfo, MountKind, StorageRef

__all__ = [
    "DEFAULT_LARGE_THRESHOLD",
    "PayloadSource",
    "PayloadStore",
    "Progress",
    "StoredPayloads",
]


DEFAULT_LARGE_THRESHOLD = 64 * 1024 * 1024
"""Payloads at least this large are streamed to one object each instead of the blob column."""

CHUNK = 8 * 1024 * 1024
BATCH_BYTES = 256 * 1024 * 1024
STREAM_BYTES = 4 * 1024 * 1024
"""Small payloads are hashed and handed to Lance in record batches of about this size, so the
hashing of one batch overlaps Lance encoding the previous one."""
PUT_THREADS = 4
"""Writers storing small payloads at once. Lance encodes a blob column on about one core per
writer: 10k x 4 KiB took 127-165 ms as one stream and 67-89 ms as four (2 vCPUs, measured)."""
PART_BYTES = 8 * 1024 * 1024
"""Each writer gets at least this many bytes (smaller puts use one writer, no thread)."""

INLINE_MAX = 0
"""New payload tables keep no payload inline in their data files: Lance packs every non-empty
blob into its fragment's sidecar files. Writing 10k x 4 KiB through four writers took 61-76 ms
packed against 85-182 ms inline (Lance's default keeps blobs up to 64 KiB inline; 2 vCPUs,
measured); reads by row id and by byte range work the same on both."""
_INLINE_KEY = b"lance-encoding:blob-inline-size-threshold"

PayloadSource = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", IO[bytes]]
"""bytes-like data, a local file path, or a readable binary stream."""

Progress = Callable[[int, int | None], None]
"""Progress callback: ``(items_done, items_total_or_None)``."""

BLOB_SCHEMA = pa.schema(
    [
        pa.field(
            "sha256",
            pa.string(),
            nullable=False,
            # hex digests barely compress; compressing them is most of their write cost
            metadata={
                "lance-schema:unenforced-primary-key": "true",
                "lance-encoding:compression": "none",
            },
        ),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("data", pa.large_binary(), metadata={"lance-encoding:blob": "true"}),
    ]
)


def new_table_schema() -> pa.Schema:
    """The schema a new payload table is created with: ``BLOB_SCHEMA`` plus ``INLINE_MAX``.

    The blob thresholds live in the table's own schema and appends cannot change them, so a
    lake made before ``INLINE_MAX`` keeps Lance's default and goes on storing small payloads
    inline (``ranges`` reads both layouts); appends give ``BLOB_SCHEMA`` and get the table's.
    """
    i = BLOB_SCHEMA.get_field_index("data")
    data = BLOB_SCHEMA.field(i)
    meta = {**(data.metadata or {}), _INLINE_KEY: str(INLINE_MAX).encode()}
    return BLOB_SCHEMA.set(i, data.with_metadata(meta))


def _copy(head: list[bytes], stream: IO[bytes], out: IO[bytes], digest: Any) -> int:
    """Write the ``head`` chunks then the rest of ``stream`` to ``out``; return the size."""
    size = 0
    while head:  # chunk-sized writes let the writer flush (multipart) part by part
        part = head.pop(0)
        digest.update(part)
        size += len(part)
        out.write(part)
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
        out.write(chunk)
    return size


def _read_head(stream: IO[bytes], limit: int) -> list[bytes]:
    """Read chunks until ``limit`` bytes or the end of the stream (no big concatenation)."""
    head: list[bytes] = []
    total = 0
    while total < limit:
        chunk = stream.read(min(CHUNK, limit - total))
        if not chunk:
            break
        head.append(chunk)
        total += len(chunk)
    return head


def _binary_array(values: list[bytes]) -> pa.Array:
    """A large_binary array from one concatenation (3x faster than ``pa.array`` for MiB items)."""
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum([len(v) for v in values], out=offsets[1:])
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(),
        len(values),
        [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(values))],
    )


def _fanout(sha: str) -> str:
    return f"{sha[:2]}/{sha}"


class _Staged:
    """Small payloads held in memory (not hashed yet), with their input rows."""

    __slots__ = ("data", "nbytes", "rows")

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.data: list[bytes] = []
        self.nbytes = 0

    def add(self, row: int, data: bytes) -> None:
        self.rows.append(row)
        self.data.append(data)
        self.nbytes += len(data)


class StoredPayloads:
    """Where a batch of payloads was stored, as columns in input order (no per-payload objects).

    Attributes:
        mount: the mount every payload was written to.
        keys, sha256, sizes: one entry per payload.
    """

    __slots__ = ("keys", "mount", "sha256", "sizes")

    def __init__(self, mount: str, n: int) -> None:
        self.mount = mount
        self.keys: list[str] = [""] * n
        self.sha256: list[str] = [""] * n
        self.sizes: list[int] = [0] * n

    def __len__(self) -> int:
        return len(self.keys)

    def set(self, row: int, ref: StorageRef) -> None:
        """Record a payload stored as ``ref``."""
        self.keys[row], self.sha256[row], self.sizes[row] = ref.key, ref.sha256, ref.size

    def refs(self) -> list[StorageRef]:
        """The payloads as ``StorageRef`` s (one object each: for small batches)."""
        build = StorageRef.model_construct
        return [
            build(mount=self.mount, key=k, sha256=s, size=n)
            for k, s, n in zip(self.keys, self.sha256, self.sizes, strict=True)
        ]


_SOURCES = (
    "bytes, a file path or a binary stream (bytes, bytearray or memoryview; a local path as str "
    "or os.PathLike; or an open file / object with .read())"
)
_REF_HINT = (
    "pass a StorageRef, as returned by put(), put_many() or register() "
    "(StorageRef.model_validate(d) rebuilds one from its dict)"
)


def _where(field: str, row: int | None) -> dict[str, Any]:
    return {"field": field} if row is None else {"field": field, "row": row}


def _is_source(value: object) -> bool:
    return isinstance(value, (bytes, bytearray, memoryview, str, os.PathLike)) or hasattr(
        value, "read"
    )


def _bad_source(field: str, value: object, row: int | None = None) -> PayloadArgumentError:
    at = field if row is None else f"{field}[{row}]"
    return PayloadArgumentError(
        f"cannot put {at} of type {type(value).__name__}: pass {_SOURCES}", **_where(field, row)
    )


def _check_ref(ref: object, field: str = "ref", row: int | None = None) -> None:
    if not isinstance(ref, StorageRef):
        at = field if row is None else f"{field}[{row}]"
        raise PayloadArgumentError(
            f"{at} is of type {type(ref).__name__}, not a StorageRef: {_REF_HINT}",
            **_where(field, row),
        )


def _check_key(key: object, field: str = "key", row: int | None = None) -> None:
    if key is not None and not isinstance(key, str):
        at = field if row is None else f"{field}[{row}]"
        raise PayloadArgumentError(
            f"{at} must be an object key (str, e.g. 'images/cat.jpg') or None, got type "
            f"{type(key).__name__}",
            **_where(field, row),
        )


def _source_list(sources: object) -> list[PayloadSource]:
    """``sources`` as a list, refusing one payload passed where a list of payloads belongs."""
    if _is_source(sources):
        raise PayloadArgumentError(
            f"sources is one payload (of type {type(sources).__name__}), not a list of payloads: "
            "pass a list (e.g. [data]) or use put() for one payload",
            field="sources",
        )
    if not isinstance(sources, Iterable) or isinstance(sources, Mapping):
        raise PayloadArgumentError(
            f"sources must be a list of payloads, got type {type(sources).__name__}: each payload "
            f"is {_SOURCES}",
            field="sources",
        )
    return list(sources)


def _as_stream(source: PayloadSource) -> tuple[IO[bytes], int | None, bool]:
    """Return (stream, size if known, whether we opened it)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return io.BytesIO(data), len(data), True
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ObjectNotFoundError(f"cannot put {str(path)!r}: no such file")
        return path.open("rb"), path.stat().st_size, True
    if hasattr(source, "read"):
        return source, None, False
    raise _bad_source("source", source)


class BlobRanges:
    """Where payloads of the blob table sit in its files (see :meth:`_BlobMount.ranges`).

    Row ``i`` with ``file[i] >= 0`` is ``size[i]`` bytes at ``offset[i]`` of ``files[file[i]]``
    (an absolute local path or an object URI). Lance never rewrites a file once written, so a
    range stays right as long as its file exists. ``file[i] == -1``: not located (read it by
    row id).
    """

    __slots__ = ("file", "files", "offset", "size")

    def __init__(
        self, files: list[str], file: np.ndarray, offset: np.ndarray, size: np.ndarray
    ) -> None:
        self.files = files
        self.file = file
        self.offset = offset
        self.size = size

    @classmethod
    def none(cls, n: int) -> BlobRanges:
        """``n`` rows, none located."""
        return cls([], np.full(n, -1, np.int32), np.zeros(n, np.int64), np.zeros(n, np.int64))


def _sidecar_name(blob_id: int) -> str:
    """The file name Lance 14 gives a packed or dedicated blob file: the blob id's 32 bits in
    reverse order, then ``.blob`` (checked against Lance's own reads by ``ranges``)."""
    return format(blob_id, "032b")[::-1] + ".blob"


_INLINE, _PACKED, _DEDICATED = 0, 1, 2
"""Blob v2 storage kinds: in the data file, in a shared sidecar file, in a sidecar of its own."""


class _ShaIndex:
    """sha256 -> stable row id of the blob table, kept in memory and extended per fragment.

    The blob table is append-only (rows keep their stable ids through compaction), so the index
    only ever scans fragments it has not seen; it is rebuilt when fragments disappear (gc).
    Lookups are a binary search over sorted sha256 digests: microseconds, no Lance query.
    """

    def __init__(self) -> None:
        self.keys = np.empty(0, dtype="S64")
        self.rowids = np.empty(0, dtype=np.int64)
        self.fragments: set[int] = set()

    def update(self, ds: lance.LanceDataset) -> None:
        frags = ds.get_fragments()
        current = {f.fragment_id for f in frags}
        if self.fragments - current:  # rows were removed or rewritten: start over
            self.__init__()  # type: ignore[misc]
        new = [f for f in frags if f.fragment_id not in self.fragments]
        if not new:
            return
        tbl = ds.scanner(columns=["sha256"], with_row_id=True, fragments=new).to_table()
        keys = np.concatenate(
            [self.keys, tbl["sha256"].to_numpy(zero_copy_only=False).astype("S64")]
        )
        rowids = np.concatenate([self.rowids, tbl["_rowid"].to_numpy().astype(np.int64)])
        order = np.argsort(keys, kind="stable")
        self.keys, self.rowids = keys[order], rowids[order]
        self.fragments |= {f.fragment_id for f in new}

    def lookup(self, shas: Sequence[str]) -> dict[str, int]:
        if not len(self.keys) or not shas:
            return {}
        query = np.array(shas, dtype="S64")
        pos = np.searchsorted(self.keys, query)
        pos = np.minimum(pos, len(self.keys) - 1)
        hit = self.keys[pos] == query
        return {sha: int(self.rowids[p]) for sha, p, h in zip(shas, pos, hit, strict=True) if h}


class _BlobMount:
    """The lake's own mount: a blob-encoded Lance table plus large objects."""

    kind = MountKind.LAKE

    def __init__(self, name: str, root: LakeUri, options: StorageOptions | None, large: int):
        self.name = name
        self.table_uri = root.child("payloads", "blobs.lance").uri
        self.objects = root.child("payloads", "objects")
        self.staging = root.child("payloads", "_staging")
        self._lopts = lance_options(options)
        self.fs = filesystem(root, options)
        self.large = large
        self._ds: lance.LanceDataset | None = None
        self._index = _ShaIndex()

    # -- table access -------------------------------------------------------------------------
    def create(self) -> None:
        empty = new_table_schema().empty_table()
        try:
            lance.write_dataset(
                empty,
                self.table_uri,
                mode="create",
                enable_stable_row_ids=True,
                storage_options=self._lopts,
            )
        except (OSError, ValueError) as exc:
            if "already exists" not in str(exc).lower():
                raise StorageError(f"cannot create the payload table: {exc}") from exc

    @property
    def storage_options(self) -> dict[str, str] | None:
        """The storage options Lance opens the blob table with."""
        return self._lopts

    def dataset(self, refresh: bool = False) -> lance.LanceDataset:
        """The blob table (the cached handle, or re-opened at its latest version)."""
        if self._ds is None or refresh:
            with storage_errors("opening the payload table"):
                self._ds = lance.dataset(self.table_uri, storage_options=self._lopts)
        return self._ds

    def refresh(self) -> None:
        """Re-read the blob table and bring the sha256 index up to date (drops removed rows)."""
        with storage_errors("indexing the payload table"):
            self._index.update(self.dataset(refresh=True))

    def rowids(self, shas: Sequence[str]) -> dict[str, int]:
        """Map sha256 -> stable row id in the blob table through the in-memory index
        (refreshed on a miss); payloads not in the table are left out."""
        wanted = list(dict.fromkeys(shas))
        found = self._index.lookup(wanted)
        if len(found) < len(wanted):
            with storage_errors("indexing the payload table"):
                self._index.update(self.dataset(refresh=True))
            found = self._index.lookup(wanted)
        return found

    def ranges(self, rowids: Sequence[int] | np.ndarray) -> BlobRanges:
        """Where the bytes of blob-table rows ``rowids`` sit, for readers that fetch byte
        ranges themselves (the loaders) instead of one Lance blob read per row.

        Reads only the blob descriptions (kind, position, size) and row addresses, lists the
        table's files once, and reads one payload per storage kind both ways to check the
        layout; rows it cannot vouch for stay unlocated (``file == -1``).
        """
        ids = np.asarray(rowids, dtype=np.int64)
        out = BlobRanges.none(len(ids))
        unique, inverse = np.unique(ids, return_inverse=True)
        if not len(unique):
            return out
        ds = self.dataset()
        data_dir = f"{self.table_uri}/data"
        try:
            with storage_errors("locating payloads"):
                tbl = ds._take_rows(unique.tolist(), columns=["data", "_rowaddr", "_rowid"])
            desc = tbl.column("data").combine_chunks()
            kind, position, size, blob_id = (
                desc.field(name).to_numpy(zero_copy_only=False).astype(np.int64)
                for name in ("kind", "position", "size", "blob_id")
            )
            fragment = tbl.column("_rowaddr").to_numpy().astype(np.int64) >> 32
            got = tbl.column("_rowid").to_numpy().astype(np.int64)
            field = next(f.id() for f in ds.lance_schema.fields() if f.name() == "data")
            stems: dict[int, str] = {}
            for frag in ds.get_fragments():
                holders = [
                    d
                    for d in frag.data_files()
                    if getattr(d, "base_id", None) is None and field in (d.fields or [])
                ]
                if len(holders) == 1 and holders[0].path.endswith(".lance"):
                    stems[frag.fragment_id] = holders[0].path.removesuffix(".lance")
        except (AttributeError, KeyError, StopIteration, TypeError, ValueError, pa.ArrowException):
            return out  # not the blob layout this knows: every row is read by row id
        # one file per (fragment, sidecar blob id or -1 for the data file itself)
        pairs, which = np.unique(
            np.stack([fragment, np.where(kind == _INLINE, -1, blob_id)], axis=1),
            axis=0,
            return_inverse=True,
        )
        paths: list[str | None] = []
        for frag, b in pairs.tolist():
            stem = stems.get(frag)
            if stem is None:
                paths.append(None)
            elif b < 0:
                paths.append(f"{data_dir}/{stem}.lance")
            else:
                paths.append(f"{data_dir}/{stem}/{_sidecar_name(b)}")
        names = sorted({p for p in paths if p is not None})
        number = {p: i for i, p in enumerate(names)}
        per_pair = np.array([number[p] if p is not None else -1 for p in paths], dtype=np.int32)
        file = per_pair[which.reshape(-1)]
        file[~np.isin(kind, (_INLINE, _PACKED, _DEDICATED))] = -1
        # every range must lie within a file that exists ...
        with storage_errors("listing the payload table"):
            self.fs.invalidate_cache(data_dir)  # s3fs may hold an older listing
            listed = self.fs.find(data_dir, detail=True)
        length = {self.fs._strip_protocol(k): int(v["size"]) for k, v in listed.items()}
        sizes = np.array([length.get(self.fs._strip_protocol(p), -1) for p in names], np.int64)
        ok = file >= 0
        ok[ok] &= position[ok] + size[ok] <= sizes[file[ok]]
        # ... and Lance must agree on the bytes: one row per storage kind, read both ways
        for k in np.unique(kind[ok & (size > 0)]).tolist():
            j = int(np.flatnonzero(ok & (kind == k) & (size > 0))[0])
            lo = int(position[j])
            with storage_errors("checking the payload table layout"):
                ((_, theirs),) = ds.read_blobs("data", ids=[int(got[j])])
                ours = self.fs.cat_file(names[file[j]], start=lo, end=lo + int(size[j]))
            if theirs != ours:
                ok &= kind != k
        file[~ok] = -1
        # back to the rows asked for (the take leaves out rows that are gone)
        at = np.full(len(unique), -1, dtype=np.int64)
        at[np.searchsorted(unique, got)] = np.arange(len(got))
        src = at[inverse]
        hit = src >= 0
        out.files = names
        out.file[hit], out.offset[hit], out.size[hit] = (
            file[src[hit]],
            position[src[hit]],
            size[src[hit]],
        )
        return out

    # -- writes -------------------------------------------------------------------------------
    def put_small(self, data: Sequence[bytes]) -> list[str]:
        """Store the payloads whose sha256 is not stored yet, in one Lance commit; return the
        sha256 of every payload, in order.

        The payloads are split into up to ``PUT_THREADS`` parts, each written as its own data
        files by its own thread (Lance encodes a blob column on about one core per writer); one
        ``Append`` then commits them all. Within a part, Lance pulls record batches of about
        ``STREAM_BYTES`` from a generator that hashes them first, so hashing overlaps encoding
        and memory stays bounded. Duplicates (in ``data`` or already stored) are written once.
        """
        n = len(data)
        if not n:
            return []
        with storage_errors("indexing the payload table"):
            base = self.dataset(refresh=True)
            self._index.update(base)
        shas = [""] * n
        seen: set[str] = set()
        claim = threading.Lock()

        def batches(lo: int, hi: int) -> Iterator[pa.RecordBatch]:
            start = lo
            while start < hi:
                stop, size = start, 0
                while stop < hi and (size < STREAM_BYTES or stop == start):
                    size += len(data[stop])
                    stop += 1
                part = data[start:stop]
                hashes = [hashlib.sha256(d).hexdigest() for d in part]
                shas[start:stop] = hashes
                known = self._index.lookup(hashes)
                new = []
                with claim:  # the first part to meet a new digest writes it
                    for j, sha in enumerate(hashes):
                        if sha not in known and sha not in seen:
                            seen.add(sha)
                            new.append(j)
                start = stop
                if new:
                    blobs = [part[j] for j in new]
                    yield pa.record_batch(
                        [
                            pa.array([hashes[j] for j in new], pa.string()),
                            pa.array([len(b) for b in blobs], pa.int64()),
                            _binary_array(blobs),
                        ],
                        schema=BLOB_SCHEMA,
                    )

        def write(bounds: tuple[int, int]) -> list[Any]:
            stream = batches(*bounds)
            head = next(stream, None)
            if head is None:
                return []
            reader = pa.RecordBatchReader.from_batches(BLOB_SCHEMA, itertools.chain([head], stream))
            return list(
                lance.fragment.write_fragments(
                    reader, self.table_uri, schema=BLOB_SCHEMA, storage_options=self._lopts
                )
            )

        total = sum(map(len, data))
        k = max(1, min(PUT_THREADS, total // PART_BYTES, n))
        cuts = [i * n // k for i in range(k + 1)]
        parts = list(itertools.pairwise(cuts))
        with storage_errors("writing payloads"):
            if k == 1:
                fragments = write(parts[0])
            else:
                with ThreadPoolExecutor(max_workers=k, thread_name_prefix="lakecore-put") as pool:
                    fragments = [f for done in pool.map(write, parts) for f in done]
            if fragments:
                # Appends never conflict: if another writer appended since ``base``, Lance
                # commits on top of it. Two writers putting the same new bytes at the same
                # moment may both append them: harmless (same content), lookups return either
                # row, gc keeps one.
                self._ds = lance.LanceDataset.commit(
                    self.table_uri,
                    lance.LanceOperation.Append(fragments),
                    read_version=base.version,
                    storage_options=self._lopts,
                )
        if any(not sha for sha in shas):  # a writer stopped reading early without raising
            raise StorageError(f"stored {sum(map(bool, shas))} of {n} payloads")
        return shas

    def put_stream(self, stream: IO[bytes], head: list[bytes]) -> StorageRef:
        tmp = f"{self.staging.uri}/{uuid.uuid4().hex}"
        digest = hashlib.sha256()
        with storage_errors("streaming a large payload"):
            with self.fs.open(tmp, "wb", block_size=CHUNK) as out:
                size = _copy(head, stream, out, digest)
            sha = digest.hexdigest()
            key = f"objects/{_fanout(sha)}"
            final = f"{self.objects.uri}/{_fanout(sha)}"
            if self.fs.exists(final):
                self.fs.rm(tmp)
            else:
                self.fs.mv(tmp, final)
        return StorageRef.model_construct(mount=self.name, key=key, sha256=sha, size=size)

    # -- reads --------------------------------------------------------------------------------
    def _object_path(self, ref: StorageRef) -> str:
        return f"{self.objects.uri}/{ref.key.removeprefix('objects/')}"

    def read_many(self, refs: Sequence[StorageRef], _retry: bool = False) -> list[bytes]:
        blob_refs = [r for r in refs if r.key.startswith("blob/")]
        ids = self.rowids([r.sha256 for r in blob_refs]) if blob_refs else {}
        missing = [r.qualified_key for r in blob_refs if r.sha256 not in ids]
        if missing:
            raise ObjectNotFoundError(f"payload(s) not in the lake: {missing[:5]}", missing=missing)
        by_id: dict[int, bytes] = {}
        if ids:
            with storage_errors("reading payloads"):
                wanted = sorted(set(ids.values()))
                got = self.dataset().read_blobs("data", ids=wanted, preserve_order=True)
                for rowid, (_address, data) in zip(wanted, got, strict=True):
                    if data is not None:
                        by_id[rowid] = data
        gone = [r.qualified_key for r in blob_refs if ids[r.sha256] not in by_id]
        if gone and not _retry:  # the index may predate a gc: refresh once and read again
            self.refresh()
            return self.read_many(refs, _retry=True)
        if gone:
            raise ObjectNotFoundError(f"payload(s) were removed: {gone[:5]}", missing=gone)
        out = []
        for ref in refs:
            if ref.key.startswith("blob/"):
                out.append(by_id[ids[ref.sha256]])
            else:
                with storage_errors(f"reading {ref.qualified_key}"):
                    out.append(self.fs.cat_file(self._object_path(ref)))
        return out

    def open(self, ref: StorageRef) -> BinaryIO:
        if ref.key.startswith("blob/"):
            ids = self.rowids([ref.sha256])
            if ref.sha256 not in ids:
                raise ObjectNotFoundError(f"payload {ref.qualified_key} is not in the lake")
            with storage_errors(f"opening {ref.qualified_key}"):
                blob = self.dataset().take_blobs("data", ids=[ids[ref.sha256]])[0]
            if blob is None:
                raise ObjectNotFoundError(f"payload {ref.qualified_key} is not in the lake")
            return blob  # type: ignore[return-value]
        with storage_errors(f"opening {ref.qualified_key}"):
            return self.fs.open(self._object_path(ref), "rb", block_size=CHUNK)  # type: ignore[no-any-return]

    def exists_many(self, refs: Sequence[StorageRef]) -> list[bool]:
        blob = [r.sha256 for r in refs if r.key.startswith("blob/")]
        if blob:  # an authoritative answer: see payloads gc may have removed since
            self.refresh()
        ids = self.rowids(blob) if blob else {}
        out = []
        for ref in refs:
            if ref.key.startswith("blob/"):
                out.append(ref.sha256 in ids)
            else:
                with storage_errors(f"probing {ref.qualified_key}"):
                    out.append(bool(self.fs.exists(self._object_path(ref))))
        return out

    def size(self, ref: StorageRef) -> int:
        if ref.key.startswith("blob/"):
            if not self.exists_many([ref])[0]:
                raise ObjectNotFoundError(f"payload {ref.qualified_key} is not in the lake")
            return ref.size
        with storage_errors(f"probing {ref.qualified_key}"):
            return int(self.fs.info(self._object_path(ref))["size"])


class _FolderMount:
    """A folder or bucket prefix holding one object per payload."""

    kind = MountKind.FOLDER

    def __init__(self, name: str, uri: str, options: StorageOptions | None, read_only: bool):
        self.name = name
        self.root = parse(uri)
        self.fs = filesystem(self.root, options)
        self.read_only = read_only

    def path(self, key: str) -> str:
        if key.startswith("/") or ".." in key.split("/"):
            raise ConfigError(f"bad object key {key!r}: use a relative key without '..'")
        return f"{self.root.uri}/{key}"

    def _writable(self) -> None:
        if self.read_only:
            raise ConfigError(
                f"mount {self.name!r} is read-only: register objects in place instead"
            )

    def put_stream(self, stream: IO[bytes], head: list[bytes], key: str | None) -> StorageRef:
        self._writable()
        tmp = self.path(f".lakecore-staging/{uuid.uuid4().hex}")
        digest = hashlib.sha256()
        with storage_errors(f"writing to mount {self.name!r}"):
            with self.fs.open(tmp, "wb", block_size=CHUNK) as out:
                size = _copy(head, stream, out, digest)
            sha = digest.hexdigest()
            key = key or f"by-sha256/{_fanout(sha)}"
            final = self.path(key)
            if self.fs.exists(final):
                self.fs.rm(tmp)
                if key.startswith("by-sha256/"):
                    return StorageRef.model_construct(
                        mount=self.name, key=key, sha256=sha, size=size
                    )
                existing = self.hash(key)
                if existing.sha256 != sha:
                    raise PreconditionFailedError(
                        f"{self.name}/{key} exists with other content: choose another key",
                        key=key,
                    )
                return existing
            self.fs.mv(tmp, final)
        return StorageRef.model_construct(mount=self.name, key=key, sha256=sha, size=size)

    def hash(self, key: str) -> StorageRef:
        digest = hashlib.sha256()
        size = 0
        with (
            storage_errors(f"reading {self.name}/{key}"),
            self.fs.open(self.path(key), "rb", block_size=CHUNK) as f,
        ):
            while chunk := f.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
        return StorageRef.model_construct(
            mount=self.name, key=key, sha256=digest.hexdigest(), size=size
        )

    def read_many(self, refs: Sequence[StorageRef]) -> list[bytes]:
        with storage_errors(f"reading from mount {self.name!r}"):
            paths = [self.fs._strip_protocol(self.path(r.key)) for r in refs]
            got = self.fs.cat(paths, on_error="return")
        out = []
        for ref, path in zip(refs, paths, strict=True):
            value = got[path]
            if isinstance(value, BaseException):
                raise ObjectNotFoundError(f"payload {ref.qualified_key} not found ({value})")
            out.append(value)
        return out

    def open(self, ref: StorageRef) -> BinaryIO:
        with storage_errors(f"opening {ref.qualified_key}"):
            return self.fs.open(self.path(ref.key), "rb", block_size=CHUNK)  # type: ignore[no-any-return]

    def exists_many(self, refs: Sequence[StorageRef]) -> list[bool]:
        with storage_errors(f"probing mount {self.name!r}"):
            return [bool(self.fs.exists(self.path(r.key))) for r in refs]

    def size(self, ref: StorageRef) -> int:
        with storage_errors(f"probing {ref.qualified_key}"):
            return int(self.fs.info(self.path(ref.key))["size"])


_Mount = _BlobMount | _FolderMount


class PayloadStore:
    """Puts and reads payloads on the lake's mounts.

    Args:
        root: the lake root.
        info: the lake's ``lake.json`` (mount configuration).
        options: storage options for the lake and its mounts.
        large_threshold: payloads at least this many bytes bypass the blob column.
    """

    def __init__(
        self,
        root: LakeUri,
        info: LakeInfo,
        options: StorageOptions | None = None,
        *,
        large_threshold: int = DEFAULT_LARGE_THRESHOLD,
    ) -> None:
        self.default_mount = info.default_mount
        self.large_threshold = large_threshold
        self._mounts: dict[str, _Mount] = {}
        for name, cfg in info.mounts.items():
            if cfg.kind == MountKind.LAKE:
                self._mounts[name] = _BlobMount(name, root, options, large_threshold)
            else:
                assert cfg.uri is not None
                try:
                    self._mounts[name] = _FolderMount(name, cfg.uri, options, cfg.read_only)
                except ConfigError as exc:
                    raise ConfigError(
                        f"mount {name!r} of lake.json is unusable: {exc}; fix its uri in "
                        "lake.json or remove the mount",
                        mount=name,
                    ) from exc

    def create(self) -> None:
        """Create the blob tables of the lake mounts (idempotent)."""
        for mount in self._mounts.values():
            if isinstance(mount, _BlobMount):
                mount.create()

    @property
    def mounts(self) -> dict[str, MountKind]:
        """The configured mounts and their kinds."""
        return {name: m.kind for name, m in self._mounts.items()}

    def mount(self, name: str | None) -> _Mount:
        """Return the mount called ``name`` (the default mount when None).

        Raises:
            ValidationError: ``name`` is not a str nor None (``field="mount"``).
            MountNotFoundError: the lake has no such mount.
        """
        if name is not None and not isinstance(name, str):
            raise PayloadArgumentError(
                f"mount must be a mount name (str) or None for the default mount, got type "
                f"{type(name).__name__}; this lake has {sorted(self._mounts)}",
                field="mount",
            )
        key = name or self.default_mount
        try:
            return self._mounts[key]
        except KeyError:
            raise MountNotFoundError(
                f"no mount named {key!r}; this lake has {sorted(self._mounts)}", mount=key
            ) from None

    # -- writes -------------------------------------------------------------------------------
    def put(
        self, source: PayloadSource, *, mount: str | None = None, key: str | None = None
    ) -> StorageRef:
        """Store one payload and return its reference (the same bytes are stored once).

        Args:
            source: bytes, a local file path, or a readable binary stream.
            mount: the target mount (default mount when None).
            key: an explicit object key (folder mounts only).

        Raises:
            ValidationError: an argument of the wrong type (``details["field"]`` names it).
        """
        if not _is_source(source):
            raise _bad_source("source", source)
        _check_key(key)
        return self.put_many([source], mount=mount, keys=[key] if key else None)[0]

    def put_many(
        self,
        sources: Iterable[PayloadSource],
        *,
        mount: str | None = None,
        keys: Sequence[str | None] | None = None,
        progress: Progress | None = None,
    ) -> list[StorageRef]:
        """Store many payloads with few commits; return their references in input order.

        Small payloads bound for the lake mount are written in batches of up to 256 MiB, one
        Lance commit per batch; duplicates (in the batch or already stored) are written once.

        Raises:
            ValidationError: ``sources`` is not a list of payloads, or ``keys`` not one key (or
                None) per payload; ``details`` name the ``field`` and the ``row``. Nothing is
                written.
        """
        return self.put_columns(sources, mount=mount, keys=keys, progress=progress).refs()

    def put_columns(
        self,
        sources: Iterable[PayloadSource],
        *,
        mount: str | None = None,
        keys: Sequence[str | None] | None = None,
        progress: Progress | None = None,
    ) -> StoredPayloads:
        """:meth:`put_many` returning columns instead of one ``StorageRef`` per payload.

        For bulk writers (``assets.add_many``): building 10,000 ``StorageRef`` objects costs
        more than hashing their 4 KiB payloads. Raises as :meth:`put_many`.
        """
        target = self.mount(mount)
        sources = _source_list(sources)
        total = len(sources)
        if keys is not None:
            if not isinstance(keys, Sequence) or isinstance(keys, (str, bytes)):
                raise PayloadArgumentError(
                    f"keys must be a list of object keys (str or None), one per payload, got type "
                    f"{type(keys).__name__}",
                    field="keys",
                )
            if len(keys) != total:
                raise ValidationError(
                    f"got {len(keys)} keys for {total} payloads: pass one key (or None) per "
                    "payload, or keys=None",
                    field="keys",
                )
            for i, k in enumerate(keys):
                _check_key(k, "keys", i)
            if isinstance(target, _BlobMount) and any(keys):
                raise ConfigError(
                    "explicit keys are for folder mounts; the lake mount is by sha256"
                )
        if progress is not None and not callable(progress):
            raise PayloadArgumentError(
                f"progress must be a callable (done, total) or None, got type "
                f"{type(progress).__name__}",
                field="progress",
            )
        out = StoredPayloads(target.name, total)
        pending = _Staged()
        done = 0

        def flush() -> None:
            nonlocal pending, done
            if not pending.rows:
                return
            assert isinstance(target, _BlobMount)
            shas = target.put_small(pending.data)
            for i, sha, data in zip(pending.rows, shas, pending.data, strict=True):
                out.keys[i], out.sha256[i], out.sizes[i] = f"blob/{sha}", sha, len(data)
            done += len(pending.rows)
            pending = _Staged()
            if progress:
                progress(done, total)

        small = self.large_threshold
        blob = isinstance(target, _BlobMount)
        if total and blob and all(type(s) is bytes and len(s) < small for s in sources):
            assert isinstance(target, _BlobMount)
            self._put_all_small(target, sources, out, progress)  # type: ignore[arg-type]
            return out
        for i, source in enumerate(sources):  # refuse a bad item before anything is written
            if not _is_source(source):
                raise _bad_source("sources", source, i)
        for i, source in enumerate(sources):
            if blob and isinstance(source, bytes) and len(source) < small:
                pending.add(i, source)  # the common case: no stream, no copy
            else:
                data = self._put_one(target, source, keys[i] if keys else None, out, i)
                if data is None:
                    done += 1
                    if progress and not blob:
                        progress(done, total)
                    continue
                pending.add(i, data)
            if pending.nbytes >= BATCH_BYTES:
                flush()
        flush()
        return out

    @staticmethod
    def _put_all_small(
        target: _BlobMount, data: list[bytes], out: StoredPayloads, progress: Progress | None
    ) -> None:
        """The common bulk case, every source small bytes bound for the blob column: batches of
        about ``BATCH_BYTES`` go straight to the table and come back as columns (no per-payload
        staging)."""
        sizes = np.fromiter(map(len, data), dtype=np.int64, count=len(data))
        ends = np.cumsum(sizes)
        cuts = np.searchsorted(ends, np.arange(BATCH_BYTES, int(ends[-1]), BATCH_BYTES), "left")
        bounds = [0, *sorted({int(c) + 1 for c in cuts if c + 1 < len(data)}), len(data)]
        for lo, hi in itertools.pairwise(bounds):
            shas = target.put_small(data[lo:hi])
            out.sha256[lo:hi] = shas
            out.keys[lo:hi] = ["blob/" + sha for sha in shas]
            out.sizes[lo:hi] = sizes[lo:hi].tolist()
            if progress:
                progress(hi, len(data))

    def _put_one(
        self,
        target: _Mount,
        source: PayloadSource,
        key: str | None,
        out: StoredPayloads,
        row: int,
    ) -> bytes | None:
        """Stream one payload to ``target`` (recorded in ``out``), or return its bytes when it
        is small and bound for the blob column."""
        stream, size, owned = _as_stream(source)
        try:
            if isinstance(target, _FolderMount):
                out.set(row, target.put_stream(stream, [], key))
                return None
            head = [] if size is not None else _read_head(stream, self.large_threshold)
            if size is None and sum(map(len, head)) < self.large_threshold:
                return b"".join(head)
            if size is not None and size < self.large_threshold:
                return stream.read()
            out.set(row, target.put_stream(stream, head))
            return None
        finally:
            if owned:
                stream.close()

    def register(self, mount: str, key: str) -> StorageRef:
        """Reference an object that already lives under a folder mount, without copying it.

        Its sha256 is computed once by streaming the object (memory stays flat).

        Raises:
            ValidationError: ``mount`` or ``key`` is not a str, or ``key`` is empty.
        """
        if not isinstance(mount, str):
            raise PayloadArgumentError(
                f"mount must be the name (str) of a folder mount, got type {type(mount).__name__}",
                field="mount",
            )
        _check_key(key)
        if not key:
            raise PayloadArgumentError(
                "key must name an object under the mount (e.g. 'images/cat.jpg'), got None or ''",
                field="key",
            )
        target = self.mount(mount)
        if not isinstance(target, _FolderMount):
            raise ConfigError(f"mount {mount!r} is the lake's own store: use put(), not register()")
        return target.hash(key)

    def copy(self, ref: StorageRef, mount: str, *, key: str | None = None) -> StorageRef:
        """Copy a payload to another mount (streamed); return the new reference.

        Raises:
            ValidationError: ``ref`` is not a StorageRef, or ``mount`` / ``key`` not a str.
        """
        _check_ref(ref)
        if not isinstance(mount, str):
            raise PayloadArgumentError(
                "mount must be the name (str) of the target mount, got type "
                f"{type(mount).__name__}",
                field="mount",
            )
        self.mount(mount)  # the target exists, before the source is opened
        _check_key(key)
        with self.open(ref) as src:
            return self.put(src, mount=mount, key=key)

    # -- reads --------------------------------------------------------------------------------
    def get(self, ref: StorageRef) -> bytes:
        """Return a payload's bytes.

        Raises:
            ValidationError: ``ref`` is not a StorageRef (``field="ref"``).
            ObjectNotFoundError: the payload is not stored where ``ref`` points.
        """
        _check_ref(ref)
        return self.get_many([ref])[0]

    def get_many(self, refs: Sequence[StorageRef]) -> list[bytes]:
        """Return many payloads' bytes in input order, with one lookup per mount.

        Raises:
            ValidationError: ``refs`` is not a list of StorageRef (``field="refs"``, ``row``).
            ObjectNotFoundError: a payload is not stored where its reference points.
        """
        if not isinstance(refs, Sequence):
            if isinstance(refs, StorageRef) or not isinstance(refs, Iterable):
                raise PayloadArgumentError(
                    f"refs must be a list of StorageRef, got type {type(refs).__name__}: "
                    f"{_REF_HINT} (get() reads one)",
                    field="refs",
                )
            refs = list(refs)
        elif isinstance(refs, (str, bytes)):
            raise PayloadArgumentError(
                f"refs must be a list of StorageRef, got type {type(refs).__name__}: {_REF_HINT}",
                field="refs",
            )
        out: list[bytes | None] = [None] * len(refs)
        by_mount: dict[str, list[int]] = {}
        for i, ref in enumerate(refs):
            if not isinstance(ref, StorageRef):
                _check_ref(ref, "refs", i)
            by_mount.setdefault(ref.mount, []).append(i)
        for name, idx in by_mount.items():
            for i, data in zip(
                idx, self.mount(name).read_many([refs[i] for i in idx]), strict=True
            ):
                out[i] = data
        return [b for b in out if b is not None]

    def open(self, ref: StorageRef) -> BinaryIO:
        """Open a payload as a seekable binary file without reading it whole.

        Raises:
            ValidationError: ``ref`` is not a StorageRef (``field="ref"``).
        """
        _check_ref(ref)
        return self.mount(ref.mount).open(ref)

    def exists(self, ref: StorageRef) -> bool:
        """True when the payload is stored where ``ref`` points.

        Raises:
            ValidationError: ``ref`` is not a StorageRef (``field="ref"``).
        """
        _check_ref(ref)
        return self.mount(ref.mount).exists_many([ref])[0]

    def head(self, ref: StorageRef) -> StorageRef:
        """Return the reference with the size storage reports (raises if the payload is gone).

        Raises:
            ValidationError: ``ref`` is not a StorageRef (``field="ref"``).
        """
        _check_ref(ref)
        size = self.mount(ref.mount).size(ref)
        return ref.model_copy(update={"size": size})

    def describe(self) -> dict[str, Any]:
        """Describe the mounts (for ``lake.info()``)."""
        out: dict[str, Any] = {}
        for name, m in self._mounts.items():
            out[name] = {
                "kind": m.kind.value,
                "uri": m.root.given if isinstance(m, _FolderMount) else None,
            }
        return out


BlobMount = _BlobMount
"""The type of a lake's own payload mount (for ``isinstance`` checks outside storage)."""
