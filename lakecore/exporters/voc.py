"""Pascal VOC exporter: a dataset version -> ``VOCdevkit/VOC2012`` (JPEGImages, Annotations,
SegmentationClass, SegmentationObject, ImageSets/{Main,Segmentation}).

Boxes become ``<object>`` elements (1-based inclusive coordinates, see
:mod:`lakecore.importers.voc`); the XML content an import kept (``source``, ``size``,
``parts``, empty tags, the original coordinate text while the box is unchanged) is written
back, so a VOC tree round-trips with the same XML content and byte-identical PNGs. Mask PNGs
are the stored assets of roles ``segmentation_class``/``segmentation_object``, written
unchanged. Everything else (polygons, RLE masks, keypoints, captions, ...) is reported in the
result's warnings.
"""

from __future__ import annotations

import copy
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakecore.exporters._common import (
    Datum,
    ExportProgress,
    ExportResult,
    Tally,
    VersionData,
    fmt,
    load_version,
    split_name,
    write_bytes,
)
from lakecore.importers._xml import Node, from_node
from lakecore.importers.voc import FLAGS, ROLES

if TYPE_CHECKING:
    from lakecore.lake import Lake

__all__ = ["export_pascal_voc"]

_FOLDER = {role: folder for folder, role in ROLES.items()}
_TOL = 1e-3


def _child(node: Node, tag: str) -> Node | None:
    return next((c for c in node.get("c", []) if c["t"] == tag), None)


def _set(node: Node, tag: str, text: str | None) -> None:
    child = _child(node, tag)
    if child is None:
        child = {"t": tag}
        node.setdefault("c", []).append(child)
    if text is None:
        child.pop("x", None)
    else:
        child["x"] = text


def _flag_text(text: str | None) -> bool:
    return (text or "").strip().lower() in {"1", "true", "yes"}


