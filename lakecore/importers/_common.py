"""What every importer shares: the summary, warnings with counts, progress, and the writer.

An importer parses and validates its whole input first and produces a :class:`Plan` (images,
masks, annotation records as columns, the schema and set to create); nothing is written while
parsing. :func:`write_plan` then

1. refuses a dataset version, schema or set that exists already (nothing written);
2. builds and validates every row (the entity API's vectorized checks) with ids generated up
   front, so a bad record is reported before any byte is stored;
3. stores the payloads (content-addressed: the same bytes are stored once per lake);
4. commits assets, datums, the annotation schema, the set, its records AND the dataset version
   in ONE atomic commit (``DatasetBuilder.commit(with_ops=...)``), so a
   failed import leaves no dataset version and no rows behind (payloads stay until GC).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pydantic
from PIL import Image

from lakecore.entities._annotation_input import RECORD_SCHEMA, records_table
from lakecore.entities._base import new_ids, now_array, quote
from lakecore.entities._checks import SPLIT_RE, dump_json
from lakecore.entities.annotations import validate_records
from lakecore.entities.assets import Assets
from lakecore.entities.datums import _validate as validate_datums
from lakecore.errors import AlreadyExistsError, IngestError, ValidationError
from lakecore.tables import Append, layout, to_arrow
from schemas import AnnotationSchema, AnnotationSet, AssetKind, DatasetVersion, Datum

if TYPE_CHECKING:
    from lakecore.catalog import Snapshot
    from lakecore.lake import Lake

__all__ = [
    "ImportProgress",
    "ImportSummary",
    "Issue",
    "Issues",
    "Item",
    "Plan",
    "RecordRows",
    "image_info",
    "write_plan",
]

ImportProgress = Callable[[str, int, int | None], None]
"""``progress(stage, done, total)``; stages: ``scan``, ``parse``, ``payloads``, ``commit``."""

_EXAMPLES = 5
_PROGRESS_STEP = 256


# -- warnings and the summary -------------------------------------------------------------------
@dataclass
class Issue:
    """One kind of problem the importer (or exporter) worked around, with how often and where."""

    code: str
    message: str
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        where = f" (e.g. {'; '.join(self.examples)})" if self.examples else ""
        return f"{self.message}: {self.count}{where}"


class Issues:
    """Collects warnings by code: a count and the first few places each happened."""

    def __init__(self) -> None:
        self._by_code: dict[str, Issue] = {}

    def add(self, code: str, message: str, where: str | None = None, count: int = 1) -> None:
        """Record ``count`` occurrences of ``code`` (``message`` is kept from the first)."""
        issue = self._by_code.setdefault(code, Issue(code, message))
        issue.count += count
        if where is not None and len(issue.examples) < _EXAMPLES and (where not in issue.examples):
            issue.examples.append(where)

    def list(self) -> list[Issue]:
        """The issues, in the order first seen."""
        return list(self._by_code.values())

    def __len__(self) -> int:
        return len(self._by_code)


@dataclass
class ImportSummary:
    """What an import wrote.

    Attributes:
        format: ``pascal_voc``, ``coco`` or ``yolo``.
        ref: the committed dataset version, ``name@version``.
        assets: asset rows written (images and masks); ``images``/``masks`` split them.
        datums: datums written (one per image). records: annotation records written.
        counts: records per kind (``bbox``, ``polygon``, ``mask``, ``keypoints``, ...).
        labels: records per label. splits: datums per split.
        warnings: problems worked around (e.g. boxes clipped to the image), with counts.
        notes: facts worth knowing (which image lists made up the split, ...).
    """

    format: str
    dataset: str
    version: str
    assets: int = 0
    images: int = 0
    masks: int = 0
    datums: int = 0
    records: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    schema_id: str | None = None
    set_id: str | None = None
    warnings: list[Issue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ref(self) -> str:
        """``dataset@version``."""
        return f"{self.dataset}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for ``--json`` and logs)."""
        return {"ref": self.ref, **asdict(self)}

    def __str__(self) -> str:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.counts.items())) or "no records"
        lines = [
            f"imported {self.ref}: {self.datums} datums, {self.assets} assets "
            f"({self.images} images, {self.masks} masks), {self.records} records ({kinds})"
        ]
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# -- the plan -----------------------------------------------------------------------------------
@dataclass
class Item:
    """One image (one datum) to import, with the masks stored next to it."""

    image: Path
    file_name: str
    width: int
    height: int
    media_type: str
    split: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    masks: dict[str, Path] = field(default_factory=dict)
    """Datum role -> mask PNG (kind ``mask``), stored unchanged."""


