"""Pascal VOC 2012 importer: JPEGImages, Annotations XML, SegmentationClass/Object palette PNGs.

Conventions (those of the official devkit):

* splits come from ``ImageSets/Segmentation/<split>.txt`` and ``ImageSets/Main/<split>.txt``
  (their union when both exist);
* boxes: VOC coordinates are 1-based pixel indices, inclusive; lakecore boxes are 0-based
  continuous ``(x, y, w, h)``: ``x = xmin - 1``, ``w = xmax - xmin + 1`` (and back on export);
* ``SegmentationClass`` pixels hold the class index (0 background, 1..20 the classes, 255 void);
  ``SegmentationObject`` pixels hold the index of the object in the XML (1-based), 255 void.
  Both PNGs are stored unchanged as ``mask`` assets (datum roles ``segmentation_class`` and
  ``segmentation_object``), with one ``mask`` record per value present
  (``mask_asset_id`` + ``mask_value``);
* the XML content the records do not hold (``folder``, ``source``, ``size``, ``parts``, ...) is
  kept in the datum and record metadata, so an export writes the same XML content back.
"""

from __future__ import annotations

import tarfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from lakecore.errors import IngestError
from lakecore.importers._common import (
    ImportProgress,
    ImportSummary,
    Issues,
    Item,
    Plan,
    RecordRows,
    check_split_name,
    clip_box,
    image_info,
    schema_attributes,
    tick,
    write_plan,
)
from lakecore.importers._xml import to_node

if TYPE_CHECKING:
    from lakecore.lake import Lake

__all__ = ["VOC2012_URL", "VOC_CLASSES", "import_pascal_voc"]

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
"""The 20 VOC classes; class index ``i + 1`` in SegmentationClass PNGs (0 is background)."""

VOC2012_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
VOID = 255
BACKGROUND = 0
FLAGS = ("difficult", "truncated", "occluded")
ROLES = {"SegmentationClass": "segmentation_class", "SegmentationObject": "segmentation_object"}
_TRUE, _FALSE = {"1", "true", "yes"}, {"0", "false", "no", ""}


def find_root(root_dir: Path) -> Path | None:
    """The ``VOC2012`` folder under ``root_dir`` (``VOCdevkit/VOC2012``, ``VOC2012`` or itself)."""
    for cand in (root_dir / "VOCdevkit" / "VOC2012", root_dir / "VOC2012", root_dir):
        if (cand / "JPEGImages").is_dir():
            return cand
    return None


