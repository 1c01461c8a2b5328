"""What every exporter shares: reading one dataset version, the result object, file helpers.

An exporter reads a committed dataset version (immutable: it reads what it read the day it
was committed), writes the target format into a local folder, and reports what the format
cannot hold in :attr:`ExportResult.warnings`, with counts. Nothing is dropped silently.
"""

from __future__ import annotations

import json
import mimetypes
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.compute as pc

from lakecore.entities._base import in_filter
from lakecore.importers._common import Issue, Issues
from lakecore.tables import from_arrow
from schemas import AnnotationSchema, LabelDef, StorageRef

if TYPE_CHECKING:
    from lakecore.datasets import DatasetVersionHandle
    from lakecore.lake import Lake

__all__ = ["ExportProgress", "ExportResult", "VersionData", "fmt", "load_version"]

ExportProgress = Callable[[str, int, int | None], None]
"""``progress(stage, done, total)``; stages: ``read``, ``write``."""

_BATCH = 256
_EXT = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/tiff": ".tif",
    "image/bmp": ".bmp",
}


@dataclass
class ExportResult:
    """What an export wrote, and what the target format could not hold.

    Attributes:
        images: image files written. files: every file written (images, labels, masks, JSON).
        records: records exported, per kind. skipped: records not exported, per kind.
        warnings: each kind of loss, with a count (e.g. "keypoints records: YOLO detection
            holds boxes only").
    """

    format: str
    ref: str
    out_dir: str
    images: int = 0
    files: int = 0
    records: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    warnings: list[Issue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    def __str__(self) -> str:
        done = ", ".join(f"{n} {k}" for k, n in sorted(self.records.items())) or "no records"
        lines = [
            f"exported {self.ref} as {self.format} to {self.out_dir}: {self.images} "
            f"images, {self.files} files, {done}"
        ]
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


class Tally:
    """Counts exported and skipped records; a skip always comes with a warning."""

    def __init__(self) -> None:
        self.issues = Issues()
        self.done: dict[str, int] = defaultdict(int)
        self.skipped: dict[str, int] = defaultdict(int)
        self.notes: list[str] = []

    def ok(self, kind: str, n: int = 1) -> None:
        """``n`` records of ``kind`` were written."""
        self.done[kind] += n

    def skip(
        self, kind: str, code: str, message: str, where: str | None = None, n: int = 1
    ) -> None:
        """``n`` records of ``kind`` could not be written: warn, with the reason."""
        self.skipped[kind] += n
        self.issues.add(code, message, where, n)

    def result(
        self, fmt_name: str, ref: str, out: Path, images: int, files: int, started: float
    ) -> ExportResult:
        """The export result."""
        return ExportResult(
            fmt_name,
            ref,
            str(out),
            images,
            files,
            dict(self.done),
            dict(self.skipped),
            self.issues.list(),
            self.notes,
            round(time.perf_counter() - started, 3),
        )


def fmt(value: float) -> float | int:
    """The shortest decimal that reads back as the same float32 (what was imported).

    Coordinates are stored as float32; ``473.07`` is stored as ``473.070007...`` and written
    back as ``473.07``. Integral values are written as ints.
    """
    f32 = np.float32(value)
    if float(f32).is_integer():
        return int(f32)
    return float(np.format_float_positional(f32, unique=True, trim="-"))


def loads(text: str | None) -> dict[str, Any]:
    """A JSON object column value as a dict."""
    return json.loads(text) if text else {}


@dataclass
class Datum:
    """One member datum of the version, with what an exporter needs."""

    datum_id: str
    split: str | None
    roles: dict[str, str]
    metadata: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def image(self) -> str | None:
        """The asset id of role ``image``."""
        return self.roles.get("image")


class VersionData:
    """One dataset version, read once: datums, their assets, records, schemas."""

    def __init__(self, lake: Lake, handle: DatasetVersionHandle) -> None:
        self.lake = lake
        self.handle = handle
        snap = handle.snapshot
        members = handle.to_arrow(columns=["datum_id", "split", "assets", "metadata"])
        self.datums: dict[str, Datum] = {}
        for row in members.to_pylist():
            self.datums[row["datum_id"]] = Datum(
                row["datum_id"], row["split"], dict(row["assets"]), loads(row["metadata"])
            )
        records = handle.annotations()
        self.record_count = records.num_rows
        asset_datum: dict[str, str] = {}
        for d in self.datums.values():
            for aid in d.roles.values():
                asset_datum.setdefault(aid, d.datum_id)
        self.orphans = 0
        for rec in records.to_pylist():
            rec["attributes"] = loads(rec["attributes"])
            rec["metadata"] = loads(rec["metadata"])
            owner = (
                rec["datum_id"]
                if rec["datum_id"] in self.datums
                else asset_datum.get(rec["asset_id"] or "")
            )
            if owner is None:
                self.orphans += 1
                continue
            self.datums[owner].records.append(rec)
        assets = handle.assets()
        self.assets: dict[str, dict[str, Any]] = {
            r["asset_id"]: r
            for r in assets.select(
                ["asset_id", "kind", "media_type", "width", "height", "storage", "metadata"]
            ).to_pylist()
        }
        set_ids = pc.unique(records["set_id"]).to_pylist() if records.num_rows else []
        sets = snap.to_table("annotation_sets", filter=in_filter("set_id", set_ids))
        schema_ids = [s for s in sets["schema_id"].to_pylist() if s]
        self.schemas: list[AnnotationSchema] = (
            from_arrow(
                snap.to_table("annotation_schemas", filter=in_filter("schema_id", schema_ids)),
                AnnotationSchema,
            )
            if schema_ids
            else []
        )

    # -- labels --------------------------------------------------------------------------------
    @cached_property
    def labels(self) -> list[LabelDef]:
        """Label definitions: the schemas' (merged by name, first wins), then labels only
        records use (ordered by name)."""
        out: dict[str, LabelDef] = {}
        for schema in self.schemas:
            for lab in schema.labels:
                out.setdefault(lab.name, lab)
        used = sorted(
            {
                r["label"]
                for d in self.datums.values()
                for r in d.records
                if r["label"] and r["label"] not in out
            }
        )
        for name in used:
            out[name] = LabelDef(name=name)
        return list(out.values())

    @property
    def keypoint_schema(self) -> AnnotationSchema | None:
        """The first schema naming keypoints, if any."""
        return next((s for s in self.schemas if s.keypoint_names), None)

    # -- payloads ------------------------------------------------------------------------------
    def ref(self, asset_id: str) -> StorageRef:
        """The storage reference of an asset."""
        return StorageRef.model_construct(**self.assets[asset_id]["storage"])

    def payloads(self, asset_ids: list[str]) -> Iterator[tuple[str, bytes]]:
        """``(asset_id, bytes)`` in batches (memory bounded by the batch)."""
        for i in range(0, len(asset_ids), _BATCH):
            chunk = asset_ids[i : i + _BATCH]
            blobs = self.lake.objects.get_many([self.ref(a) for a in chunk])
            yield from zip(chunk, blobs, strict=True)

    def read(self, asset_id: str) -> bytes:
        """One asset's bytes."""
        return self.lake.objects.get(self.ref(asset_id))

    def file_name(self, datum: Datum) -> str:
        """The image file name to write: the imported one, else ``<datum_id><ext>``."""
        name = datum.metadata.get("file_name")
        asset = self.assets.get(datum.image or "")
        if not name and asset is not None:
            name = loads(asset["metadata"]).get("file_name")
        if name:
            return str(name)
        media = asset["media_type"] if asset else ""
        return datum.datum_id + (_EXT.get(media) or mimetypes.guess_extension(media) or ".bin")

    def size(self, datum: Datum) -> tuple[int, int]:
        """Width and height of the datum's image (0, 0 when unknown)."""
        asset = self.assets.get(datum.image or "") or {}
        return int(asset.get("width") or 0), int(asset.get("height") or 0)


def load_version(lake: Lake, dataset: str, version: str) -> VersionData:
    """Resolve ``dataset@version`` (``latest`` or a tag work) and read it."""
    return VersionData(lake, lake.datasets.get(dataset, version))


def split_name(split: str | None) -> str:
    """The folder/file name of a split (``default`` for datums without one)."""
    return split or "default"


def write_bytes(path: Path, data: bytes) -> None:
    """Write a file, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def objects(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Records grouped by the object they describe (``metadata.object``), in first-seen
    order; a record without an object key is an object of its own."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        key = rec["metadata"].get("object")
        groups.setdefault(
            f"o:{key}" if key is not None else f"r:{rec['annotation_id']}", []
        ).append(rec)
    return list(groups.values())


def unique_names(names: list[str], tally: Tally) -> list[str]:
    """Make file names unique (``a.jpg``, ``a-1.jpg``, ...), noting renames."""
    seen: set[str] = set()
    out = []
    for name in names:
        cand, k = name, 0
        while cand in seen:
            k += 1
            stem, dot, ext = name.rpartition(".")
            cand = f"{stem}-{k}.{ext}" if dot else f"{name}-{k}"
        if cand != name:
            tally.issues.add("renamed", "images with the same file name, renamed", cand)
        seen.add(cand)
        out.append(cand)
    return out


def as_array(payload: bytes) -> np.ndarray:
    """A PNG payload's pixel indices."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(payload)) as im:
        return np.asarray(im)
