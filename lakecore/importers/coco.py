"""COCO importer: instances (boxes, polygons, RLE masks, crowds), person keypoints, captions.

One COCO annotation becomes several records sharing ``metadata.object`` (the COCO id): a
``bbox`` record, a ``polygon`` record (one part per COCO polygon) or a ``mask`` record
(``mask_rle``: COCO compressed RLE; uncompressed crowd RLE is compressed with
``pycocotools.mask``), and a ``keypoints`` record (from the keypoints file, with visibility).
``iscrowd`` is an attribute; the COCO ``id`` and ``area`` (and any other keys) are kept in
``metadata.coco``. Captions become ``caption`` records. Categories become the schema's labels
(``label_id`` = category id, supercategory kept); keypoint names and the skeleton (made 0-based)
go into the schema. Each image is an ``image`` asset and a datum; its COCO entry is kept in the
datum metadata, the files' ``info``/``licenses`` in the dataset version metadata.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakecore.errors import IngestError
from lakecore.importers import _rle as rle
from lakecore.importers._common import (
    ImportProgress,
    ImportSummary,
    Issues,
    Item,
    Plan,
    RecordRows,
    check_split_name,
    clip_box,
    finite,
    image_info,
    schema_attributes,
    tick,
    write_plan,
)

if TYPE_CHECKING:
    from lakecore.lake import Lake

__all__ = ["import_coco", "plan_coco"]

_OBJECT_KEYS = {
    "id",
    "image_id",
    "category_id",
    "bbox",
    "segmentation",
    "area",
    "iscrowd",
    "keypoints",
    "num_keypoints",
}
_TOP_SKIP = {"images", "annotations", "categories"}


def _load(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise IngestError(f"annotation file {str(path)!r} does not exist", path=str(path)) from None
    except (OSError, ValueError) as exc:
        raise IngestError(f"{path.name}: not valid JSON ({exc})", path=str(path)) from None
    if not isinstance(doc, dict):
        raise IngestError(
            f"{path.name}: expected a JSON object with images/annotations", path=str(path)
        )
    for key in ("images", "annotations"):
        if not isinstance(doc.get(key), list):
            raise IngestError(f"{path.name}: missing the {key!r} list", path=str(path))
    return doc


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise IngestError(f"{what} must be an integer, got {value!r}", where=what)
    return value


class _Coco:
    """Parses up to three COCO files of one image set into a :class:`Plan`."""

    def __init__(self, images_dir: Path, split: str | None, issues: Issues) -> None:
        self.images_dir = images_dir
        self.split = split
        self.issues = issues
        self.records = RecordRows()
        self.images: dict[int, dict[str, Any]] = {}
        self.index: dict[int, int] = {}
        self.items: list[Item] = []
        self.categories: dict[int, dict[str, Any]] = {}
        self.keypoint_cats: dict[int, dict[str, Any]] = {}
        self.objects: set[Any] = set()
        self.kinds: set[str] = set()
        self.top: dict[str, dict[str, Any]] = {}

    # -- images and categories -----------------------------------------------------------------
    def add_images(self, doc: dict[str, Any], name: str) -> None:
        for j, img in enumerate(doc["images"]):
            what = f"{name} images[{j}]"
            if not isinstance(img, dict):
                raise IngestError(f"{what}: expected an object", where=what)
            image_id = _int(img.get("id"), f"{what} id")
            file_name = img.get("file_name")
            if not isinstance(file_name, str) or not file_name:
                raise IngestError(f"{what}: missing file_name", where=what)
            for key in ("width", "height"):
                if _int(img.get(key), f"{what} {key}") <= 0:
                    raise IngestError(f"{what}: {key} must be > 0", where=what)
            old = self.images.get(image_id)
            if old is not None:
                if old["file_name"] != file_name:
                    raise IngestError(
                        f"{what}: image id {image_id} is {file_name!r} here but "
                        f"{old['file_name']!r} in another file",
                        where=what,
                    )
                continue
            self.images[image_id] = img

    def add_categories(self, doc: dict[str, Any], name: str) -> None:
        cats = doc.get("categories", [])
        if not isinstance(cats, list):
            raise IngestError(f"{name}: categories must be a list", where=name)
        for j, cat in enumerate(cats):
            what = f"{name} categories[{j}]"
            if not isinstance(cat, dict) or not isinstance(cat.get("name"), str):
                raise IngestError(f"{what}: expected an object with id and name", where=what)
            cid = _int(cat.get("id"), f"{what} id")
            old = self.categories.get(cid)
            if old is not None and old["name"] != cat["name"]:
                raise IngestError(
                    f"{what}: category {cid} is {cat['name']!r} here but "
                    f"{old['name']!r} in another file",
                    where=what,
                )
            self.categories.setdefault(cid, cat)
            if cat.get("keypoints"):
                self.keypoint_cats[cid] = cat

    def build_items(self, progress: ImportProgress | None) -> None:
        total = len(self.images)
        for k, (image_id, img) in enumerate(self.images.items()):
            path = self.images_dir / img["file_name"]
            width, height, media = image_info(path, f"image id {image_id}")
            if (width, height) != (img["width"], img["height"]):
                self.issues.add(
                    "coco_size_mismatch",
                    "images whose file size differs from the JSON width/height "
                    "(the JSON size is used for the annotations)",
                    f"{img['file_name']}: {width}x{height} vs {img['width']}x{img['height']}",
                )
            self.index[image_id] = k
            self.items.append(
                Item(
                    path,
                    img["file_name"],
                    width,
                    height,
                    media,
                    self.split,
                    {"file_name": img["file_name"], "coco": img},
                )
            )
            tick(progress, "scan", k + 1, total)

    # -- annotations ---------------------------------------------------------------------------
    def _target(self, ann: Any, what: str) -> tuple[int, dict[str, Any], dict[str, Any]]:
        if not isinstance(ann, dict):
            raise IngestError(f"{what}: expected an object", where=what)
        image_id = ann.get("image_id")
        if (
            isinstance(image_id, bool)
            or not isinstance(image_id, int)
            or (image_id not in self.index)
        ):
            raise IngestError(
                f"{what}: image_id {image_id!r} is not in the images list", where=what
            )
        return self.index[image_id], self.images[image_id], ann

    def _category(self, ann: dict[str, Any], what: str) -> dict[str, Any]:
        cid = ann.get("category_id")
        cat = self.categories.get(cid) if isinstance(cid, int) else None
        if cat is None:
            raise IngestError(f"{what}: category_id {cid!r} is not in categories", where=what)
        return cat

    def instance(self, ann: dict[str, Any], what: str, k: int, img: dict[str, Any]) -> None:
        """Records of one object: bbox, polygon or RLE mask."""
        cat = self._category(ann, what)
        crowd = ann.get("iscrowd", 0)
        if crowd not in (0, 1) or isinstance(crowd, bool):
            raise IngestError(f"{what}: iscrowd must be 0 or 1, got {crowd!r}", where=what)
        meta = {"object": str(ann.get("id")), "coco": self._kept(ann)}
        common = {
            "label": cat["name"],
            "label_id": cat["id"],
            "attributes": {"iscrowd": bool(crowd)},
            "metadata": meta,
        }
        box = ann.get("bbox")
        if box is not None:
            if not (isinstance(box, list) and len(box) == 4 and finite(box)):
                raise IngestError(
                    f"{what}: bbox must be [x, y, width, height], got {box!r}", where=what
                )
            if box[2] < 0 or box[3] < 0:
                raise IngestError(f"{what}: bbox {box} has a negative width or height", where=what)
            clipped, changed = clip_box(box, img["width"], img["height"])
            if changed:
                self.issues.add("box_clipped", "boxes outside the image, clipped to it", what)
            self.records.add(k, "bbox", what, bbox=clipped, **common)
            self.kinds.add("bbox")
        seg = ann.get("segmentation")
        if isinstance(seg, list) and seg:
            parts = self._polygon(seg, what)
            if parts:
                self.records.add(k, "polygon", what, polygon=parts, **common)
                self.kinds.add("polygon")
        elif isinstance(seg, dict):
            rle = self._rle(seg, img, what)
            self.records.add(k, "mask", what, mask_rle=rle, **common)
            self.kinds.add("mask")
        elif seg not in (None, []):
            raise IngestError(
                f"{what}: segmentation must be a list of polygons or an RLE "
                f"object, got {type(seg).__name__}",
                where=what,
            )

    @staticmethod
    def _kept(ann: Mapping[str, Any]) -> dict[str, Any]:
        kept: dict[str, Any] = {"id": ann.get("id")}
        if "area" in ann:
            kept["area"] = ann["area"]
        extra = {k: v for k, v in ann.items() if k not in _OBJECT_KEYS}
        if extra:
            kept["extra"] = extra
        return kept

    def _polygon(self, seg: list[Any], what: str) -> list[dict[str, Any]]:
        parts = []
        for j, ring in enumerate(seg):
            if not isinstance(ring, list) or not finite(ring):
                raise IngestError(
                    f"{what}: segmentation[{j}] must be a flat list of numbers", where=what
                )
            if len(ring) % 2:
                raise IngestError(
                    f"{what}: segmentation[{j}] has an odd number of coordinates ({len(ring)})",
                    where=what,
                )
            if len(ring) < 6:
                self.issues.add(
                    "coco_degenerate_polygon",
                    "polygon parts with fewer than 3 points, not imported",
                    f"{what} segmentation[{j}]",
                )
                continue
            parts.append({"exterior": [float(v) for v in ring], "holes": []})
        return parts

    def _rle(self, seg: dict[str, Any], img: dict[str, Any], what: str) -> dict[str, Any]:
        size, counts = seg.get("size"), seg.get("counts")
        h, w = img["height"], img["width"]
        if size != [h, w]:
            raise IngestError(
                f"{what}: RLE size {size!r} differs from the image size [{h}, {w}] (height, width)",
                where=what,
            )
        if isinstance(counts, list):
            if (
                not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts)
                or sum(counts) != h * w
            ):
                raise IngestError(
                    f"{what}: bad RLE: uncompressed counts must be non-negative "
                    f"integers summing to height*width ({h * w})",
                    where=what,
                )
            text = rle.compress(counts, h, w)
        elif isinstance(counts, str) and counts:
            text = counts
            if any(not 48 <= ord(ch) <= 111 for ch in text):
                raise IngestError(
                    f"{what}: bad RLE: compressed counts must use the characters '0'..'o'",
                    where=what,
                )
            try:
                rle.decode(h, w, text)
            except ValueError as exc:
                raise IngestError(f"{what}: bad RLE ({exc})", where=what) from None
        else:
            raise IngestError(
                f"{what}: bad RLE: counts must be a list of run lengths or a compressed string",
                where=what,
            )
        return {"height": h, "width": w, "counts": text}

    def keypoints(self, ann: dict[str, Any], what: str, k: int, img: dict[str, Any]) -> None:
        cat = self._category(ann, what)
        names = self.keypoint_cats.get(cat["id"], {}).get("keypoints") or []
        if not names:
            raise IngestError(f"{what}: category {cat['name']!r} has no keypoints list", where=what)
        values = ann.get("keypoints")
        if not (isinstance(values, list) and finite(values)) or len(values) != 3 * len(names):
            raise IngestError(
                f"{what}: keypoints must hold {3 * len(names)} numbers (x, y, v "
                f"for each of the {len(names)} keypoints of {cat['name']!r})",
                where=what,
            )
        vis = values[2::3]
        if any(v not in (0, 1, 2) for v in vis):
            raise IngestError(f"{what}: keypoint visibility must be 0, 1 or 2", where=what)
        coords = [float(v) for pair in zip(values[0::3], values[1::3], strict=True) for v in pair]
        meta: dict[str, Any] = {"object": str(ann.get("id")), "coco": self._kept(ann)}
        given = ann.get("num_keypoints")
        if given is not None and given != sum(1 for v in vis if v > 0):
            meta["coco"]["num_keypoints"] = given
        crowd = ann.get("iscrowd", 0)
        self.records.add(
            k,
            "keypoints",
            what,
            label=cat["name"],
            label_id=cat["id"],
            keypoints=coords,
            keypoint_visibility=[int(v) for v in vis],
            attributes={"iscrowd": bool(crowd)},
            metadata=meta,
        )
        self.kinds.add("keypoints")

    def caption(self, ann: dict[str, Any], what: str, k: int) -> None:
        text = ann.get("caption")
        if not isinstance(text, str):
            raise IngestError(f"{what}: caption must be a string", where=what)
        if not text.strip():
            self.issues.add("coco_empty_caption", "empty captions, not imported", what)
            return
        self.records.add(k, "caption", what, text=text, metadata={"coco": {"id": ann.get("id")}})
        self.kinds.add("caption")

    def add_annotations(
        self, doc: dict[str, Any], name: str, role: str, progress: ImportProgress | None
    ) -> None:
        anns = doc["annotations"]
        for j, raw in enumerate(anns):
            label = raw.get("id", f"#{j}") if isinstance(raw, dict) else f"#{j}"
            what = f"{name} annotation id {label}"
            k, img, ann = self._target(raw, what)
            if role == "captions":
                self.caption(ann, what, k)
            elif role == "instances":
                self.instance(ann, what, k, img)
                self.objects.add(ann.get("id"))
            else:
                if ann.get("id") not in self.objects:
                    self.instance(ann, what, k, img)
                self.keypoints(ann, what, k, img)
            tick(progress, "parse", j + 1, len(anns))

    # -- schema --------------------------------------------------------------------------------
    def schema(self) -> dict[str, Any]:
        names: dict[str, int] = {}
        for cat in self.categories.values():
            if cat["name"] in names:
                raise IngestError(
                    f"categories {names[cat['name']]} and {cat['id']} are both "
                    f"named {cat['name']!r}",
                    label=cat["name"],
                )
            names[cat["name"]] = cat["id"]
        labels = [
            {
                "name": c["name"],
                "label_id": c["id"],
                **({"supercategory": c["supercategory"]} if c.get("supercategory") else {}),
            }
            for c in sorted(self.categories.values(), key=lambda c: c["id"])
        ]
        kp_names: list[str] = []
        skeleton: list[tuple[int, int]] = []
        if self.keypoint_cats:
            lists = {tuple(c["keypoints"]) for c in self.keypoint_cats.values()}
            if len(lists) > 1:
                raise IngestError(
                    "categories with different keypoint lists cannot share one "
                    "annotation schema; import them separately"
                )
            cat = next(iter(self.keypoint_cats.values()))
            kp_names = list(cat["keypoints"])
            skeleton = [(int(a) - 1, int(b) - 1) for a, b in cat.get("skeleton") or []]
        kinds = sorted(self.kinds) or ["bbox"]
        if "polygon" in kinds or "mask" in kinds:
            task = "instance_segmentation"
        elif "keypoints" in kinds:
            task = "keypoints"
        elif "bbox" in kinds:
            task = "detection"
        else:
            task = "captioning"
        return {
            "task_type": task,
            "labels": labels,
            "allowed_kinds": kinds,
            "attributes": schema_attributes({"iscrowd": "bool"}),
            "keypoint_names": kp_names,
            "skeleton": skeleton,
            "metadata": {
                "format": "coco",
                "keypoint_categories": sorted(self.keypoint_cats),
                "skeleton": "0-based (COCO files are 1-based)",
            },
        }


def _split_from(files: list[Path]) -> str | None:
    for f in files:
        stem = f.stem
        for prefix in ("instances_", "person_keypoints_", "captions_"):
            if stem.startswith(prefix) and re.fullmatch(
                r"[A-Za-z0-9_.\-]{1,64}", stem[len(prefix) :]
            ):
                return stem[len(prefix) :]
    return None


def plan_coco(
    images: str | Path,
    annotations: str | Path | None = None,
    *,
    keypoints: str | Path | None = None,
    captions: str | Path | None = None,
    dataset: str,
    version: str = "1.0.0",
    split: str | None = None,
    progress: ImportProgress | None = None,
) -> Plan:
    """Parse and check COCO files into a :class:`Plan` (nothing is written)."""
    given = [
        (role, Path(p))
        for role, p in (
            ("instances", annotations),
            ("person_keypoints", keypoints),
            ("captions", captions),
        )
        if p is not None
    ]
    if not given:
        raise IngestError(
            "give at least one COCO file: annotations (instances), keypoints or captions"
        )
    images_dir = Path(images)
    if not images_dir.is_dir():
        raise IngestError(f"images folder {str(images_dir)!r} does not exist", path=str(images_dir))
    split = check_split_name(
        split if split is not None else _split_from([p for _, p in given]), "COCO"
    )
    issues = Issues()
    coco = _Coco(images_dir, split, issues)
    docs = [(role, path, _load(path)) for role, path in given]
    for role, path, doc in docs:
        coco.add_images(doc, path.name)
        if role != "captions":
            coco.add_categories(doc, path.name)
        top = {k: v for k, v in doc.items() if k not in _TOP_SKIP}
        if role == "captions" and "categories" in doc:
            top["categories"] = doc["categories"]
        coco.top[role] = top
    coco.build_items(progress)
    for role, path, doc in docs:
        coco.add_annotations(doc, path.name, role, progress)
    notes = [
        f"split {split!r} (from the file name; pass split= to choose)"
        if split
        else "no split (pass split= to set one)"
    ]
    rows = coco.records
    with_objects = {
        i for i, kind in zip(rows.item, rows.cols["kind"], strict=True) if kind != "caption"
    }
    if len(coco.items) - len(with_objects):
        notes.append(
            f"{len(coco.items) - len(with_objects)} images without object "
            "annotations (datums without bbox/polygon/mask/keypoints records)"
        )
    return Plan(
        "coco",
        dataset,
        version,
        coco.items,
        coco.records,
        coco.schema(),
        set_metadata={"files": [str(p) for _, p in given]},
        version_metadata={"format": "coco", "coco": coco.top},
        message=f"COCO {', '.join(p.name for _, p in given)}",
        issues=issues,
        notes=notes,
    )


def import_coco(
    lake: Lake,
    images: str | Path,
    annotations: str | Path | None = None,
    *,
    keypoints: str | Path | None = None,
    captions: str | Path | None = None,
    dataset: str,
    version: str = "1.0.0",
    split: str | None = None,
    progress: ImportProgress | None = None,
) -> ImportSummary:
    """Import COCO files (instances and/or person keypoints and/or captions) of one image set.

    Args:
        lake: the lake to write to.
        images: the folder holding the images (``file_name`` is relative to it).
        annotations: ``instances_*.json`` (boxes, polygons, RLE masks, crowds).
        keypoints: ``person_keypoints_*.json``. captions: ``captions_*.json``.
        dataset, version: the dataset version to commit.
        split: the datums' split (default: from the file name, ``instances_val2017`` ->
            ``val2017``).
        progress: ``progress(stage, done, total)``.

    Raises:
        IngestError: malformed input (the message names the file and annotation); nothing
            is written.
        AlreadyExistsError: the dataset version exists already; nothing is written.
    """
    started = time.perf_counter()
    plan = plan_coco(
        images,
        annotations,
        keypoints=keypoints,
        captions=captions,
        dataset=dataset,
        version=version,
        split=split,
        progress=progress,
    )
    return write_plan(lake, plan, progress, started)
