"""Datums: training samples mapping roles ("image", "depth", ...) to assets, added in validated
batches (one bad row rejects the whole batch; nothing is written)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakecore.entities._base import (
    WRITE_AHEAD_ROWS,
    LakeCore,
    new_ids,
    now_array,
    rows_where,
    write_ahead,
)
from lakecore.entities._checks import (
    SPACE_OR_CONTROL,
    check_json_strings,
    check_regex,
    check_split,
    column_of,
    delete_in,
    duplicate_mask,
    first,
    id_array,
    is_text,
    map_entries,
    one_id,
    order_like,
    require_rows,
)
from lakecore.errors import InUseError, NotFoundError, ValidationError
from lakecore.tables import Append, from_arrow, layout
from schemas import Datum

if TYPE_CHECKING:
    from lakecore.catalog import Snapshot
    from lakecore.tables.write import Op

__all__ = ["Datums"]

COLUMNS = ("datum_id", "assets", "split", "metadata", "created_by")
MAP = pa.map_(pa.string(), pa.string())
ROLE_RE = r"^[a-z][a-z0-9_]*$"
_REFERENCED = ("datums", "assets")
"""The tables the snapshot checks read: unchanged pins at commit time mean they still hold."""


def _metadata_json(value: Any, row: int) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, Mapping):
        raise ValidationError(
            f"row {row}: metadata must be a dict or a JSON string", row=row, field="metadata"
        )
    try:
        return json.dumps(dict(value), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"row {row}: metadata is not JSON-serialisable ({exc})", row=row, field="metadata"
        ) from None


def _from_dicts(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Python dict rows -> Arrow (one conversion per value: inherent to Python input)."""
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            raise ValidationError(
                f"row {i} is a {type(r).__name__}; pass dicts with keys {list(COLUMNS)}",
                row=i,
                field="row",
            )
        extra = sorted(set(r) - set(COLUMNS))
        if extra:
            raise ValidationError(
                f"row {i}: unknown key {extra[0]!r}; datum rows take {list(COLUMNS)}",
                row=i,
                field=extra[0],
            )
        if not isinstance(r.get("assets"), Mapping):
            raise ValidationError(
                f"row {i}: assets must be a dict role -> asset id", row=i, field="assets"
            )
    cols = {c: [r.get(c) for r in rows] for c in COLUMNS}
    cols["metadata"] = [_metadata_json(m, i) for i, m in enumerate(cols["metadata"])]
    cols["assets"] = [dict(r["assets"]) for r in rows]
    types = {"assets": MAP}
    return pa.table({c: column_of(v, types.get(c, pa.string()), c) for c, v in cols.items()})


def _struct_to_map(arr: pa.StructArray) -> pa.Array:
    """A struct whose fields are roles -> ``map<role, asset id>`` (null fields are dropped)."""
    n, k = len(arr), arr.type.num_fields
    names = pa.array([arr.type.field(j).name for j in range(k)], pa.string())
    cols = [c.cast(pa.string()) for c in arr.flatten()]
    if k == 0:
        raise ValidationError(
            "assets is a struct without fields; give one field per role", field="assets"
        )
    order = (np.arange(k)[None, :] * n + np.arange(n)[:, None]).ravel()
    values = pa.concat_arrays(cols).take(pa.array(order))
    keys = names.take(pa.array(np.tile(np.arange(k), n)))
    valid = pc.is_valid(values)
    counts = valid.to_numpy(zero_copy_only=False).reshape(n, k).sum(axis=1)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    return pa.MapArray.from_arrays(offsets, keys.filter(valid), values.filter(valid))


def _struct_json(arr: pa.StructArray) -> pa.Array:
    return pa.array([_metadata_json(m, i) for i, m in enumerate(arr.to_pylist())], pa.string())


def _arr(table: pa.Table, name: str) -> pa.Array:
    col = table[name]
    return col.combine_chunks() if col.num_chunks else pa.array([], col.type)