def _num(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def object_node(rec: dict[str, Any]) -> Node:
    """The ``<object>`` of a bbox record: the imported element, updated to the record."""
    kept = rec["metadata"].get("voc", {}).get("xml")
    attrs = rec["attributes"]
    x, y, w, h = (float(v) for v in rec["bbox"])
    corners = {"xmin": x + 1, "ymin": y + 1, "xmax": x + w, "ymax": y + h}
    if kept is None:
        node: Node = {"t": "object", "c": [{"t": "name", "x": rec["label"]}]}
        if attrs.get("pose"):
            node["c"].append({"t": "pose", "x": str(attrs["pose"])})
        for flag in ("truncated", "occluded"):
            if flag in attrs:
                node["c"].append({"t": flag, "x": "1" if attrs[flag] else "0"})
        node["c"].append(
            {"t": "bndbox", "c": [{"t": t, "x": str(fmt(v))} for t, v in corners.items()]}
        )
        node["c"].append({"t": "difficult", "x": "1" if attrs.get("difficult") else "0"})
        return node
    node = copy.deepcopy(kept)
    if (_child(node, "name") or {}).get("x") != rec["label"]:
        _set(node, "name", rec["label"])
    for flag in FLAGS:
        value, child = attrs.get(flag), _child(node, flag)
        if child is None:
            if value:
                _set(node, flag, "1")
        elif value is not None and _flag_text(child.get("x")) != bool(value):
            child["x"] = "1" if value else "0"
    pose, child = attrs.get("pose"), _child(node, "pose")
    if child is None:
        if pose:
            _set(node, "pose", str(pose))
    elif (child.get("x") or None) != (pose or None):
        _set(node, "pose", str(pose) if pose else None)
    box = _child(node, "bndbox")
    if box is None:
        box = {"t": "bndbox"}
        node.setdefault("c", []).append(box)
    for tag, value in corners.items():
        old = _num((_child(box, tag) or {}).get("x"))
        if old is None or abs(old - value) > _TOL:
            _set(box, tag, str(fmt(value)))
    return node


def _order(rec: dict[str, Any]) -> tuple[int, str]:
    key = rec["metadata"].get("object")
    try:
        return int(key), ""
    except (TypeError, ValueError):
        return 1 << 30, str(rec["annotation_id"])


class _Writer:
    def __init__(self, data: VersionData, voc: Path, tally: Tally) -> None:
        self.data, self.voc, self.tally = data, voc, tally
        self.lists: dict[tuple[str, str], list[str]] = {}
        self.files = 0

    def image_id(self, d: Datum) -> str:
        voc = d.metadata.get("voc", {})
        return str(voc.get("id") or Path(self.data.file_name(d)).stem)

    def image_file(self, d: Datum, image_id: str) -> str:
        """The JPEGImages file name of a datum's image."""
        return f"{image_id}{Path(self.data.file_name(d)).suffix or '.jpg'}"

    def annotation(self, d: Datum, image_id: str, boxes: list[dict[str, Any]]) -> Node | None:
        voc = d.metadata.get("voc")
        objs = [object_node(r) for r in sorted(boxes, key=_order)]
        kept = voc.get("xml") if isinstance(voc, dict) else None
        if kept is None:
            if isinstance(voc, dict) and not objs:
                return None  # imported without an XML and still without boxes
            width, height = self.data.size(d)
            masks = any(r in d.roles for r in _FOLDER)
            return {
                "t": "annotation",
                "c": [
                    {"t": "folder", "x": "VOC2012"},
                    {"t": "filename", "x": self.image_file(d, image_id)},
                    {
                        "t": "size",
                        "c": [
                            {"t": "width", "x": str(width)},
                            {"t": "height", "x": str(height)},
                            {"t": "depth", "x": "3"},
                        ],
                    },
                    {"t": "segmented", "x": "1" if masks else "0"},
                    *objs,
                ],
            }
        root: Node = copy.deepcopy(kept)
        children = []
        for child in root.get("c", []):
            if child["t"] == "object" and "c" not in child:  # where an object was
                if objs:
                    children.append(objs.pop(0))
            else:
                children.append(child)
        root["c"] = children + objs
        return root

    def datum(self, d: Datum) -> None:
        image_id = self.image_id(d)
        boxes = []
        for rec in d.records:
            kind = rec["kind"]
            if kind == "bbox":
                boxes.append(rec)
                self.tally.ok(kind)
            elif (
                kind == "mask"
                and rec["mask_asset_id"] is not None
                and rec["mask_asset_id"] in (d.roles.get(r) for r in _FOLDER)
            ):
                self.tally.ok(kind)  # the mask PNG is written as stored
            elif kind == "mask":
                self.tally.skip(
                    kind,
                    "voc_mask",
                    "mask records not stored as a VOC "
                    "segmentation PNG (RLE or other masks): not exported",
                    image_id,
                )
            else:
                self.tally.skip(
                    kind,
                    f"voc_{kind}",
                    f"{kind} records: VOC holds boxes and segmentation PNGs only, not exported",
                    image_id,
                )
        node = self.annotation(d, image_id, boxes)
        sets = d.metadata.get("voc", {}).get("image_sets")
        if node is not None:
            root = from_node(node)
            ET.indent(root, space="\t")
            path = self.voc / "Annotations" / f"{image_id}.xml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(ET.tostring(root, encoding="unicode") + "\n", encoding="utf-8")
            self.files += 1
        masks = [r for r in _FOLDER if r in d.roles]
        for role in masks:
            write_bytes(self.voc / _FOLDER[role] / f"{image_id}.png", self.data.read(d.roles[role]))
            self.files += 1
        if sets is None:
            sets = (["Main"] if node is not None else []) + (["Segmentation"] if masks else [])
        for folder in sets:
            self.lists.setdefault((folder, split_name(d.split)), []).append(image_id)


def export_pascal_voc(
    lake: Lake,
    dataset: str,
    out_dir: str | Path,
    version: str = "latest",
    *,
    progress: ExportProgress | None = None,
) -> ExportResult:
    """Write a dataset version as a Pascal VOC tree under ``out_dir/VOCdevkit/VOC2012``.

    Args:
        lake: the lake. dataset, version: what to export (``latest`` or a tag work too).
        out_dir: a local folder (created).
        progress: ``progress(stage, done, total)``.

    Returns:
        An :class:`ExportResult`; its warnings count what VOC cannot hold.
    """
    started = time.perf_counter()
    data = load_version(lake, dataset, version)
    out = Path(out_dir)
    voc = out / "VOCdevkit" / "VOC2012"
    tally = Tally()
    writer = _Writer(data, voc, tally)
    datums = list(data.datums.values())
    images = [(d, writer.image_id(d)) for d in datums if d.image]
    ids: dict[str, str] = {
        d.image: writer.image_file(d, image_id) for d, image_id in images if d.image
    }
    for k, (aid, payload) in enumerate(data.payloads(list(ids))):
        write_bytes(voc / "JPEGImages" / ids[aid], payload)
        if progress is not None:
            progress("write", k + 1, len(ids))
    for d in datums:
        writer.datum(d)
    for (folder, split), names in sorted(writer.lists.items()):
        path = voc / "ImageSets" / folder / f"{split}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{n}\n" for n in sorted(set(names))))
        writer.files += 1
    if data.orphans:
        tally.notes.append(f"{data.orphans} records on assets outside the datums' roles")
    return tally.result(
        "pascal_voc", data.handle.ref, out, len(ids), writer.files + len(ids), started
    )
