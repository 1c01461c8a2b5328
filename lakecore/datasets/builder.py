"""DatasetBuilder: a change set (add / remove / split / attach) committed as one new version."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from lakecore.entities._base import LakeCore, in_filter, new_ids, now_array, quote, rows_where
from lakecore.entities._checks import build_model as _model
from lakecore.entities._checks import (
    check_one_split,
    check_split,
    delete_rowids,
    dump_json,
    first,
    id_array,
    is_text,
    map_entries,
    repeat,
)
from lakecore.errors import AlreadyExistsError, ValidationError
from lakecore.tables import Append, Upsert, layout, to_arrow
from lakecore.tables.write import Op
from schemas import AssetRetention, DatasetMember, DatasetTag, DatasetVersion

if TYPE_CHECKING:
    from lakecore.catalog import Snapshot
    from lakecore.datasets.version import DatasetVersionHandle

__all__ = ["READ_TABLES", "DatasetBuilder"]

READ_TABLES = ("datums", "annotation_records", "annotation_sets", "annotation_schemas", "assets")
"""Tables a dataset version reads; their pinned versions are recorded and tagged."""

MEMBER_SCHEMA = pa.schema([pa.field("datum_id", pa.string()), pa.field("split", pa.string())])
HEAD_SCHEMA = MEMBER_SCHEMA.append(pa.field("_rowid", pa.uint64()))
"""Membership rows as read from ``dataset_members``, with their stable row ids."""
ADD_INPUT = (
    "datum ids (a str, a list of str, an Arrow array) or a table with a datum_id column "
    "(Arrow, pandas or polars)"
)
"""What :meth:`DatasetBuilder.add` takes, for its error messages."""


class DatasetBuilder:
    """Collects changes to a dataset, then commits them as one immutable version.

    Start empty, from a parent version (``parent=``), or from a query (``add`` takes an Arrow
    table, or a pandas or polars DataFrame, with a ``datum_id`` column and an optional ``split``
    column of strings). Changes apply in order.

    Example:
        >>> b = lake.datasets.builder("cats", parent="latest")   # doctest: +SKIP
        >>> b.add(new_ids, split="train").remove(bad_ids).commit("1.1.0", message="more cats")
    """

    def __init__(self, core: LakeCore, name: str, parent: DatasetVersionHandle | None) -> None:
        self._core = core
        self.name = name
        self.parent = parent
        self._ops: list[tuple[str, pa.Array, str | None, pa.Array | None]] = []
        self._sets: list[str] = list(parent.record.annotation_set_ids) if parent else []
        self._extra: list[Op] = []
        self._prefetch: _Prefetch | None = None

    def __repr__(self) -> str:
        base = self.parent.ref if self.parent else "empty"
        return f"DatasetBuilder({self.name!r}, from={base}, changes={len(self._ops)})"

    # -- changes -------------------------------------------------------------------------------
    def add(
        self,
        datum_ids: str | Sequence[str] | pa.Array | pa.ChunkedArray | pa.Table | Any,
        *,
        split: str | None = None,
    ) -> DatasetBuilder:
        """Add datums: ids, or a table (Arrow, pandas or polars) with a ``datum_id`` column and
        an optional per-row ``split`` column of strings (``split=`` overrides it)."""
        split = check_one_split(split)
        splits = None
        table = _as_table(datum_ids)
        if table is not None:
            if "datum_id" not in table.column_names:
                raise ValidationError(
                    f"the table needs a datum_id column (it has {table.column_names[:10]})",
                    field="datum_id",
                )
            if "split" in table.column_names and split is None:
                splits = _split_column(table["split"])
            strings = _strings(table["datum_id"])  # non-strings: id_array refuses them
            datum_ids = table["datum_id"] if strings is None else strings
        elif isinstance(datum_ids, bytes | Mapping) or not isinstance(
            datum_ids, str | pa.Array | pa.ChunkedArray | Iterable
        ):
            raise ValidationError(
                f"datum_ids: expected {ADD_INPUT}, got {type(datum_ids).__name__}",
                field="datum_ids",
            )
        ids = id_array(datum_ids, "datum_ids")
        self._ops.append(("add", ids, split, splits))
        return self

    def remove(self, datum_ids: Sequence[str] | pa.Array | pa.ChunkedArray) -> DatasetBuilder:
        """Remove datums (they must be in the dataset when the change applies)."""
        self._ops.append(("remove", id_array(datum_ids, "datum_ids"), None, None))
        return self

    def set_split(
        self, datum_ids: Sequence[str] | pa.Array | pa.ChunkedArray, split: str | None
    ) -> DatasetBuilder:
        """Set the split of datums already in the dataset (None: use the datum's own)."""
        self._ops.append(("split", id_array(datum_ids, "datum_ids"), check_one_split(split), None))
        return self

    def attach(self, set_ids: Sequence[str]) -> DatasetBuilder:
        """Read only these annotation sets' records (default: every record on the datums)."""
        self._sets.extend(
            s for s in id_array(set_ids, "set_ids").to_pylist() if s not in self._sets
        )
        return self

    # -- commit --------------------------------------------------------------------------------
    def commit(
        self,
        version: str,
        *,
        message: str | None = None,
        author: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: str | Sequence[str] = (),
        with_ops: Sequence[Op] = (),
    ) -> DatasetVersionHandle:
        """Commit the changes as ``name@version``; atomic, O(changes) rows written.

        ``tags``: tags to point at the new version (a lone ``str`` is one tag); a tag may not
        be a version string of the dataset.

        Raises:
            AlreadyExistsError: ``name@version`` exists (also when another writer won the race).
            ValidationError: an argument is invalid, a datum or annotation set does not exist,
                a removed/re-split datum is not in the dataset, or a tag names a version;
                nothing is written.

        ``with_ops`` are more table operations committed in the same atomic commit (an importer
        adds its assets, datums and annotations with the version that holds them); datums and
        annotation sets they append count as existing.
        """
        from lakecore.datasets.version import DatasetVersionHandle

        probe = _model(
            DatasetVersion,
            dataset_name=self.name,
            version=version,
            catalog_version=0,
            message=message,
            author=author,
            metadata={} if metadata is None else _plain(metadata),
        )
        tag_list = id_array(tags, "tags").to_pylist()
        for tag in tag_list:
            _model(DatasetTag, dataset_name=self.name, tag=tag)
        if version in tag_list:
            raise ValidationError(
                f"tag {version!r} is the version being committed; a tag needs another name",
                field="tag",
            )
        self._extra = _ops_list(with_ops)
        # O(changes) index lookups, side by side: the parent's rows of the touched datums, and
        # (speculatively, at the current snapshot) the added datums; the build reuses the
        # latter when the datums table has not changed by the time it holds the lease
        with ThreadPoolExecutor(max_workers=2) as pool:
            parent_rows = pool.submit(self._parent_rows, self._touched())
            self._prefetch = pool.submit(self._prefetch_datums).result()
            start = parent_rows.result()
        final = self._apply(start)
        record: list[DatasetVersion] = []

        def build(snap: Snapshot) -> list[Op]:
            record.clear()
            return self._build(snap, probe, start, final, tag_list, record)

        result = self._core.commit(
            self._extra, build=build, message=f"dataset {self.name}@{version}"
        )
        handle = DatasetVersionHandle(self._core, record[0])
        pins = {t: result.snapshot.pins[t] for t in (*READ_TABLES, "dataset_members")}
        self._core.protect(record[0].catalog_version, pins)
        return handle

    def _apply(self, members: pa.Table) -> pa.Table:
        """Replay the change log on the parent's members (vectorized per change)."""
        current = members.select(["datum_id", "split"]).cast(MEMBER_SCHEMA)
        for kind, ids, split, splits in self._ops:
            present = pc.is_in(ids, value_set=current["datum_id"])
            if kind == "add":
                keep = pc.invert(pc.is_in(current["datum_id"], value_set=ids))
                col = splits if splits is not None else repeat(split, len(ids), pa.string())
                new = pa.table({"datum_id": ids, "split": col}, schema=MEMBER_SCHEMA)
                if pc.count_distinct(ids).as_py() != len(ids):  # later rows override
                    new = new.take(_last_occurrence(ids))
                current = pa.concat_tables([current.filter(keep), new])
                continue
            bad = first(pc.invert(present))
            if bad is not None:
                raise ValidationError(
                    f"row {bad}: datum {ids[bad].as_py()} is not in the dataset, cannot "
                    f"{'remove' if kind == 'remove' else 'set the split of'} it",
                    row=bad,
                    field="datum_ids",
                )
            hit = pc.is_in(current["datum_id"], value_set=ids)
            if kind == "remove":
                current = current.filter(pc.invert(hit))
            else:
                new_split = pc.if_else(
                    hit, repeat(split, current.num_rows, pa.string()), current["split"]
                )
                current = current.set_column(1, "split", new_split)
        return current.sort_by("datum_id")

    def _prefetch_datums(self) -> _Prefetch | None:
        """The rows of the datums that the changes add, read at the current snapshot."""
        added = [op[1] for op in self._ops if op[0] == "add"]
        if not added:
            return None
        ids = pc.unique(pa.concat_arrays(added))
        appended = self._appended("datums", ["datum_id"])
        if appended is not None:  # this commit's own new datums: not in the table yet
            ids = ids.filter(pc.invert(pc.is_in(ids, value_set=appended["datum_id"])))
        snap = self._core.snapshot()
        rows = rows_where(snap, "datums", "datum_id", ids, columns=list(_DATUM_COLUMNS))
        return _Prefetch(snap.pins["datums"], ids, rows.cast(_DATUM_ROWS))

    def _appended(self, table: str, columns: Sequence[str]) -> pa.Table | None:
        """Rows this commit's ``with_ops`` append to ``table`` (None when there are none)."""
        parts = [
            op.data.select(list(columns))
            for op in self._extra
            if isinstance(op, Append) and op.table == table
        ]
        return pa.concat_tables(parts) if parts else None

    def _touched(self) -> pa.Array:
        ids = [op[1] for op in self._ops]
        return pc.unique(pa.concat_arrays(ids)) if ids else pa.array([], pa.string())

    def _parent_rows(self, ids: pa.Array) -> pa.Table:
        """The parent's membership rows of ``ids`` with their row ids (at the parent's pins)."""
        if self.parent is None or not len(ids):
            return HEAD_SCHEMA.empty_table()
        rows = rows_where(
            self.parent.snapshot,
            "dataset_members",
            "datum_id",
            ids,
            columns=["dataset_name", "datum_id", "split"],
            row_ids=True,
        )
        rows = rows.filter(pc.equal(rows["dataset_name"], self.parent.name))
        return rows.select(["datum_id", "split", "_rowid"]).cast(HEAD_SCHEMA)

    def _untouched(self) -> pa.Table:
        """The parent's rows the changes do not touch (reads the whole parent; branching only)."""
        if self.parent is None:
            return MEMBER_SCHEMA.empty_table()
        parent = self.parent._members.select(["datum_id", "split"]).cast(MEMBER_SCHEMA)
        return parent.filter(pc.invert(pc.is_in(parent["datum_id"], value_set=self._touched())))

    def _head_is_parent(self, snap: Snapshot) -> bool:
        """True when the dataset's current membership is exactly the parent's members."""
        latest = snap.to_table(
            "dataset_versions",
            columns=["version_id", "catalog_version"],
            filter=f"dataset_name = {quote(self.name)}",
        )
        if latest.num_rows == 0:
            return self.parent is None  # no version yet: the membership is empty
        newest = latest.sort_by([("catalog_version", "descending")])["version_id"][0].as_py()
        return self.parent is not None and newest == self.parent.record.version_id

    def _build(
        self,
        snap: Snapshot,
        probe: DatasetVersion,
        start: pa.Table,
        final: pa.Table,
        tags: Sequence[str],
        out: list[DatasetVersion],
    ) -> list[Op]:
        name = self.name
        taken = snap.count(
            "dataset_versions", f"dataset_name = {quote(name)} AND version = {quote(probe.version)}"
        )
        if taken:
            raise AlreadyExistsError(
                f"dataset version {name}@{probe.version} exists already; pick another version "
                "string",
                ref=f"{name}@{probe.version}",
            )
        if tags:
            versions = snap.to_table(
                "dataset_versions",
                columns=["version"],
                filter=f"dataset_name = {quote(name)} AND {in_filter('version', list(tags))}",
            )
            if versions.num_rows:
                clash = versions["version"][0].as_py()
                raise ValidationError(
                    f"tag {clash!r} is a version of {name}; a tag needs another name",
                    field="tag",
                )
        if self._sets:
            found = rows_where(snap, "annotation_sets", "set_id", self._sets, columns=["set_id"])
            known = set(found["set_id"].to_pylist())
            extra = self._appended("annotation_sets", ["set_id"])
            known |= set(extra["set_id"].to_pylist()) if extra is not None else set()
            lost = sorted(set(self._sets) - known)
            if lost:
                raise ValidationError(f"annotation set(s) {lost} do not exist", field="set_ids")
        if self._head_is_parent(snap):
            # the usual case: only the touched rows are compared and written -> O(changes)
            head = start
            desired, datums = self._resolve(snap, final, head)
            base = self.parent.record if self.parent else None
            splits: Counter[str] = Counter(base.stats.get("splits", {})) if base else Counter()
            splits = splits - _counts(start["split"]) + _counts(desired["split"])
            count = (base.datum_count if base else 0) - start.num_rows + desired.num_rows
        else:  # branching from an older version: compare whole memberships
            head = snap.to_table(
                "dataset_members",
                columns=["datum_id", "split"],
                filter=f"dataset_name = {quote(name)}",
                with_row_id=True,
            )
            desired = pa.concat_tables([self._untouched(), final])
            desired, datums = self._resolve(snap, desired, head)
            splits, count = _counts(desired["split"]), desired.num_rows
        ops = self._member_ops(desired, head)
        written = {op.table for op in self._extra}  # their versions are known after the commit
        version_id = new_ids("dsv", 1)[0].as_py()
        rec = probe.model_copy(
            update={
                "version_id": version_id,
                "catalog_version": snap.catalog_version + 1,
                "parent_version_id": self.parent.record.version_id if self.parent else None,
                "pins": {t: snap.pins[t] for t in READ_TABLES if t not in written},
                "datum_count": count,
                "annotation_set_ids": list(self._sets),
                "stats": {"splits": dict(sorted(splits.items()))},
            }
        )
        DatasetVersion.model_validate(rec.model_dump())
        out.append(rec)
        ops.append(Append("dataset_versions", to_arrow([rec], DatasetVersion)))
        if tags:
            events = [
                DatasetTag(dataset_name=name, tag=t, version_id=version_id, by=rec.author)
                for t in tags
            ]
            ops.append(Append("dataset_tags", to_arrow(events, DatasetTag)))
        ops += self._retain(snap, datums, head, version_id)
        return ops

    def _member_ops(self, desired: pa.Table, head: pa.Table) -> list[Op]:
        """Deletes and upserts turning the membership rows ``head`` into ``desired``.

        ``head`` rows carry their stable row ids: removed members are deleted by row id. In
        the usual case they were read at the parent's pins; the dataset's rows have not
        changed since (the parent is still its newest version), and a stable row id stays
        with its row through other writers' updates and compactions.
        """
        ids = desired["datum_id"].combine_chunks()
        gone = pc.invert(pc.is_in(head["datum_id"], value_set=ids))
        ops: list[Op] = delete_rowids(
            "dataset_members", head["_rowid"].filter(gone), f"dataset_name = {quote(self.name)}"
        )
        pos = pc.index_in(ids, value_set=head["datum_id"])
        same = pc.fill_null(pc.equal(desired["split"], head["split"].take(pos)), False)
        both_null = pc.and_(pc.is_null(desired["split"]), pc.is_null(head["split"].take(pos)))
        # rows not in ``head`` have no membership row yet (``head`` holds every row of the
        # dataset that the changes touch): append them; only re-split rows are upserted
        new = pc.is_null(pos)
        changed = pc.and_(pc.invert(new), pc.invert(pc.or_(same, both_null)))
        for mask, op in ((changed, Upsert), (new, Append)):
            part = desired.filter(mask)
            if part.num_rows:
                ops.append(op("dataset_members", self._member_rows(part)))
        return ops

    def _member_rows(self, part: pa.Table) -> pa.Table:
        ids = part["datum_id"].combine_chunks()
        return pa.table(
            {
                "member_id": pc.binary_join_element_wise(f"{self.name}/", ids, ""),
                "dataset_name": repeat(self.name, len(ids), pa.string()),
                "datum_id": ids,
                "split": part["split"],
            },
            schema=layout(DatasetMember).schema,
        )

    def _resolve(
        self, snap: Snapshot, desired: pa.Table, head: pa.Table
    ) -> tuple[pa.Table, pa.Table]:
        """Check that datums new to the dataset exist; fill unset splits from the datums.

        Datums in the dataset's current membership exist (a datum cannot be deleted while a
        dataset holds it), so only the changes are looked up. The effective split is stored in
        the membership row, so a version's splits never change afterwards.
        """
        ids = desired["datum_id"].combine_chunks()
        look = pc.or_(
            pc.invert(pc.is_in(ids, value_set=head["datum_id"])), pc.is_null(desired["split"])
        )
        wanted = ids.filter(look)
        cols = list(_DATUM_COLUMNS)
        datums, rest = _DATUM_ROWS.empty_table(), wanted
        pre = self._prefetch
        if pre is not None and pre.pin == snap.pins["datums"]:  # same table version: reuse
            datums = pre.rows.filter(pc.is_in(pre.rows["datum_id"], value_set=wanted))
            rest = wanted.filter(pc.invert(pc.is_in(wanted, value_set=pre.looked_up)))
        if len(rest):
            found = rows_where(snap, "datums", "datum_id", rest, columns=cols)
            datums = pa.concat_tables([datums, found.cast(datums.schema)])
        extra = self._appended("datums", cols)
        if extra is not None:
            extra = extra.filter(pc.is_in(extra["datum_id"], value_set=wanted))
            datums = pa.concat_tables([datums, extra.cast(datums.schema)])
        missing = first(pc.invert(pc.is_in(wanted, value_set=datums["datum_id"])))
        if missing is not None:
            raise ValidationError(
                f"datum {wanted[missing].as_py()} does not exist in the lake",
                field="datum_ids",
                datum_id=wanted[missing].as_py(),
            )
        own = datums["split"].take(pc.index_in(ids, value_set=datums["datum_id"]))
        split = pc.coalesce(desired["split"], own)
        return desired.set_column(1, "split", split), datums

    def _retain(
        self, snap: Snapshot, datums: pa.Table, head: pa.Table, version_id: str
    ) -> list[Op]:
        """Pin the assets of datums new to the dataset so nothing deletes them (O(new datums))."""
        new = datums.filter(pc.invert(pc.is_in(datums["datum_id"], value_set=head["datum_id"])))
        if not new.num_rows:
            return []
        _, _, asset_ids = map_entries(new["assets"])
        masks = rows_where(
            snap,
            "annotation_records",
            "datum_id",
            new["datum_id"],
            columns=["mask_asset_id"],
        )
        extra = self._appended("annotation_records", ["datum_id", "mask_asset_id"])
        if extra is not None:
            mine = extra.filter(pc.is_in(extra["datum_id"], value_set=new["datum_id"]))
            masks = pa.concat_tables([masks, mine.select(["mask_asset_id"]).cast(masks.schema)])
        ids = pc.unique(
            pa.concat_arrays(
                [
                    asset_ids.cast(pa.string()),
                    masks["mask_asset_id"].combine_chunks().cast(pa.string()).drop_null(),
                ]
            )
        )
        n = len(ids)
        schema = layout(AssetRetention).schema
        table = pa.table(
            {
                "retention_id": new_ids("retention", n),
                "asset_id": ids,
                "owner_type": repeat("dataset_version", n, pa.string()),
                "owner_id": repeat(version_id, n, pa.string()),
                "policy": repeat("retain", n, pa.string()),
                "expires_at": pa.nulls(n, schema.field("expires_at").type),
                "metadata": dump_json(None, n),
                "created_at": now_array(n),
                "created_by": pa.nulls(n, pa.string()),
            },
            schema=schema,
        )
        return [Append("asset_retentions", table)]


def _as_table(value: object) -> pa.Table | None:
    """A table-like ``add`` input (Arrow table or batch, pandas or polars DataFrame) as an Arrow
    table; None for anything else (ids)."""
    if isinstance(value, pa.Table):
        return value
    # DataFrames export an Arrow stream and have columns (a Series has no ``columns``)
    if not (hasattr(value, "__arrow_c_stream__") and hasattr(value, "columns")):
        return None
    try:
        return pa.table(value)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise ValidationError(
            f"datum_ids: cannot read the {type(value).__name__} as an Arrow table ({exc}); "
            f"pass {ADD_INPUT}",
            field="datum_ids",
        ) from None


def _strings(column: pa.ChunkedArray) -> pa.Array | None:
    """A column of strings (plain, large, view or dictionary-encoded, as pandas and polars
    give them; or all null) as ``string``; None when it holds something else."""
    if not is_text(column.type):
        return None
    return column.cast(pa.string()).combine_chunks()


def _split_column(column: pa.ChunkedArray) -> pa.Array:
    """A per-row ``split`` column as checked strings (nulls: use the datum's own split)."""
    splits = _strings(column)
    if splits is None:
        raise ValidationError(
            f"the split column holds {column.type} values; splits are strings such as 'train'",
            field="split",
        )
    check_split(splits)
    return splits


def _plain(value: object) -> object:
    """A mapping as a dict (for the model to check); anything else as is (it refuses it)."""
    return dict(value) if isinstance(value, Mapping) else value


def _ops_list(ops: Sequence[Op]) -> list[Op]:
    """``with_ops`` as a list, each a table operation."""
    if isinstance(ops, Op):
        ops = [ops]
    if isinstance(ops, str | bytes | Mapping) or not isinstance(ops, Iterable):
        raise ValidationError(
            f"with_ops must be a list of table operations, got {type(ops).__name__}",
            field="with_ops",
        )
    out = list(ops)
    for i, op in enumerate(out):
        if not isinstance(op, Op):
            raise ValidationError(
                f"with_ops[{i}] is a {type(op).__name__}, not a table operation (Append, ...)",
                field="with_ops",
                row=i,
            )
    return out


_DATUM_COLUMNS = ("datum_id", "split", "assets")
_DATUM_ROWS = pa.schema(
    [
        pa.field("datum_id", pa.string()),
        pa.field("split", pa.string()),
        pa.field("assets", pa.map_(pa.string(), pa.string())),
    ]
)


@dataclass(frozen=True)
class _Prefetch:
    """Datum rows looked up before the lease, valid while the datums table stays at ``pin``."""

    pin: int
    looked_up: pa.Array
    rows: pa.Table


def _counts(values: pa.Array | pa.ChunkedArray) -> Counter[str]:
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    vc = pc.value_counts(arr)
    return Counter(
        {
            str(k): int(v)
            for k, v in zip(
                vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True
            )
        }
    )


def _last_occurrence(ids: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Row indices keeping the last row of every id (later adds override earlier ones)."""
    import numpy as np

    arr = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    codes = pc.index_in(arr, value_set=pc.unique(arr)).to_numpy(zero_copy_only=False)
    rev = codes[::-1]
    _, idx = np.unique(rev, return_index=True)
    return pa.array(np.sort(len(codes) - 1 - idx))
