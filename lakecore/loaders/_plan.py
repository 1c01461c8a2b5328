"""What a loader streams, resolved once from a dataset version: no payload is read here.

A :class:`Plan` holds, for the selected datums of one version (sorted by ``datum_id``): their
ids, splits and metadata; for every requested role, where each payload lives (the stable row
id in the lake's blob table, or a storage reference for payloads stored one object each); and
the version's annotation records attached to each datum, flattened into arrays with per-datum
offsets. A plan is plain Arrow and NumPy, so it pickles into worker processes cheaply, and
:class:`Source` reopens the lake's payload store there (uri, storage options, lake.json).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakecore.entities._base import in_filter
from lakecore.entities._checks import map_entries
from lakecore.errors import (
    ConfigError,
    NotFoundError,
    ObjectNotFoundError,
    StorageError,
    ValidationError,
)
from lakecore.storage import BlobMount, PayloadStore, parse
from schemas import AnnotationKind, LakeInfo, StorageRef
from schemas.annotation import GEOMETRY_FIELDS

log = logging.getLogger(__name__)

__all__ = ["KINDS", "Annotations", "Locations", "Plan", "Source", "build_plan"]

KINDS = tuple(k.value for k in AnnotationKind)
"""Annotation kinds, in the order of their codes in :attr:`Annotations.kind`."""

_RECORD_COLUMNS = [
    "annotation_id",
    "set_id",
    "datum_id",
    "asset_id",
    "kind",
    "label",
    "label_id",
    "score",
    *GEOMETRY_FIELDS,
]

Filter: TypeAlias = str | pc.Expression | Callable[[pa.Table], Any] | None
"""A predicate on datum columns: Lance SQL, an Arrow expression, or ``fn(table) -> mask``."""


@dataclass
class Source:
    """How a process (re)opens the payload store of a lake: location, options, lake.json."""

    uri: str
    options: dict[str, str] | None
    info: LakeInfo

    @classmethod
    def of(cls, core: Any) -> Source:
        location = getattr(core, "location", None)
        info = getattr(core, "info", None)
        if location is None or info is None:
            raise ConfigError("to_torch needs a dataset version of a lake opened with connect()")
        return cls(location.uri, dict(getattr(core, "storage_options", None) or {}) or None, info)

    def open(self) -> PayloadStore:
        return PayloadStore(parse(self.uri), self.info, self.options)


@dataclass
class Locations:
    """Where the payloads of one role (or the mask assets) live, one entry per item.

    ``rowid[i] >= 0``: stable row id in the blob table of mount ``mounts[mount[i]]``, and when
    ``file[i] >= 0`` its bytes are ``size[i]`` bytes at ``offset[i]`` of ``files[file[i]]`` (a
    file of that table: read as a byte range, no Lance call); ``rowid[i] == -1``: read
    ``refs[ref_index[i]]`` through the payload store (payloads stored one object each, folder
    mounts).
    """

    rowid: np.ndarray
    mount: np.ndarray
    mounts: list[str]
    size: np.ndarray
    ref_index: np.ndarray
    refs: pa.StructArray
    file: np.ndarray
    offset: np.ndarray
    files: list[str]

    def ref(self, i: int) -> StorageRef:
        j = int(self.ref_index[i])
        if j < 0:
            raise ObjectNotFoundError(
                f"payload at row {int(self.rowid[i])} of the {self.mounts[int(self.mount[i])]!r} "
                "blob table is gone (garbage collected?)"
            )
        return StorageRef.model_construct(**self.refs[j].as_py())


@dataclass
class Annotations:
    """The version's annotation records attached to the plan's datums, flattened.

    Records of datum ``p`` are rows ``offsets[p]:offsets[p + 1]``, in the version's table
    order. ``label`` indexes :attr:`Plan.classes` (-1: not listed); ``mask_item`` indexes
    :attr:`Plan.mask_assets` (-1: no mask asset).
    """

    offsets: np.ndarray
    kind: np.ndarray
    label: np.ndarray
    score: np.ndarray
    mask_item: np.ndarray
    mask_value: np.ndarray
    columns: pa.Table
    kinds: list[str]

    def __len__(self) -> int:
        return len(self.kind)


@dataclass
class Plan:
    """The resolved selection of one dataset version (see the module docstring)."""

    ref: str
    version_id: str
    ids: pa.Array
    splits: pa.Array
    metadata: pa.Array
    roles: tuple[str, ...]
    locations: dict[str, Locations]
    classes: list[str]
    annotations: Annotations | None = None
    mask_assets: Locations | None = None
    label_only: bool = False
    fingerprint: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


# -- building --------------------------------------------------------------------------------
def _as_list(value: str | Iterable[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def _select(handle: Any, split: list[str] | None, flt: Filter) -> pa.Table:
    table = handle.to_arrow(columns=["datum_id", "split", "assets", "metadata", "created_at"])
    if split is not None:
        table = table.filter(pc.fill_null(pc.is_in(table["split"], pa.array(split)), False))
    if flt is None:
        pass
    elif isinstance(flt, str):
        hits = handle.snapshot.dataset("datums").to_table(columns=["datum_id"], filter=flt)
        table = table.filter(pc.is_in(table["datum_id"], value_set=hits["datum_id"]))
    elif isinstance(flt, pc.Expression):
        table = table.filter(flt)
    elif callable(flt):
        mask = flt(table)
        mask = pa.array(np.asarray(mask, dtype=bool)) if not isinstance(mask, pa.Array) else mask
        if len(mask) != table.num_rows:
            raise ValidationError("filter returned a mask of the wrong length", field="filter")
        table = table.filter(mask)
    else:
        raise ValidationError(
            "filter must be a Lance SQL string, a pyarrow.compute.Expression or a callable",
            field="filter",
        )
    return table.take(pc.sort_indices(table["datum_id"]))


def _assets_storage(handle: Any, asset_ids: pa.Array) -> pa.StructArray:
    """The storage reference of each asset id (in input order)."""
    ds = handle.snapshot.dataset("assets")
    unique = pc.unique(asset_ids)
    if len(unique) <= 4096:
        assets = ds.to_table(
            columns=["asset_id", "storage"], filter=in_filter("asset_id", unique.to_pylist())
        )
    else:
        assets = ds.to_table(columns=["asset_id", "storage"])
    pos = pc.index_in(asset_ids, value_set=assets["asset_id"])
    if pos.null_count:
        missing = asset_ids.filter(pc.is_null(pos))[0].as_py()
        raise NotFoundError(f"asset {missing} of {handle.ref} is missing", asset_id=missing)
    return assets["storage"].combine_chunks().take(pos)


def _locate(store: PayloadStore, storage: pa.StructArray) -> Locations:
    """Resolve storage references to blob-table row ids where the lake packs them."""
    n = len(storage)
    mounts_col = storage.field("mount")
    keys = storage.field("key")
    shas = storage.field("sha256")
    mounts = pc.unique(mounts_col).to_pylist()
    codes = np.asarray(pc.index_in(mounts_col, value_set=pa.array(mounts, pa.string())))
    rowid = np.full(n, -1, dtype=np.int64)
    file = np.full(n, -1, dtype=np.int32)
    offset = np.zeros(n, dtype=np.int64)
    files: list[str] = []
    size = np.asarray(storage.field("size").to_numpy(zero_copy_only=False), dtype=np.int64)
    in_blob = np.asarray(pc.starts_with(keys, "blob/").to_numpy(zero_copy_only=False), bool)
    for code, name in enumerate(mounts):
        mount = store.mount(name)
        if not isinstance(mount, BlobMount):
            continue  # a folder mount: read through the store
        sel = np.flatnonzero(in_blob & (codes == code))
        if not len(sel):
            continue
        wanted = shas.take(pa.array(sel)).to_pylist()
        # The blob mount's sha256 index (kept in memory, refreshed on a miss) maps each
        # payload to its stable row id, and the blob descriptions to a byte range of a file.
        found = mount.rowids(wanted)
        rowid[sel] = [found.get(s, -1) for s in wanted]
        sel = sel[rowid[sel] >= 0]
        try:
            ranges = mount.ranges(rowid[sel])
        except StorageError as exc:  # an optimisation only: read these by row id instead
            log.warning("cannot locate payload byte ranges (%s); reading them by row id", exc)
            continue
        ok = (ranges.file >= 0) & (ranges.size == size[sel])
        file[sel[ok]] = ranges.file[ok] + len(files)
        offset[sel[ok]] = ranges.offset[ok]
        files += ranges.files
    other = np.flatnonzero(rowid < 0)
    ref_index = np.full(n, -1, dtype=np.int64)
    ref_index[other] = np.arange(len(other))
    refs = storage.take(pa.array(other, pa.int64()))
    return Locations(
        rowid, codes.astype(np.int16), mounts, size, ref_index, refs, file, offset, files
    )


def _role_assets(table: pa.Table, role: str, ref: str) -> pa.Array:
    parent, keys, values = map_entries(table["assets"])
    hit = pc.equal(keys, role)
    rows, assets = parent.filter(hit), values.filter(hit)
    if len(rows) != table.num_rows:
        have = np.zeros(table.num_rows, dtype=bool)
        have[np.asarray(rows)] = True
        bad = table["datum_id"][int(np.flatnonzero(~have)[0])].as_py()
        raise NotFoundError(f"datum {bad} of {ref} has no {role!r} asset", role=role, datum_id=bad)
    return assets.take(pc.sort_indices(rows))


def _classes(handle: Any, records: pa.Table, given: Sequence[str] | None) -> list[str]:
    """Given classes, else the labels of the records' annotation schemas in declared order,
    then any other label sorted."""
    if given is not None:
        return list(given)
    ordered: list[str] = []
    set_ids = pc.unique(records["set_id"]).to_pylist() if records.num_rows else []
    if set_ids:
        sets = handle.snapshot.dataset("annotation_sets").to_table(
            columns=["set_id", "schema_id"], filter=in_filter("set_id", set_ids)
        )
        schema_ids = sorted(s for s in sets["schema_id"].to_pylist() if s)
        if schema_ids:
            schemas = handle.snapshot.dataset("annotation_schemas").to_table(
                columns=["schema_id", "labels"], filter=in_filter("schema_id", schema_ids)
            )
            for labels in schemas.sort_by("schema_id")["labels"].to_pylist():
                for label in labels or []:
                    name = label["name"] if isinstance(label, dict) else label
                    if name not in ordered:
                        ordered.append(name)
    known = set(ordered)
    seen = pc.unique(records["label"]).to_pylist() if records.num_rows else []
    return ordered + sorted(lb for lb in seen if lb not in known and lb != "")


def _attach(records: pa.Table, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(record row, datum position) pairs: records on a datum, or on an asset a datum uses."""
    ids = table["datum_id"]
    on_datum = pc.index_in(records["datum_id"], value_set=ids)
    rec_a = np.flatnonzero(~np.asarray(pc.is_null(on_datum)))
    pos_a = np.asarray(on_datum.filter(pc.is_valid(on_datum)), dtype=np.int64)
    only_asset = np.flatnonzero(
        np.asarray(pc.and_(pc.is_null(records["datum_id"]), pc.is_valid(records["asset_id"])))
    )
    rec_b = np.zeros(0, dtype=np.int64)
    pos_b = np.zeros(0, dtype=np.int64)
    if len(only_asset):
        parent, _, values = map_entries(table["assets"])
        uses = pa.table({"asset_id": values, "pos": parent})
        recs = pa.table(
            {
                "asset_id": records["asset_id"].take(pa.array(only_asset)),
                "rec": pa.array(only_asset, pa.int64()),
            }
        )
        joined = recs.join(uses, "asset_id", join_type="inner")
        rec_b = np.asarray(joined["rec"], dtype=np.int64)
        pos_b = np.asarray(joined["pos"], dtype=np.int64)
    rec = np.concatenate([rec_a, rec_b])
    pos = np.concatenate([pos_a, pos_b])
    order = np.lexsort((rec, pos))
    return rec[order], pos[order]