def _normalise(rows: pa.Table | pa.RecordBatch | Sequence[Mapping[str, Any]]) -> pa.Table:
    """Any accepted input -> a table of exactly ``COLUMNS`` with storage types."""
    if isinstance(rows, pa.RecordBatch):
        rows = pa.Table.from_batches([rows])
    if not isinstance(rows, pa.Table):
        if isinstance(rows, str | bytes | Mapping) or not isinstance(rows, Sequence):
            raise ValidationError("rows must be a pyarrow Table or a list of dicts", field="rows")
        rows = _from_dicts(rows)
    extra = [c for c in rows.column_names if c not in COLUMNS]
    if extra or "assets" not in rows.column_names:
        raise ValidationError(
            f"datum rows need an 'assets' column and may have {list(COLUMNS)}; unknown: {extra}",
            field=(extra or ["assets"])[0],
        )
    n, out = rows.num_rows, {}
    for name in COLUMNS:
        col = _arr(rows, name) if name in rows.column_names else pa.nulls(n, pa.string())
        out[name] = _convert(name, col)
    return pa.table(out)


def _convert(name: str, col: pa.Array) -> pa.Array:
    try:
        if name == "assets":
            return _struct_to_map(col) if pa.types.is_struct(col.type) else col.cast(MAP)
        if name == "metadata" and pa.types.is_struct(col.type):
            return _struct_json(col)
        if not is_text(col.type):  # a cast would quietly store 7 as "7" (or bytes as text)
            raise pa.ArrowTypeError(f"a {col.type} column is not text")
        return col.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        want = "map<string,string> or a struct of roles" if name == "assets" else "string"
        raise ValidationError(
            f"column {name!r} has type {col.type}; expected {want} ({exc})", field=name
        ) from None


def _earliest(checks: Sequence[Callable[[], None]]) -> None:
    """Run every check; raise the error about the lowest row (so one bad row is named)."""
    errors = []
    for check in checks:
        try:
            check()
        except ValidationError as exc:
            errors.append(exc)
    if errors:
        raise min(errors, key=lambda e: (e.details.get("row") is None, e.details.get("row") or 0))


def _check_ids(ids: pa.Array) -> None:
    check_regex(
        ids,
        SPACE_OR_CONTROL,
        "datum_id",
        "ids may not contain whitespace or control characters",
        match=False,
    )
    check_regex(ids, ".", "datum_id", "ids may not be empty")
    dup = first(pc.and_(pc.is_valid(ids), duplicate_mask(pc.fill_null(ids, ""))))
    if dup is not None:
        raise ValidationError(
            f"row {dup}: datum_id {ids[dup].as_py()!r} appears twice in the batch",
            row=dup,
            field="datum_id",
        )


def _check_assets(assets: pa.Array, parent: pa.Array, keys: pa.Array, values: pa.Array) -> None:
    counts = np.bincount(parent.to_numpy(zero_copy_only=False), minlength=len(assets))
    empty = first(pc.or_kleene(pc.is_null(assets), pa.array(counts == 0)))
    if empty is not None:
        raise ValidationError(
            f"row {empty}: assets has no role; give e.g. {{'image': asset_id}}",
            row=empty,
            field="assets",
        )
    check_regex(
        keys,
        ROLE_RE,
        "assets",
        "roles are lower-case identifiers matching [a-z][a-z0-9_]* (e.g. 'image', 'depth_map')",
        rows=parent,
    )
    blank = first(pc.or_kleene(pc.is_null(values), pc.equal(pc.utf8_trim_whitespace(values), "")))
    if blank is not None:
        row = parent[blank].as_py()
        raise ValidationError(
            f"row {row}: role {keys[blank].as_py()!r} has a blank asset id", row=row, field="assets"
        )
    pairs = pc.binary_join_element_wise(parent.cast(pa.string()), keys, "\x00")
    dup = first(duplicate_mask(pairs))
    if dup is not None:
        row = parent[dup].as_py()
        raise ValidationError(
            f"row {row}: role {keys[dup].as_py()!r} appears twice", row=row, field="assets"
        )