_GEOMETRY = ("bbox", "polygon", "keypoints", "keypoint_visibility", "mask_rle", "text")
_FIELDS = ("kind", "label", "label_id", *_GEOMETRY, "mask_role", "mask_value")


class RecordRows:
    """Annotation records collected column by column while parsing.

    ``item`` is the index of the image a record belongs to; ``mask_role`` names the datum role
    of the mask asset a ``mask_value`` record points into; ``where`` says where each record came
    from, for error messages.
    """

    def __init__(self) -> None:
        self.item: list[int] = []
        self.where: list[str] = []
        self.attributes: list[str] = []
        self.metadata: list[str] = []
        self.cols: dict[str, list[Any]] = {name: [] for name in _FIELDS}

    def __len__(self) -> int:
        return len(self.item)

    def add(
        self,
        item: int,
        kind: str,
        where: str,
        *,
        label: str = "",
        attributes: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> None:
        """Add one record of image ``item`` (``fields``: label_id, bbox, polygon, ...)."""
        self.item.append(item)
        self.where.append(where)
        self.attributes.append(_json(attributes))
        self.metadata.append(_json(metadata))
        self.cols["kind"].append(kind)
        self.cols["label"].append(label)
        for name in _FIELDS[2:]:
            self.cols[name].append(fields.pop(name, None))
        if fields:
            raise TypeError(f"unknown record fields {sorted(fields)}")


def _json(value: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(value or {}), sort_keys=True, allow_nan=False)


@dataclass
class Plan:
    """Everything an import will write, fully parsed and checked."""

    format: str
    dataset: str
    version: str
    items: list[Item]
    records: RecordRows
    schema: dict[str, Any]
    """Keyword arguments of :class:`schemas.AnnotationSchema` (name and version are set)."""
    set_metadata: dict[str, Any] = field(default_factory=dict)
    version_metadata: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    issues: Issues = field(default_factory=Issues)
    notes: list[str] = field(default_factory=list)


# -- helpers used while parsing -----------------------------------------------------------------
def check_split_name(split: str | None, what: str) -> str | None:
    """A split name, or an IngestError saying how split names look."""
    import re

    if split is not None and not re.fullmatch(SPLIT_RE.strip("^$"), split):
        raise IngestError(
            f"{what}: split {split!r} is not a valid split name (1-64 characters "
            "from A-Z, a-z, 0-9, '_', '.', '-')",
            split=split,
        )
    return split


def image_info(path: Path, what: str) -> tuple[int, int, str]:
    """Width, height and media type from an image file's header (no pixel is decoded)."""
    if not path.is_file():
        raise IngestError(f"{what}: image file {str(path)!r} does not exist", path=str(path))
    try:
        with Image.open(path) as im:
            width, height = im.size
            media = Image.MIME.get(im.format or "", "application/octet-stream")
    except (OSError, SyntaxError, ValueError) as exc:
        raise IngestError(
            f"{what}: {str(path)!r} is not a readable image ({exc})", path=str(path)
        ) from None
    return width, height, media


def clip_box(box: Sequence[float], width: int, height: int) -> tuple[list[float], bool]:
    """Clip an ``(x, y, w, h)`` box to the image; return it and whether it changed."""
    x0, y0 = max(float(box[0]), 0.0), max(float(box[1]), 0.0)
    x1 = min(float(box[0]) + float(box[2]), float(width))
    y1 = min(float(box[1]) + float(box[3]), float(height))
    out = [x0, y0, max(x1 - x0, 0.0), max(y1 - y0, 0.0)]
    eps = 1e-3
    changed = any(abs(a - float(b)) > eps for a, b in zip(out, box, strict=True))
    return (out if changed else [float(v) for v in box]), changed


def finite(values: Iterable[Any]) -> bool:
    """True when every value is a real, finite number (not bool)."""
    return all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values
    )


def tick(progress: ImportProgress | None, stage: str, done: int, total: int | None) -> None:
    """Report progress every few hundred items (and at the end)."""
    if progress is not None and (done == total or done % _PROGRESS_STEP == 0):
        progress(stage, done, total)


def schema_attributes(names: Mapping[str, str]) -> list[dict[str, Any]]:
    """Attribute rules ``{name: type}`` (none required)."""
    return [{"name": n, "type": t} for n, t in names.items()]