def download(
    root_dir: Path, url: str = VOC2012_URL, progress: ImportProgress | None = None
) -> Path:
    """Fetch and extract the VOC 2012 trainval tarball into ``root_dir`` (fsspec HTTP)."""
    import fsspec

    root_dir.mkdir(parents=True, exist_ok=True)
    tar = root_dir / url.rstrip("/").rsplit("/", 1)[-1]
    if not tar.is_file():
        part = tar.with_name(tar.name + ".part")
        try:
            with fsspec.open(url, "rb") as src, part.open("wb") as dst:
                total = getattr(src, "size", None)
                done = 0
                while chunk := src.read(8 << 20):
                    dst.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress("download", done, total)
        except Exception as exc:  # network stacks raise many kinds; all mean "no download"
            part.unlink(missing_ok=True)
            raise IngestError(
                f"cannot download Pascal VOC 2012 from {url}: {type(exc).__name__}: {exc}. "
                f"Without network access, download the tarball elsewhere and extract it into "
                f"{str(root_dir)!r} (then import without --download)",
                url=url,
            ) from None
        part.rename(tar)
    try:
        with tarfile.open(tar) as tf:
            tf.extractall(root_dir, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise IngestError(
            f"cannot extract {str(tar)!r}: {exc}; delete it and retry", path=str(tar)
        ) from None
    found = find_root(root_dir)
    if found is None:
        raise IngestError(f"{str(tar)!r} holds no VOC2012/JPEGImages folder", path=str(tar))
    return found


def _read_list(path: Path) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise IngestError(f"cannot read {str(path)!r}: {exc}", path=str(path)) from None
    return [line.split()[0] for line in lines if line.strip()]


def _split_ids(voc: Path, split: str, notes: list[str]) -> dict[str, list[str]]:
    """Image id -> the ImageSets folders listing it, for ``split``."""
    lists = {}
    for folder in ("Main", "Segmentation"):
        path = voc / "ImageSets" / folder / f"{split}.txt"
        if path.is_file():
            lists[folder] = _read_list(path)
    if not lists:
        have = sorted({p.stem for p in (voc / "ImageSets").glob("*/*.txt") if "_" not in p.stem})
        raise IngestError(
            f"no image list for split {split!r}: neither ImageSets/Main/{split}.txt nor "
            f"ImageSets/Segmentation/{split}.txt exists under {str(voc)!r}"
            + (f"; splits found: {have}" if have else ""),
            split=split,
        )
    out: dict[str, list[str]] = {}
    for folder, ids in lists.items():
        for image_id in ids:
            out.setdefault(image_id, []).append(folder)
    if len(lists) == 2:
        notes.append(
            f"split {split!r} is the union of ImageSets/Main/{split}.txt "
            f"({len(set(lists['Main']))} images) and ImageSets/Segmentation/{split}.txt "
            f"({len(set(lists['Segmentation']))} images): {len(out)} images"
        )
    else:
        (folder,) = lists
        notes.append(
            f"split {split!r} from ImageSets/{folder}/{split}.txt ({len(out)} images); "
            f"ImageSets/{'Segmentation' if folder == 'Main' else 'Main'}/{split}.txt "
            "does not exist"
        )
    return dict(sorted(out.items()))


def _flag(el: ET.Element | None, what: str) -> bool:
    text = (el.text or "").strip().lower() if el is not None else ""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise IngestError(f"{what}: expected 0 or 1, got {text!r}", where=what)


def _coord(obj: ET.Element, tag: str, what: str) -> float:
    el = obj.find(f"bndbox/{tag}")
    try:
        value = float((el.text or "").strip()) if el is not None else None
    except ValueError:
        value = None
    if value is None or not np.isfinite(value):
        raise IngestError(f"{what}: bndbox/{tag} is missing or not a number", where=what)
    return value


class _Parser:
    """Parses one VOC tree into a :class:`Plan`."""

    def __init__(self, voc: Path, classes: Sequence[str], issues: Issues) -> None:
        self.voc = voc
        self.classes = list(classes)
        self.index = {name: i + 1 for i, name in enumerate(self.classes)}
        self.issues = issues
        self.records = RecordRows()
        self.box_labels: dict[int, dict[int, str]] = {}

    def item(self, k: int, image_id: str, sets: list[str], split: str) -> Item:
        path = self.voc / "JPEGImages" / f"{image_id}.jpg"
        width, height, media = image_info(path, f"image {image_id} (split list)")
        meta: dict[str, Any] = {"file_name": path.name, "voc": {"id": image_id, "image_sets": sets}}
        item = Item(path, path.name, width, height, media, split, meta)
        xml = self.voc / "Annotations" / f"{image_id}.xml"
        if xml.is_file():
            self.annotation(k, item, xml)
        else:
            self.issues.add(
                "voc_no_xml",
                "images without an Annotations XML (no boxes)",
                f"Annotations/{image_id}.xml",
            )
        for folder, role in ROLES.items():
            png = self.voc / folder / f"{image_id}.png"
            if png.is_file():
                item.masks[role] = png
            elif "Segmentation" in sets:
                self.issues.add(
                    "voc_no_mask",
                    "images of a Segmentation list without a mask PNG",
                    f"{folder}/{image_id}.png",
                )
        if item.masks:
            self.masks(k, item, image_id)
        return item

    def annotation(self, k: int, item: Item, xml: Path) -> None:
        rel = f"Annotations/{xml.name}"
        try:
            root = ET.parse(xml).getroot()
        except (ET.ParseError, OSError) as exc:
            raise IngestError(f"{rel}: malformed XML ({exc})", path=str(xml)) from None
        if root.tag != "annotation":
            raise IngestError(
                f"{rel}: root element is <{root.tag}>, expected <annotation>", path=str(xml)
            )
        self.check_size(root, item, rel)
        objects = root.findall("object")
        for n, obj in enumerate(objects, start=1):
            self.box(k, item, obj, f"{rel} object {n}", n)
        kept = [to_node(c) if c.tag != "object" else {"t": "object"} for c in root]
        item.metadata["voc"]["xml"] = {
            "t": root.tag,
            "c": kept,
            **({"a": dict(root.attrib)} if root.attrib else {}),
        }

    def check_size(self, root: ET.Element, item: Item, rel: str) -> None:
        try:
            w = int(float((root.findtext("size/width") or "").strip()))
            h = int(float((root.findtext("size/height") or "").strip()))
        except ValueError:
            return
        if (w, h) != (item.width, item.height):
            self.issues.add(
                "voc_size_mismatch",
                "XML <size> differs from the JPEG (the JPEG's size is used)",
                f"{rel}: {w}x{h} vs {item.width}x{item.height}",
            )

    def box(self, k: int, item: Item, obj: ET.Element, what: str, n: int) -> None:
        name = (obj.findtext("name") or "").strip()
        if name not in self.index:
            raise IngestError(
                f"{what}: class {name!r} is not one of the {len(self.classes)} "
                f"classes ({', '.join(self.classes)}); pass classes=[...] for "
                "another label set",
                where=what,
                label=name,
            )
        xmin, ymin, xmax, ymax = (_coord(obj, t, what) for t in ("xmin", "ymin", "xmax", "ymax"))
        if xmax < xmin or ymax < ymin:
            raise IngestError(
                f"{what}: bndbox has xmax < xmin or ymax < ymin ({xmin}, {ymin}, {xmax}, {ymax})",
                where=what,
            )
        box = [xmin - 1.0, ymin - 1.0, xmax - xmin + 1.0, ymax - ymin + 1.0]
        box, clipped = clip_box(box, item.width, item.height)
        if clipped:
            self.issues.add("box_clipped", "boxes outside the image, clipped to it", what)
        attrs: dict[str, Any] = {f: _flag(obj.find(f), f"{what} <{f}>") for f in FLAGS}
        pose = (obj.findtext("pose") or "").strip()
        if pose:
            attrs["pose"] = pose
        self.box_labels.setdefault(k, {})[n] = name
        self.records.add(
            k,
            "bbox",
            what,
            label=name,
            label_id=self.index[name],
            bbox=box,
            attributes=attrs,
            metadata={"object": str(n), "voc": {"xml": to_node(obj)}},
        )

    def masks(self, k: int, item: Item, image_id: str) -> None:
        arrays = {}
        for role, png in item.masks.items():
            rel = f"{png.parent.name}/{png.name}"
            try:
                with Image.open(png) as im:
                    if im.mode not in ("P", "L"):
                        raise IngestError(
                            f"{rel}: mode {im.mode} PNG; VOC masks are palette "
                            "(P) or grayscale PNGs of class/object indices",
                            path=str(png),
                        )
                    arr = np.asarray(im)
            except (OSError, SyntaxError, ValueError) as exc:
                raise IngestError(f"{rel}: not a readable PNG ({exc})", path=str(png)) from None
            if (arr.shape[1], arr.shape[0]) != (item.width, item.height):
                raise IngestError(
                    f"{rel}: {arr.shape[1]}x{arr.shape[0]} mask for a "
                    f"{item.width}x{item.height} image",
                    path=str(png),
                )
            arrays[role] = arr
        cls = arrays.get("segmentation_class")
        if cls is not None:
            self.class_records(k, cls, f"SegmentationClass/{image_id}.png")
        obj = arrays.get("segmentation_object")
        if obj is not None:
            self.object_records(k, obj, cls, f"SegmentationObject/{image_id}.png")

    def class_records(self, k: int, arr: np.ndarray, rel: str) -> None:
        for v in np.unique(arr).tolist():
            if v in (BACKGROUND, VOID):
                continue
            if not 1 <= v <= len(self.classes):
                raise IngestError(
                    f"{rel}: pixel value {v} is not a class index (1.."
                    f"{len(self.classes)}, 0 background, 255 void)",
                    path=rel,
                )
            self.records.add(
                k,
                "mask",
                f"{rel} value {v}",
                label=self.classes[v - 1],
                label_id=v,
                mask_role="segmentation_class",
                mask_value=v,
                metadata={"semantic": True, "voc": {"mask": "class"}},
            )

    def object_records(self, k: int, arr: np.ndarray, cls: np.ndarray | None, rel: str) -> None:
        values = [v for v in np.unique(arr).tolist() if v not in (BACKGROUND, VOID)]
        if not values:
            return
        boxes = self.box_labels.get(k, {})
        majority: dict[int, int] = {}
        if cls is not None:
            joint = np.bincount(
                arr.astype(np.int64).ravel() * 256 + cls.ravel(), minlength=256 * 256
            ).reshape(256, 256)
            joint[:, [BACKGROUND, VOID]] = 0
            for v in values:
                if joint[v].any():
                    majority[v] = int(joint[v].argmax())
        for v in values:
            c = majority.get(v)
            if c is not None and 1 <= c <= len(self.classes):
                label = self.classes[c - 1]
            elif v in boxes:
                label = boxes[v]
            else:
                self.issues.add(
                    "voc_object_unlabelled",
                    "object mask values with no class (no class pixels and no XML "
                    "object of that index), not imported",
                    f"{rel} value {v}",
                )
                continue
            self.records.add(
                k,
                "mask",
                f"{rel} value {v}",
                label=label,
                label_id=self.index[label],
                mask_role="segmentation_object",
                mask_value=v,
                metadata={"object": str(v), "voc": {"mask": "object"}},
            )


def plan_pascal_voc(
    root_dir: str | Path,
    split: str = "train",
    dataset: str | None = None,
    version: str = "1.0.0",
    *,
    classes: Sequence[str] = VOC_CLASSES,
    download_url: str | None = None,
    progress: ImportProgress | None = None,
) -> Plan:
    """Parse and check a VOC tree into a :class:`Plan` (nothing is written)."""
    check_split_name(split, "Pascal VOC")
    root = Path(root_dir)
    voc = find_root(root)
    if voc is None and download_url is not None:
        voc = download(root, download_url, progress)
    elif voc is None:
        raise IngestError(
            f"no Pascal VOC tree under {str(root)!r}: expected VOCdevkit/VOC2012/JPEGImages or "
            "VOC2012/JPEGImages (pass download=True / --download to fetch it)",
            path=str(root),
        )
    notes: list[str] = []
    if download_url is not None and voc is not None:
        notes.append(f"using the VOC tree at {str(voc)!r}")
    ids = _split_ids(voc, split, notes)
    issues = Issues()
    parser = _Parser(voc, classes, issues)
    items = []
    for k, (image_id, sets) in enumerate(ids.items()):
        items.append(parser.item(k, image_id, sets, split))
        tick(progress, "parse", k + 1, len(ids))
    official = tuple(classes) == VOC_CLASSES
    labels = [{"name": c, "label_id": i + 1} for i, c in enumerate(classes)]
    schema = {
        "task_type": "segmentation" if any(it.masks for it in items) else "detection",
        "labels": labels,
        "allowed_kinds": ["bbox", "mask"],
        "attributes": schema_attributes(
            {"difficult": "bool", "truncated": "bool", "occluded": "bool", "pose": "string"}
        ),
        "metadata": {
            "format": "pascal_voc",
            "classes": "voc2012" if official else "custom",
            "mask_values": {
                "background": BACKGROUND,
                "void": VOID,
                "classes": "label_id (SegmentationClass)",
                "objects": "1-based object index (SegmentationObject)",
            },
            "box_convention": "x = xmin - 1, y = ymin - 1, w = xmax - xmin + 1, "
            "h = ymax - ymin + 1 (VOC: 1-based inclusive pixel indices)",
        },
    }
    name = dataset or f"pascal-voc-2012-{split}"
    return Plan(
        "pascal_voc",
        name,
        version,
        items,
        parser.records,
        schema,
        set_metadata={"root": str(voc), "split": split},
        version_metadata={"format": "pascal_voc", "voc": {"split": split}},
        message=f"Pascal VOC 2012 {split} from {voc}",
        issues=issues,
        notes=notes,
    )


def import_pascal_voc(
    lake: Lake,
    root_dir: str | Path,
    split: str = "train",
    dataset: str | None = None,
    version: str = "1.0.0",
    download: bool = False,
    progress: ImportProgress | None = None,
    *,
    classes: Sequence[str] = VOC_CLASSES,
    url: str = VOC2012_URL,
) -> ImportSummary:
    """Import one split of a Pascal VOC 2012 tree as a dataset version.

    Args:
        lake: the lake to write to.
        root_dir: a folder holding ``VOCdevkit/VOC2012`` or ``VOC2012`` (or the ``VOC2012``
            folder itself).
        split: the image list(s) to import: ``ImageSets/{Main,Segmentation}/<split>.txt``.
        dataset: dataset name (default ``pascal-voc-2012-<split>``).
        version: dataset version to commit (default ``1.0.0``).
        download: fetch and extract the official trainval tarball from ``url`` when no tree
            exists under ``root_dir`` (an existing tree is re-used).
        progress: ``progress(stage, done, total)``.
        classes: the label set (default the 20 VOC classes, in class-index order).

    Returns:
        An :class:`ImportSummary` (counts, warnings, notes, the dataset ref).

    Raises:
        IngestError: the tree is missing or malformed (the message names the file); nothing
            is written.
        AlreadyExistsError: the dataset version exists already; nothing is written.
    """
    started = time.perf_counter()
    plan = plan_pascal_voc(
        root_dir,
        split,
        dataset,
        version,
        classes=classes,
        download_url=url if download else None,
        progress=progress,
    )
    return write_plan(lake, plan, progress, started)