def _validate(t: pa.Table) -> tuple[pa.Array, pa.Array]:
    """Snapshot-independent checks; returns (parent row, asset id) of every map entry."""
    assets = _arr(t, "assets")
    parent, keys, values = map_entries(assets)
    _earliest(
        [
            lambda: _check_assets(assets, parent, keys, values),
            lambda: check_split(_arr(t, "split")),
            lambda: _check_ids(_arr(t, "datum_id")),
            lambda: check_json_strings(_arr(t, "metadata")),
            lambda: check_regex(
                _arr(t, "created_by"),
                r"[\p{Cc}]",
                "created_by",
                "remove its control characters",
                match=False,
            ),
        ]
    )
    return parent, values


def _check_snapshot(snap: Snapshot, ids: pa.Array, parent: pa.Array, values: pa.Array) -> None:
    """Checks against the lake: datum ids are new, referenced assets exist."""

    def ids_new() -> None:
        given = ids.drop_null()
        old = rows_where(snap, "datums", "datum_id", given.to_pylist(), columns=["datum_id"])
        row = first(pc.is_in(ids, value_set=old["datum_id"]))
        if row is not None:
            raise ValidationError(
                f"row {row}: datum_id {ids[row].as_py()!r} exists already",
                row=row,
                field="datum_id",
            )

    def assets_exist() -> None:
        refs = pc.unique(values).to_pylist()
        found = rows_where(snap, "assets", "asset_id", refs, columns=["asset_id"])
        miss = first(pc.invert(pc.is_in(values, value_set=found["asset_id"])))
        if miss is not None:
            row = parent[miss].as_py()
            raise ValidationError(
                f"row {row}: assets names unknown asset {values[miss].as_py()!r}",
                row=row,
                field="assets",
            )

    _earliest([ids_new, assets_exist])