# -- writing ------------------------------------------------------------------------------------
def _refuse_existing(snap: Snapshot, plan: Plan, lake: Lake) -> None:
    if lake.datasets.exists(plan.dataset, plan.version):
        raise AlreadyExistsError(
            f"dataset version {plan.dataset}@{plan.version} exists already; nothing was "
            "written (pick another --version or --dataset)",
            ref=f"{plan.dataset}@{plan.version}",
        )
    where = f"name = {quote(plan.dataset)} AND version = {quote(plan.version)}"
    if snap.count("annotation_schemas", filter=where):
        raise AlreadyExistsError(
            f"annotation schema {plan.dataset!r} version {plan.version!r} exists already; "
            "nothing was written (pick another --version or --dataset)",
            name=plan.dataset,
            version=plan.version,
        )


def _model(cls: type[Any], what: str, **fields: Any) -> Any:
    try:
        return cls.model_validate(fields)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise IngestError(f"{what}: {loc}: {err['msg']}", field=loc) from None


def _records_arrow(
    plan: Plan, asset_ids: pa.Array, datum_ids: pa.Array, mask_ids: dict[tuple[int, str], str]
) -> pa.Table:
    rows = plan.records
    item = np.asarray(rows.item, dtype=np.int64)
    types = {f.name: f.type for f in RECORD_SCHEMA}
    cols: dict[str, Any] = {
        "asset_id": asset_ids.take(pa.array(item, pa.int64())),
        "datum_id": datum_ids.take(pa.array(item, pa.int64())),
        "kind": pa.array(rows.cols["kind"], pa.string()),
        "label": pa.array(rows.cols["label"], pa.string()),
        "label_id": pa.array(rows.cols["label_id"], pa.int32()),
    }
    for name in _GEOMETRY:
        cols[name] = pa.array(rows.cols[name], types[name])
    roles = rows.cols["mask_role"]
    cols["mask_asset_id"] = pa.array(
        [None if r is None else mask_ids[(i, r)] for i, r in zip(rows.item, roles, strict=True)],
        pa.string(),
    )
    cols["mask_value"] = pa.array(rows.cols["mask_value"], pa.int32())
    cols["attributes"] = pa.array(rows.attributes, pa.string())
    cols["metadata"] = pa.array(rows.metadata, pa.string())
    return pa.table(cols)


def _validated_records(
    plan: Plan, table: pa.Table, aset: AnnotationSet, schema: AnnotationSchema
) -> pa.Table:
    """Normalize and validate the records with the entity API's vectorized checks."""
    try:
        out = records_table(table, aset)
        validate_records(out, schema)
    except ValidationError as exc:
        row = exc.details.get("row")
        where = plan.records.where[row] if isinstance(row, int) else "annotations"
        raise IngestError(f"{where}: {exc}", where=where, **exc.details) from None
    return out


def _datum_rows(plan: Plan, datum_ids: pa.Array, roles: list[dict[str, str]]) -> pa.Table:
    n = len(plan.items)
    now = now_array(n)
    table = pa.table(
        {
            "datum_id": datum_ids,
            "assets": pa.array([list(r.items()) for r in roles], pa.map_(pa.string(), pa.string())),
            "split": pa.array([it.split for it in plan.items], pa.string()),
            "metadata": dump_json([it.metadata for it in plan.items], n),
            "created_at": now,
            "updated_at": now,
            "created_by": pa.nulls(n, pa.string()),
        },
        schema=layout(Datum).schema,
    )
    try:
        validate_datums(table.select(["datum_id", "assets", "split", "metadata", "created_by"]))
    except ValidationError as exc:
        row = exc.details.get("row")
        where = plan.items[row].file_name if isinstance(row, int) else "datums"
        raise IngestError(f"{where}: {exc}", where=where) from None
    return table


def _asset_rows(
    lake: Lake,
    refs: list[Any],
    ids: pa.Array,
    kind: AssetKind,
    media: list[str],
    dims: list[tuple[int, int]],
    metadata: list[dict[str, Any]],
) -> pa.Table:
    n = len(refs)
    rows = Assets(lake)._rows(
        refs, kind, pa.array(media, pa.string()), list(dims), dump_json(metadata, n), None
    )
    return rows.set_column(rows.schema.get_field_index("asset_id"), "asset_id", ids)


