"""COCO exporter: a dataset version -> ``annotations/{instances,person_keypoints,captions}_<split>
.json`` and ``<split>/<file_name>`` images.

Records of one object (same ``metadata.object``) become one COCO annotation: ``bbox`` ->
``bbox``, ``polygon`` -> polygon ``segmentation`` (one list per part), ``mask`` -> RLE
``segmentation`` (``mask_rle`` as stored; masks stored as PNG assets + ``mask_value`` are
encoded with ``pycocotools.mask``), ``keypoints`` -> the keypoints file. ``area`` and ``id``
are those imported when present, else computed (``pycocotools.mask.area``) and assigned.
Coordinates are written as the shortest decimals that read back as the stored float32 values.
What COCO cannot hold (polygon holes, rotated boxes, polylines, ellipses, classification
records, semantic class masks) is counted in the result's warnings.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lakecore.exporters._common import (
    Datum,
    ExportProgress,
    ExportResult,
    Tally,
    VersionData,
    as_array,
    fmt,
    load_version,
    objects,
    split_name,
    unique_names,
    write_bytes,
)
from lakecore.importers import _rle as rle

if TYPE_CHECKING:
    from lakecore.lake import Lake

__all__ = ["export_coco"]

_UNSUPPORTED = ("rotated_bbox", "polyline", "ellipse", "classification")


def _assign_ids(entries: list[dict[str, Any]]) -> None:
    """Keep each entry's ``id`` when it is a unique int; give the others fresh ids."""
    used: set[int] = set()
    todo = []
    for e in entries:
        i = e.get("id")
        if isinstance(i, int) and not isinstance(i, bool) and i not in used:
            used.add(i)
        else:
            todo.append(e)
    nxt = max(used, default=0) + 1
    for e in todo:
        e["id"] = nxt
        nxt += 1