def _annotations(
    handle: Any, table: pa.Table, kinds: list[str] | None, given_classes: Sequence[str] | None
) -> tuple[Annotations, list[str], pa.Array]:
    records = handle.annotations(columns=_RECORD_COLUMNS)
    if kinds is not None:
        records = records.filter(pc.is_in(records["kind"], pa.array(kinds, pa.string())))
    classes = _classes(handle, records, given_classes)
    rec, pos = _attach(records, table)
    picked = records.take(pa.array(rec, pa.int64()))
    offsets = np.zeros(table.num_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(pos, minlength=table.num_rows), out=offsets[1:])
    kind_code = np.asarray(pc.index_in(picked["kind"], pa.array(KINDS)).fill_null(-1), np.int8)
    label = pc.index_in(picked["label"], value_set=pa.array(classes, pa.string()))
    score = picked["score"].to_numpy(zero_copy_only=False)
    mask_ids = picked["mask_asset_id"]
    unique_masks = pc.drop_null(pc.unique(mask_ids.combine_chunks()))
    mask_item = np.asarray(pc.index_in(mask_ids, value_set=unique_masks).fill_null(-1), np.int64)
    present = [k for k in KINDS if k in set(picked["kind"].to_pylist())]
    ann = Annotations(
        offsets=offsets,
        kind=kind_code,
        label=np.asarray(label.fill_null(-1), dtype=np.int64),
        score=np.asarray(score, dtype=np.float32),
        mask_item=mask_item,
        mask_value=np.asarray(picked["mask_value"].fill_null(-1), dtype=np.int64),
        columns=picked.select(
            ["annotation_id", "kind", "label", "score", *GEOMETRY_FIELDS]
        ).combine_chunks(),
        kinds=present,
    )
    return ann, classes, unique_masks