class Datums:
    """Datum operations of a lake (``lake.datums``).

    Args:
        core: the lake (anything with ``snapshot``, ``commit`` and ``objects``).
    """

    def __init__(self, core: LakeCore) -> None:
        self.core = core

    def add(
        self,
        assets: Mapping[str, str],
        *,
        split: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        created_by: str | None = None,
    ) -> Datum:
        """Add one datum.

        Example:
            >>> d = lake.datums.add({"image": img, "depth": depth}, split="train")  # doctest: +SKIP
        """
        row = {"assets": assets, "split": split, "metadata": metadata, "created_by": created_by}
        return from_arrow(self.add_many([row]), Datum)[0]

    def add_many(self, rows: pa.Table | Sequence[Mapping[str, Any]]) -> pa.Table:
        """Add many datums in one commit; one bad row rejects the batch (nothing is written).

        Args:
            rows: a table with an ``assets`` column (``map<string,string>`` role -> asset id,
                or a struct whose fields are roles) and optional ``datum_id``, ``split``,
                ``metadata`` (JSON string or struct) and ``created_by``; or dicts with those
                keys.

        Returns:
            The datum rows written (generated ids filled in).

        Raises:
            ValidationError: naming the first bad row and field (unknown asset, bad role,
                bad split, datum id repeated or already used, bad metadata).

        Example:
            >>> rows = pa.table({"assets": [{"image": a}, {"image": b}],
            ...                  "split": ["train", "val"]})  # doctest: +SKIP
            >>> lake.datums.add_many(rows).num_rows  # doctest: +SKIP
            2
        """
        t = _normalise(rows)
        parent, values = _validate(t)
        n, now = t.num_rows, now_array(t.num_rows)
        ids = _arr(t, "datum_id")
        out = pa.table(
            {
                "datum_id": pc.if_else(pc.is_null(ids), new_ids("datum", n), ids),
                "assets": _arr(t, "assets"),
                "split": _arr(t, "split"),
                "metadata": pc.fill_null(_arr(t, "metadata"), "{}"),
                "created_at": now,
                "updated_at": now,
                "created_by": _arr(t, "created_by"),
            },
            schema=layout(Datum).schema,
        )
        if not n:
            return out
        op = Append("datums", out)
        snap = self.core.snapshot()

        def check() -> None:
            _check_snapshot(snap, ids, parent, values)

        if n < WRITE_AHEAD_ROWS:
            check()
        else:  # write the data files while the batch is checked
            write_ahead(self.core, lambda: op, check)
        base = {name: snap.pins.get(name) for name in _REFERENCED}

        def build(current: Snapshot) -> list[Op]:
            if any(current.pins.get(name) != v for name, v in base.items()):
                _check_snapshot(current, ids, parent, values)  # another writer moved a table
            return []

        self.core.commit([op], build=build, message=f"datums.add_many {n}")
        return out

    def get(self, datum_id: str) -> Datum:
        """One datum by id.

        Raises:
            NotFoundError: no such datum.

        Example:
            >>> lake.datums.get(did).assets["image"]  # doctest: +SKIP
        """
        return from_arrow(self.get_many([one_id(datum_id, "datum_id")]), Datum)[0]

    def get_many(self, datum_ids: Sequence[str]) -> pa.Table:
        """Datum rows in input order.

        Raises:
            NotFoundError: naming the ids that do not exist.

        Example:
            >>> lake.datums.get_many([d1, d2])["split"]  # doctest: +SKIP
        """
        ids = id_array(datum_ids, "datum_ids")
        found = require_rows(
            self.core.snapshot(), "datums", "datum_id", ids, NotFoundError, "datum"
        )
        return order_like(found, "datum_id", ids)

    def delete(self, datum_ids: Sequence[str]) -> None:
        """Delete datums in one commit (their assets stay).

        Raises:
            NotFoundError: some ids do not exist.
            InUseError: annotation records still label some of them, or a dataset's current
                membership holds them (nothing is deleted).

        Example:
            >>> lake.datums.delete([did])  # doctest: +SKIP
        """
        ids = pc.unique(id_array(datum_ids, "datum_ids"))

        def build(snap: Snapshot) -> list[Op]:
            require_rows(
                snap, "datums", "datum_id", ids, NotFoundError, "datum", columns=["datum_id"]
            )
            held = rows_where(
                snap,
                "annotation_records",
                "datum_id",
                ids.to_pylist(),
                columns=["datum_id", "annotation_id"],
            )
            if held.num_rows:
                pairs = [
                    f"{d} by annotation record {a}"
                    for d, a in zip(*held.to_pydict().values(), strict=True)
                ][:10]
                raise InUseError(
                    f"datum(s) still in use: {'; '.join(pairs)}; delete those annotations first",
                    datums=held["datum_id"].to_pylist(),
                )
            members = rows_where(
                snap,
                "dataset_members",
                "datum_id",
                ids.to_pylist(),
                columns=["datum_id", "dataset_name"],
            )
            if members.num_rows:
                pairs = [
                    f"{d} by dataset {n}"
                    for d, n in zip(*members.to_pydict().values(), strict=True)
                ][:10]
                raise InUseError(
                    f"datum(s) still in use: {'; '.join(pairs)}; remove them from the "
                    "dataset first (committed versions keep reading them either way)",
                    datums=members["datum_id"].to_pylist(),
                )
            return delete_in("datums", "datum_id", ids.to_pylist())

        if len(ids):
            self.core.commit(build=build, message=f"datums.delete {len(ids)}")

    def table(self, columns: Sequence[str] | None = None, filter: str | None = None) -> pa.Table:
        """Datum rows (``columns``, Lance SQL ``filter``).

        Example:
            >>> lake.datums.table(filter="split = 'train'").num_rows  # doctest: +SKIP
        """
        return self.core.snapshot().to_table("datums", columns=columns, filter=filter)

    def count(self, filter: str | None = None) -> int:
        """Number of datums (matching a Lance SQL ``filter``).

        Example:
            >>> lake.datums.count("split = 'val'")  # doctest: +SKIP
        """
        return self.core.snapshot().count("datums", filter)