class _Builder:
    def __init__(self, data: VersionData, tally: Tally) -> None:
        self.data = data
        self.tally = tally
        self.categories = self._categories()
        self.by_name = {c["name"]: c["id"] for c in self.categories}
        self._png: dict[str, np.ndarray] = {}

    def _categories(self) -> list[dict[str, Any]]:
        labels = self.data.labels
        used = {lab.label_id for lab in labels if lab.label_id is not None}
        nxt = max(used, default=0) + 1
        out = []
        for lab in labels:
            cid = lab.label_id
            if cid is None:
                cid, nxt = nxt, nxt + 1
            cat: dict[str, Any] = {"id": cid, "name": lab.name}
            if lab.supercategory is not None:
                cat["supercategory"] = lab.supercategory
            out.append(cat)
        return sorted(out, key=lambda c: c["id"])

    def keypoint_categories(self, ids: set[int], have: bool) -> list[dict[str, Any]]:
        """Categories of the keypoint records (else those the schema says have keypoints),
        with keypoint names and a 1-based skeleton."""
        schema = self.data.keypoint_schema
        if not have and schema is not None:
            ids = set(schema.metadata.get("keypoint_categories", []))
        out = []
        for cat in self.categories:
            if cat["id"] in ids:
                extra: dict[str, Any] = {}
                if schema is not None:
                    extra = {
                        "keypoints": list(schema.keypoint_names),
                        "skeleton": [[a + 1, b + 1] for a, b in schema.skeleton],
                    }
                out.append({**cat, **extra})
        return out

    def _mask_from_png(self, rec: dict[str, Any]) -> dict[str, Any]:
        aid = rec["mask_asset_id"]
        if aid not in self._png:
            self._png[aid] = as_array(self.data.read(aid))
        arr = self._png[aid]
        counts = rle.encode(arr == rec["mask_value"])
        return {"height": arr.shape[0], "width": arr.shape[1], "counts": counts}

    def annotation(
        self, group: list[dict[str, Any]], width: int, height: int, where: str
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(instance annotation, keypoints annotation) of one object's records."""
        box = poly = mask = kps = None
        for rec in group:
            kind = rec["kind"]
            if kind in _UNSUPPORTED:
                self.tally.skip(
                    kind,
                    f"coco_{kind}",
                    f"{kind} records: COCO cannot hold them, not exported",
                    where,
                )
            elif kind == "bbox" and box is None:
                box = rec
            elif kind == "polygon" and poly is None:
                poly = rec
            elif kind == "keypoints" and kps is None:
                kps = rec
            elif kind == "mask" and rec["metadata"].get("semantic"):
                self.tally.skip(
                    kind,
                    "coco_semantic_mask",
                    "semantic (per-class) mask records: "
                    "COCO instances hold per-object masks only, not exported",
                    where,
                )
            elif kind == "mask" and mask is None and poly is None:
                mask = rec
            else:
                self.tally.skip(
                    kind,
                    "coco_extra_geometry",
                    "records beyond one box, one "
                    "segmentation and one keypoint set per object, not exported",
                    where,
                )
        first = box or poly or mask or kps
        if first is None:
            return None, None
        seg: Any = []
        mrle = None
        if poly is not None:
            seg = [[fmt(v) for v in part["exterior"]] for part in poly["polygon"]]
            holes = sum(len(part["holes"]) for part in poly["polygon"])
            if holes:
                self.tally.issues.add(
                    "coco_holes",
                    "polygon holes: COCO polygons cannot hold them, exterior rings exported",
                    where,
                    holes,
                )
            self.tally.ok("polygon")
        elif mask is not None:
            mrle = mask["mask_rle"] or self._mask_from_png(mask)
            seg = {"size": [mrle["height"], mrle["width"]], "counts": mrle["counts"]}
            self.tally.ok("mask")
        meta = first["metadata"].get("coco", {})
        ann: dict[str, Any] = {
            "id": meta.get("id"),
            "image_id": None,
            "category_id": self.by_name[first["label"]],
            "segmentation": seg,
            "iscrowd": int(bool(first["attributes"].get("iscrowd", False))),
        }
        if box is not None:
            ann["bbox"] = [fmt(v) for v in box["bbox"]]
            self.tally.ok("bbox")
        elif mrle is not None:
            ann["bbox"] = [fmt(v) for v in rle.to_bbox(**mrle)]
        elif poly is not None:
            ann["bbox"] = _extent([v for part in poly["polygon"] for v in part["exterior"]])
        else:
            ann["bbox"] = _extent(kps["keypoints"] if kps else [])
        ann["area"] = (
            meta["area"] if "area" in meta else self._area(poly, mrle, ann["bbox"], width, height)
        )
        ann.update(meta.get("extra", {}))
        kp_ann = None
        if kps is not None:
            pts, vis = kps["keypoints"], kps["keypoint_visibility"]
            flat = []
            for j, v in enumerate(vis):
                flat += [fmt(pts[2 * j]), fmt(pts[2 * j + 1]), int(v)]
            kmeta = kps["metadata"].get("coco", {})
            kp_ann = {
                **ann,
                "keypoints": flat,
                "num_keypoints": kmeta.get("num_keypoints", sum(1 for v in vis if v > 0)),
            }
            self.tally.ok("keypoints")
        instance = ann if (box is not None or poly is not None or mask is not None) else None
        return instance, kp_ann

    def _area(
        self,
        poly: dict[str, Any] | None,
        mrle: dict[str, Any] | None,
        bbox: list[float],
        width: int,
        height: int,
    ) -> float:
        if mrle is not None:
            return rle.area(**mrle)
        if poly is not None and width and height:
            parts = [[float(v) for v in p["exterior"]] for p in poly["polygon"]]
            return rle.area(height, width, rle.polygons(parts, height, width))
        return float(bbox[2]) * float(bbox[3])


def _extent(flat: list[float]) -> list[float | int]:
    if not flat:
        return [0, 0, 0, 0]
    xs, ys = flat[0::2], flat[1::2]
    return [fmt(min(xs)), fmt(min(ys)), fmt(max(xs) - min(xs)), fmt(max(ys) - min(ys))]


def _image_entry(data: VersionData, d: Datum, file_name: str) -> dict[str, Any]:
    entry = dict(d.metadata.get("coco") or {})
    width, height = data.size(d)
    entry.setdefault("width", width)
    entry.setdefault("height", height)
    entry["file_name"] = file_name
    return entry


def _order(d: Datum) -> tuple[int, Any]:
    i = (d.metadata.get("coco") or {}).get("id")
    return (0, i) if isinstance(i, int) else (1, d.datum_id)


def export_coco(
    lake: Lake,
    dataset: str,
    out_dir: str | Path,
    version: str = "latest",
    *,
    copy_images: bool = True,
    progress: ExportProgress | None = None,
) -> ExportResult:
    """Write a dataset version as COCO JSON files (one set per split) and its images.

    Args:
        lake: the lake. dataset, version: what to export (``latest`` or a tag work too).
        out_dir: a local folder: ``annotations/instances_<split>.json`` (and
            ``person_keypoints_<split>.json``, ``captions_<split>.json`` when the version has
            keypoints or captions), images under ``<split>/``.
        copy_images: also write the image files.
        progress: ``progress(stage, done, total)``.

    Returns:
        An :class:`ExportResult`; its warnings count what COCO cannot hold.
    """
    started = time.perf_counter()
    data = load_version(lake, dataset, version)
    out = Path(out_dir)
    tally = Tally()
    builder = _Builder(data, tally)
    top = data.handle.record.metadata.get("coco", {})
    by_split: dict[str, list[Datum]] = {}
    for d in data.datums.values():
        if d.image is None:
            tally.notes.append(f"datum {d.datum_id} has no image role, not exported")
            continue
        by_split.setdefault(split_name(d.split), []).append(d)
    files = images = 0
    for split, datums in sorted(by_split.items()):
        datums.sort(key=_order)
        names = unique_names([data.file_name(d) for d in datums], tally)
        entries = [_image_entry(data, d, n) for d, n in zip(datums, names, strict=True)]
        _assign_ids(entries)
        instances, keypoints, captions = [], [], []
        pairs = []
        for d, entry in zip(datums, entries, strict=True):
            where = entry["file_name"]
            for rec in d.records:
                if rec["kind"] == "caption":
                    captions.append(
                        {
                            "image_id": entry["id"],
                            "id": rec["metadata"].get("coco", {}).get("id"),
                            "caption": rec["text"],
                        }
                    )
                    tally.ok("caption")
            for group in objects([r for r in d.records if r["kind"] != "caption"]):
                inst, kp = builder.annotation(group, entry["width"], entry["height"], where)
                for ann in (inst, kp):
                    if ann is not None:
                        ann["image_id"] = entry["id"]
                if inst is not None:
                    instances.append(inst)
                if kp is not None:
                    keypoints.append(kp)
                    pairs.append((inst, kp))
        _assign_ids(instances)
        alone = []
        for inst, kp in pairs:  # an object keeps one id in both files
            if inst is not None:
                kp["id"] = inst["id"]
            else:
                alone.append(kp)
        _assign_ids([*instances, *alone])
        docs = []
        if instances or "instances" in top or not (keypoints or captions):
            docs.append(
                (
                    "instances",
                    {
                        **top.get("instances", {}),
                        "images": entries,
                        "annotations": instances,
                        "categories": builder.categories,
                    },
                )
            )
        if keypoints or "person_keypoints" in top:
            docs.append(
                (
                    "person_keypoints",
                    {
                        **top.get("person_keypoints", {}),
                        "images": entries,
                        "annotations": keypoints,
                        "categories": builder.keypoint_categories(
                            {k["category_id"] for k in keypoints}, bool(keypoints)
                        ),
                    },
                )
            )
        if captions or "captions" in top:
            _assign_ids(captions)
            docs.append(
                (
                    "captions",
                    {**top.get("captions", {}), "images": entries, "annotations": captions},
                )
            )
        for role, doc in docs:
            path = out / "annotations" / f"{role}_{split}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(doc))
            files += 1
        if copy_images:
            ids = [d.image for d in datums]
            target = dict(zip(ids, names, strict=True))
            for aid, payload in data.payloads([a for a in ids if a is not None]):
                write_bytes(out / split / target[aid], payload)
                images += 1
                if progress is not None:
                    progress("write", images, len(data.datums))
    if data.orphans:
        tally.notes.append(f"{data.orphans} records on assets outside the datums' roles")
    return tally.result("coco", data.handle.ref, out, images, files + images, started)