def write_plan(
    lake: Lake, plan: Plan, progress: ImportProgress | None = None, started: float | None = None
) -> ImportSummary:
    """Write a checked plan: payloads, one data commit, then the dataset version."""
    started = time.perf_counter() if started is None else started
    _model(
        DatasetVersion,
        "dataset",
        dataset_name=plan.dataset,
        version=plan.version,
        catalog_version=0,
    )
    if not plan.items:
        raise IngestError(f"nothing to import: no images ({plan.message or plan.format})")
    _refuse_existing(lake.snapshot(), plan, lake)
    schema = _model(
        AnnotationSchema,
        "annotation schema",
        name=plan.dataset,
        version=plan.version,
        **plan.schema,
    )
    aset = _model(
        AnnotationSet,
        "annotation set",
        name=plan.dataset,
        purpose="ground_truth",
        source_kind="import",
        schema_id=schema.schema_id,
        metadata={"format": plan.format, "version": plan.version, **plan.set_metadata},
    )
    items = plan.items
    n = len(items)
    image_ids, datum_ids = new_ids("asset", n), new_ids("datum", n)
    masks = [(i, role, path) for i, it in enumerate(items) for role, path in it.masks.items()]
    mask_ids = dict(
        zip([(i, r) for i, r, _ in masks], new_ids("asset", len(masks)).to_pylist(), strict=True)
    )
    roles = [{"image": image_ids[i].as_py()} for i in range(n)]
    for i, role, _ in masks:
        roles[i][role] = mask_ids[(i, role)]
    records = _validated_records(
        plan, _records_arrow(plan, image_ids, datum_ids, mask_ids), aset, schema
    )
    datums = _datum_rows(plan, datum_ids, roles)

    # payloads: content-addressed, idempotent, invisible until a committed row references them
    sources = [it.image for it in items] + [p for _, _, p in masks]
    total = len(sources)
    refs = lake.objects.put_many(
        sources,
        progress=None if progress is None else (lambda done, _t: progress("payloads", done, total)),
    )
    if progress is not None:
        progress("payloads", total, total)
    image_rows = _asset_rows(
        lake,
        refs[:n],
        image_ids,
        AssetKind.IMAGE,
        [it.media_type for it in items],
        [(it.width, it.height) for it in items],
        [{"file_name": it.file_name, "format": plan.format} for it in items],
    )
    mask_rows = _asset_rows(
        lake,
        refs[n:],
        pa.array([mask_ids[(i, r)] for i, r, _ in masks], pa.string()),
        AssetKind.MASK,
        ["image/png"] * len(masks),
        [(items[i].width, items[i].height) for i, _, _ in masks],
        [
            {"file_name": f"{p.parent.name}/{p.name}", "format": plan.format, "role": r}
            for _, r, p in masks
        ],
    )
    assets = pa.concat_tables([image_rows, mask_rows])

    if progress is not None:
        progress("commit", 0, 1)
    members = pa.table(
        {"datum_id": datum_ids, "split": pa.array([it.split for it in items], pa.string())}
    )
    # one atomic commit: the rows and the version that holds them, or nothing at all
    lake.datasets.builder(plan.dataset).add(members).attach([aset.set_id]).commit(
        plan.version,
        message=plan.message or f"imported from {plan.format}",
        metadata=plan.version_metadata,
        with_ops=[
            Append("assets", assets),
            Append("datums", datums),
            Append("annotation_schemas", to_arrow([schema], AnnotationSchema)),
            Append("annotation_sets", to_arrow([aset], AnnotationSet)),
            Append("annotation_records", records),
        ],
    )
    if progress is not None:
        progress("commit", 1, 1)
    return _summary(plan, schema, aset, assets, records, len(masks), started)


def _counts(col: pa.ChunkedArray) -> dict[str, int]:
    if col.length() == 0:
        return {}
    vc = pc.value_counts(col.combine_chunks())
    return {
        str(k): int(v)
        for k, v in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True)
    }


def _summary(
    plan: Plan,
    schema: AnnotationSchema,
    aset: AnnotationSet,
    assets: pa.Table,
    records: pa.Table,
    n_masks: int,
    started: float,
) -> ImportSummary:
    splits: dict[str, int] = {}
    for it in plan.items:
        key = it.split or "(none)"
        splits[key] = splits.get(key, 0) + 1
    labels = _counts(records["label"].filter(pc.not_equal(records["label"], "")))
    return ImportSummary(
        format=plan.format,
        dataset=plan.dataset,
        version=plan.version,
        assets=assets.num_rows,
        images=len(plan.items),
        masks=n_masks,
        datums=len(plan.items),
        records=records.num_rows,
        counts=_counts(records["kind"]),
        labels=labels,
        splits=splits,
        schema_id=schema.schema_id,
        set_id=aset.set_id,
        warnings=plan.issues.list(),
        notes=list(plan.notes),
        seconds=round(time.perf_counter() - started, 3),
    )
