"""Assets: stored payloads with their metadata, added in bulk through one payload write and one
commit."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakecore.entities._base import LakeCore, new_ids, now_array, rows_where
from lakecore.entities._checks import (
    check_by,
    check_choice,
    column_of,
    delete_in,
    dump_json,
    duplicate_mask,
    first,
    id_array,
    map_entries,
    one_id,
    order_like,
    repeat,
    require_rows,
)
from lakecore.entities._sources import AssetSource, sniff_many, stage
from lakecore.entities.aliases import alias_changes, alias_removals, check_aliases
from lakecore.errors import (
    AliasAlreadyExistsError,
    AssetNotFoundError,
    InUseError,
    ValidationError,
)
from lakecore.storage import Progress
from lakecore.tables import Append, Upsert, from_arrow, layout
from schemas import Asset, AssetKind, StorageRef

if TYPE_CHECKING:
    from lakecore.catalog import Snapshot
    from lakecore.catalog.commit import Build
    from lakecore.tables.write import Op

__all__ = ["AssetSource", "Assets"]

_SIZED = (AssetKind.IMAGE, AssetKind.MASK)

_Stored = tuple[str | list[str], list[str], list[str], list[int]]
"""Where payloads went, as columns: mount (one for all, or per row), key, sha256, size."""


def _sequence(values: Any, n: int, field: str) -> list[Any]:
    if values is None:
        return [None] * n
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise ValidationError(f"{field} must be a list with one value per source", field=field)
    if len(values) != n:
        raise ValidationError(f"{field}: got {len(values)} values for {n} sources", field=field)
    return list(values)


_MEDIA_RE = r"^[A-Za-z0-9][\w!#$&^.+-]*/[A-Za-z0-9][\w!#$&^.+-]*(;[^;].*)?$"
"""``type/subtype`` (RFC 6838 names), optionally followed by ``;`` parameters."""


def _check_media_types(values: list[Any]) -> pa.Array:
    bad = next((i for i, v in enumerate(values) if not isinstance(v, str)), None)
    if bad is not None:
        raise ValidationError(
            f"media_types[{bad}] must be a string like 'image/jpeg'", row=bad, field="media_types"
        )
    arr = pa.array(values, pa.string())
    distinct = pc.unique(arr)  # few distinct values: check each once
    odd = pc.or_(
        pc.invert(pc.match_substring_regex(distinct, _MEDIA_RE)),
        pc.match_substring_regex(distinct, r"[\p{Cc}\p{Cf}]"),
    )
    for media in distinct.filter(odd).to_pylist()[:1]:
        row = first(pc.equal(arr, media))
        raise ValidationError(
            f"media_types[{row}] {media!r} must look like 'type/subtype', e.g. 'image/jpeg'",
            row=row,
            field="media_types",
        )
    return arr


def _storage(stored: _Stored) -> pa.StructArray:
    """The ``storage`` struct column, built from columns (no per-row objects)."""
    st = layout(Asset).schema.field("storage").type
    mounts, keys, shas, sizes = stored
    mount = (
        repeat(mounts, len(keys), pa.string())
        if isinstance(mounts, str)
        else pa.array(mounts, pa.string())
    )
    cols = [
        mount,
        pa.array(keys, st.field("key").type),
        pa.array(shas, st.field("sha256").type),
        pa.array(sizes, st.field("size").type),
    ]
    return pa.StructArray.from_arrays(cols, fields=list(st))


def _empty_lists(n: int, type_: pa.DataType) -> pa.Array:
    offsets = pa.array(np.zeros(n + 1, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array([], type_.value_type), type=type_)


def _override(
    dims: tuple[int | None, int | None] | None, size: tuple[int | None, int | None]
) -> tuple[int | None, int | None]:
    for value in size:
        if value is not None and (not isinstance(value, int) or not 0 <= value < 2**31):
            raise ValidationError(f"width/height must be ints >= 0, got {value!r}", field="size")
    old = dims or (None, None)
    return (old[0] if size[0] is None else size[0], old[1] if size[1] is None else size[1])


def _sizes(
    sizes: Sequence[tuple[int | None, int | None] | None] | None, i: int, n: int
) -> pa.Array:
    if sizes is None:
        return pa.nulls(n, pa.int32())
    return pa.array([s[i] if s else None for s in sizes], pa.int32())


def _holders(snap: Snapshot, ids: pa.Array) -> dict[str, list[str]]:
    """What holds each asset: datums, collection items, retentions, annotation records."""
    held: dict[str, list[str]] = {}

    def note(assets: Any, owners: Any, what: str) -> None:
        for a, o in zip(assets.to_pylist(), owners.to_pylist(), strict=True):
            held.setdefault(a, []).append(f"{what} {o}")

    datums = snap.to_table("datums", columns=["datum_id", "assets"])
    parent, _, values = map_entries(datums["assets"])
    hit = pc.is_in(values, value_set=ids)
    note(values.filter(hit), datums["datum_id"].take(parent.filter(hit)), "datum")
    wanted = ids.to_pylist()
    for table, key, what in (
        ("collection_items", "item_id", "collection item"),
        ("asset_retentions", "retention_id", "retention"),
    ):
        rows = rows_where(snap, table, "asset_id", wanted, columns=["asset_id", key])
        note(rows["asset_id"], rows[key], what)
    for col in ("asset_id", "mask_asset_id"):
        rows = rows_where(snap, "annotation_records", col, wanted, columns=[col, "annotation_id"])
        note(rows[col], rows["annotation_id"], "annotation record")
    return held


def _alias_build(rows: pa.Table, names: pa.Array | None, by: str | None) -> Build | None:
    """The ``build`` setting the aliases of new assets (checked under the lease), if any."""
    if names is None or names.null_count == len(names):
        return None
    given = pc.is_valid(names)
    aliases, targets = names.filter(given), rows["asset_id"].combine_chunks().filter(given)

    def build(snap: Snapshot) -> list[Op]:
        return alias_changes(snap, aliases, targets, repoint=False, by=by)[0]

    return build


class Assets:
    """Asset operations of a lake (``lake.assets``).

    Args:
        core: the lake (anything with ``snapshot``, ``commit`` and ``objects``).
    """

    def __init__(self, core: LakeCore) -> None:
        self.core = core

    # -- writes -------------------------------------------------------------------------------
    def add(
        self,
        source: AssetSource,
        *,
        kind: str = "image",
        media_type: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        alias: str | None = None,
        width: int | None = None,
        height: int | None = None,
        created_by: str | None = None,
        mount: str | None = None,
    ) -> Asset:
        """Store one payload and add its asset (see :meth:`add_many`).

        Args:
            width: override the width read from the image header (and ``height`` likewise).

        Example:
            >>> asset = lake.assets.add(b"\\x89PNG...", alias="cams/0001.png")  # doctest: +SKIP
        """
        table = self._add(
            [source],
            kind=kind,
            media_types=[media_type],
            metadata=[metadata],
            aliases=[alias],
            created_by=created_by,
            mount=mount,
            size=(width, height),
        )
        return from_arrow(table, Asset)[0]

    def add_many(
        self,
        sources: Sequence[AssetSource],
        *,
        kind: str = "image",
        media_types: Sequence[str | None] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        aliases: Sequence[str | None] | None = None,
        created_by: str | None = None,
        mount: str | None = None,
        progress: Progress | None = None,
    ) -> pa.Table:
        """Store many payloads and add their assets in one commit.

        Payloads go through one ``objects.put_many`` (batched, deduplicated by sha256); the
        asset rows (and alias rows, if any) are then committed atomically.

        Args:
            sources: bytes, local paths, binary streams, or ``StorageRef`` s from
                ``lake.objects.register`` (referenced in place, not copied).
            kind: the asset kind of every source (``image``, ``mask``, ``video``, ...).
            media_types: per source, or None to detect (path suffix, else magic bytes).
            metadata: one dict per source (or one dict for all).
            aliases: one alias (or None) per source; all are set in the same commit.
            created_by: recorded on every row.
            mount: the mount payloads are written to (default mount when None).
            progress: called as ``progress(done, total)`` while payloads are stored.

        Returns:
            The new asset rows, in input order.

        Raises:
            ValidationError: bad input (the message names the row and the field).
            AliasAlreadyExistsError: an alias already names another asset.

        Example:
            >>> table = lake.assets.add_many([b"a", b"b"], kind="blob")  # doctest: +SKIP
            >>> table.num_rows  # doctest: +SKIP
            2
        """
        return self._add(
            sources,
            kind=kind,
            media_types=media_types,
            metadata=metadata,
            aliases=aliases,
            created_by=created_by,
            mount=mount,
            progress=progress,
        )

    def _add(
        self,
        sources: Sequence[AssetSource],
        *,
        kind: str,
        media_types: Any,
        metadata: Any,
        aliases: Any,
        created_by: str | None,
        mount: str | None,
        progress: Progress | None = None,
        size: tuple[int | None, int | None] = (None, None),
    ) -> pa.Table:
        if isinstance(sources, str | bytes) or not isinstance(sources, Sequence):
            raise ValidationError(
                "sources must be a list of payloads (bytes, paths, streams or StorageRefs)",
                field="sources",
            )
        if progress is not None and not callable(progress):
            raise ValidationError(
                "progress must be a callable progress(done, total) or None", field="progress"
            )
        n, kind_ = len(sources), check_choice(kind, AssetKind, "kind")
        names = self._check_aliases(aliases, n)
        meta, by = dump_json(metadata, n), check_by(created_by, "created_by")
        given = _sequence(media_types, n, "media_types")
        payloads: list[Any]
        heads: list[bytes]
        if all(type(s) is bytes for s in sources):  # the common case: nothing to stage
            payloads = heads = list(sources)  # type: ignore[arg-type]
            labels = None
        else:
            staged = [stage(self.core, s, i) for i, s in enumerate(sources)]
            payloads = [p for p, _, _ in staged]
            heads = [h for _, h, _ in staged]
            labels = [label for _, _, label in staged]
        sniffed, sizes = sniff_many(heads, labels, kind_ in _SIZED)
        dims: list[Any] | None = sizes  # (width, height) or None per row; None: no sizes
        media = _check_media_types(
            sniffed
            if media_types is None
            else [g or m for g, m in zip(given, sniffed, strict=True)]
        )
        if size != (None, None):
            dims = [_override(dims[0] if dims else None, size)]
        rows = self._rows(self._store(payloads, mount, progress), kind_, media, dims, meta, by)
        self._commit(rows, names, by)
        return rows

    def _check_aliases(self, aliases: Any, n: int) -> pa.Array | None:
        if aliases is None:
            return None
        arr = column_of(_sequence(aliases, n, "aliases"), pa.string(), "aliases")
        given = pc.is_valid(arr)
        check_aliases(arr.filter(given), "aliases")
        dup = first(pc.and_(given, duplicate_mask(arr)))
        if dup is not None:
            raise ValidationError(
                f"aliases[{dup}] {arr[dup].as_py()!r} appears twice", row=dup, field="aliases"
            )
        if arr.null_count < n:  # refused before any payload is stored (checked again under
            # the lease: another writer may take a name meanwhile)
            names = arr.filter(given)
            taken = rows_where(self.core.snapshot(), "aliases", "alias", names.to_pylist())
            if taken.num_rows:
                shown = taken["alias"].to_pylist()[:10]
                raise AliasAlreadyExistsError(
                    f"alias(es) already point at other assets: {shown}; choose other names, "
                    "or add the assets without aliases and move these with "
                    "lake.aliases.set(..., repoint=True)",
                    aliases=shown,
                )
        return arr

    def _store(self, payloads: list[Any], mount: str | None, progress: Progress | None) -> _Stored:
        """Store the payloads (``StorageRef`` sources stay where they are); return columns."""
        todo = [i for i, src in enumerate(payloads) if not isinstance(src, StorageRef)]
        if len(todo) == len(payloads):
            put = self.core.objects.put_columns(payloads, mount=mount, progress=progress)
            return put.mount, put.keys, put.sha256, put.sizes
        put = self.core.objects.put_columns(
            [payloads[i] for i in todo], mount=mount, progress=progress
        )
        n = len(payloads)
        mounts: list[str] = [put.mount] * n
        keys: list[str] = [""] * n
        shas: list[str] = [""] * n
        sizes: list[int] = [0] * n
        for i, key, sha, size in zip(todo, put.keys, put.sha256, put.sizes, strict=True):
            keys[i], shas[i], sizes[i] = key, sha, size
        for i, src in enumerate(payloads):
            if isinstance(src, StorageRef):
                mounts[i], keys[i], shas[i], sizes[i] = src.mount, src.key, src.sha256, src.size
        return mounts, keys, shas, sizes

    def _rows(
        self,
        stored: _Stored | Sequence[StorageRef],
        kind: AssetKind,
        media: pa.Array,
        dims: list[Any] | None,
        meta: pa.Array,
        by: str | None,
    ) -> pa.Table:
        """Asset rows for stored payloads (columns, or ``StorageRef`` s as the importers give)."""
        if not isinstance(stored, tuple):
            stored = (
                [r.mount for r in stored],
                [r.key for r in stored],
                [r.sha256 for r in stored],
                [r.size for r in stored],
            )
        schema, n = layout(Asset).schema, len(stored[1])
        now, storage = now_array(n), _storage(stored)
        return pa.table(
            {
                "asset_id": new_ids("asset", n),
                "kind": repeat(kind.value, n, pa.string()),
                "media_type": media,
                "sha256": storage.field("sha256"),
                "size_bytes": storage.field("size"),
                "width": _sizes(dims, 0, n),
                "height": _sizes(dims, 1, n),
                "storage": storage,
                "replicas": _empty_lists(n, schema.field("replicas").type),
                "subject_kind": pa.nulls(n, pa.string()),
                "subject_id": pa.nulls(n, pa.string()),
                "metadata": meta,
                "created_at": now,
                "updated_at": now,
                "created_by": repeat(by, n, pa.string()),
            },
            schema=schema,
        )

    def _commit(self, rows: pa.Table, names: pa.Array | None, by: str | None) -> None:
        if rows.num_rows:
            self.core.commit(
                [Append("assets", rows)],
                build=_alias_build(rows, names, by),
                message=f"assets.add_many {rows.num_rows}",
            )

    def update_metadata(
        self, asset_id: str, metadata: Mapping[str, Any], *, merge: bool = False
    ) -> Asset:
        """Replace (or, with ``merge=True``, update) an asset's metadata; bumps ``updated_at``.

        Raises:
            AssetNotFoundError: no such asset.

        Example:
            >>> lake.assets.update_metadata(aid, {"camera": "front"}, merge=True)  # doctest: +SKIP
        """
        aid = one_id(asset_id, "asset_id")
        if not isinstance(metadata, Mapping):
            raise ValidationError(
                f"metadata must be a dict, got {type(metadata).__name__}; pass {{}} to clear it",
                field="metadata",
            )
        patch = dict(metadata)
        dump_json([patch], 1)  # validates
        out: dict[str, pa.Table] = {}

        def build(snap: Snapshot) -> list[Op]:
            row = require_rows(
                snap, "assets", "asset_id", pa.array([aid]), AssetNotFoundError, "asset"
            )
            new = {**json.loads(row["metadata"][0].as_py()), **patch} if merge else patch
            row = row.set_column(
                row.schema.get_field_index("metadata"), "metadata", dump_json([new], 1)
            )
            out["row"] = row.set_column(
                row.schema.get_field_index("updated_at"), "updated_at", now_array(1)
            )
            return [Upsert("assets", out["row"])]

        self.core.commit(build=build, message="assets.update_metadata")
        return from_arrow(out["row"], Asset)[0]

    def delete(self, asset_ids: Sequence[str], *, by: str | None = None) -> None:
        """Delete assets and their aliases in one commit (payload bytes stay until GC).

        Refused while anything holds an asset: a datum, a collection item, a retention or an
        annotation record (checked under the writer lease).

        Raises:
            InUseError: naming what holds each asset; nothing is deleted.
            AssetNotFoundError: some ids do not exist.

        Example:
            >>> lake.assets.delete([aid])  # doctest: +SKIP
        """
        ids = pc.unique(id_array(asset_ids, "asset_ids"))
        by = check_by(by)

        def build(snap: Snapshot) -> list[Op]:
            require_rows(
                snap, "assets", "asset_id", ids, AssetNotFoundError, "asset", columns=["asset_id"]
            )
            held = _holders(snap, ids)
            if held:
                shown = "; ".join(f"{a} by {', '.join(h[:5])}" for a, h in list(held.items())[:10])
                raise InUseError(
                    f"{len(held)} asset(s) still in use: {shown}; remove those references first",
                    holders=held,
                )
            aliases = rows_where(snap, "aliases", "asset_id", ids.to_pylist())
            return [*delete_in("assets", "asset_id", ids.to_pylist()), *alias_removals(aliases, by)]

        if len(ids):
            self.core.commit(build=build, message=f"assets.delete {len(ids)}")

    # -- reads --------------------------------------------------------------------------------
    def get(self, asset_id: str) -> Asset:
        """One asset by id.

        Raises:
            AssetNotFoundError: no such asset.

        Example:
            >>> lake.assets.get(aid).media_type  # doctest: +SKIP
            'image/png'
        """
        return from_arrow(self.get_many([one_id(asset_id, "asset_id")]), Asset)[0]

    def get_many(self, asset_ids: Sequence[str]) -> pa.Table:
        """Asset rows in input order.

        Raises:
            AssetNotFoundError: naming the ids that do not exist.

        Example:
            >>> lake.assets.get_many([a, b])["sha256"]  # doctest: +SKIP
        """
        ids = id_array(asset_ids, "asset_ids")
        found = require_rows(
            self.core.snapshot(), "assets", "asset_id", ids, AssetNotFoundError, "asset"
        )
        return order_like(found, "asset_id", ids)

    def get_by_alias(self, alias: str) -> Asset:
        """The asset an alias names.

        Raises:
            AliasNotFoundError: no such alias.

        Example:
            >>> lake.assets.get_by_alias("cams/0001.png").asset_id  # doctest: +SKIP
        """
        from lakecore.entities.aliases import Aliases

        return self.get(Aliases(self.core).resolve(alias))

    def exists(self, asset_ids: Sequence[str]) -> list[bool]:
        """Whether each id is an asset.

        Example:
            >>> lake.assets.exists([aid, "asset_nope"])  # doctest: +SKIP
            [True, False]
        """
        ids = id_array(asset_ids, "asset_ids")
        found = rows_where(
            self.core.snapshot(), "assets", "asset_id", ids.to_pylist(), columns=["asset_id"]
        )
        return pc.is_in(ids, value_set=found["asset_id"]).to_pylist()  # type: ignore[no-any-return]

    def read(self, asset_id: str) -> bytes:
        """An asset's payload bytes.

        Example:
            >>> lake.assets.read(aid)[:4]  # doctest: +SKIP
            b'\\x89PNG'
        """
        return self.core.objects.get(self.get(asset_id).storage)

    def open(self, asset_id: str) -> BinaryIO:
        """An asset's payload as a seekable binary file (not read whole).

        Example:
            >>> with lake.assets.open(aid) as f:  # doctest: +SKIP
            ...     head = f.read(16)
        """
        return self.core.objects.open(self.get(asset_id).storage)

    def table(
        self,
        columns: Sequence[str] | None = None,
        filter: str | None = None,
        *,
        snapshot: Snapshot | None = None,
    ) -> pa.Table:
        """Asset rows (``columns``, Lance SQL ``filter``) at a snapshot (default: now).

        Example:
            >>> lake.assets.table(["asset_id"], filter="kind = 'image'")  # doctest: +SKIP
        """
        return (snapshot or self.core.snapshot()).to_table("assets", columns=columns, filter=filter)

    def count(self, filter: str | None = None) -> int:
        """Number of assets (matching a Lance SQL ``filter``).

        Example:
            >>> lake.assets.count()  # doctest: +SKIP
            2
        """
        return self.core.snapshot().count("assets", filter)