def _label_filter(handle: Any, table: pa.Table, labels: list[str]) -> pa.Table:
    records = handle.annotations(columns=["datum_id", "asset_id", "label"])
    records = records.filter(pc.is_in(records["label"], pa.array(labels, pa.string())))
    _, pos = _attach(records, table)
    keep = np.zeros(table.num_rows, dtype=bool)
    keep[pos] = True
    return table.filter(pa.array(keep))


def build_plan(
    handle: Any,
    *,
    roles: Sequence[str],
    annotations: bool | str | Sequence[str],
    split: str | Iterable[str] | None = None,
    labels: str | Iterable[str] | None = None,
    filter: Filter = None,
    classes: Sequence[str] | None = None,
) -> Plan:
    """Resolve what a loader of ``handle`` streams (metadata only; no payload is read)."""
    if isinstance(roles, str):
        roles = (roles,)
    roles = tuple(dict.fromkeys(roles))
    table = _select(handle, _as_list(split), filter)
    label_list = _as_list(labels)
    if label_list is not None:
        table = _label_filter(handle, table, label_list)
    store = handle._core.objects
    locations = {
        role: _locate(store, _assets_storage(handle, _role_assets(table, role, handle.ref)))
        for role in roles
    }
    ann = None
    mask_assets = None
    class_list = list(classes) if classes is not None else []
    label_only = annotations == "label"
    if annotations:
        kinds = (
            ["classification"]
            if label_only
            else None
            if annotations is True
            else [annotations]
            if isinstance(annotations, str)
            else list(annotations)
        )
        if kinds is not None and (bad := [k for k in kinds if k not in KINDS]):
            raise ValidationError(f"unknown annotation kinds {bad}; kinds are {list(KINDS)}")
        ann, class_list, mask_ids = _annotations(handle, table, kinds, classes)
        if len(mask_ids):
            mask_assets = _locate(store, _assets_storage(handle, mask_ids))
    fingerprint = {
        "version_id": handle.record.version_id,
        "roles": list(roles),
        "annotations": annotations if isinstance(annotations, (bool, str)) else list(annotations),
        "split": _as_list(split),
        "labels": label_list,
        "filter": filter if isinstance(filter, str) or filter is None else None,
        "opaque_filter": not (isinstance(filter, str) or filter is None),
        "classes": class_list,
    }
    return Plan(
        ref=handle.ref,
        version_id=handle.record.version_id,
        ids=table["datum_id"].combine_chunks(),
        splits=table["split"].combine_chunks(),
        metadata=table["metadata"].combine_chunks(),
        roles=roles,
        locations=locations,
        classes=class_list,
        annotations=ann,
        mask_assets=mask_assets,
        label_only=label_only,
        fingerprint=fingerprint,
    )


def parse_metadata(raw: str | None) -> dict[str, Any]:
    """A datum's metadata JSON as a dict."""
    return json.loads(raw) if raw else {}
