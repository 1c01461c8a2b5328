"""YOLO (ultralytics) importer: a data yaml, images and ``labels/*.txt`` (detection and
segmentation lines).

The yaml's ``path`` (relative to the yaml, default its folder) is the root; ``train``/``val``/
``test`` are image folders, image-list ``.txt`` files or lists of those; ``names`` is a list or
``{index: name}``. A label file is the image path with the last ``/images/`` replaced by
``/labels/`` and the suffix by ``.txt``. A line ``c cx cy w h`` is a box, ``c x1 y1 x2 y2 ...``
(3 points or more) a polygon; coordinates are normalized and converted to pixels with the image
size (and back on export). An image without a label file (or with an empty one) is a negative:
a datum without records. ``label_id`` is the class index.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    tick,
    write_plan,
)

if TYPE_CHECKING:
    from lakecore.lake import Lake

__all__ = ["IMAGE_SUFFIXES", "import_yolo", "label_path", "plan_yolo"]

IMAGE_SUFFIXES = {
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".webp",
    ".tif",
    ".tiff",
    ".gif",
    ".dng",
    ".mpo",
    ".pfm",
    ".heic",
}
SPLIT_KEYS = ("train", "val", "test")


def label_path(image: Path) -> Path:
    """The label file of an image (ultralytics' rule: the last ``/images/`` of the path
    becomes ``/labels/``, the suffix ``.txt``)."""
    text = image.as_posix()
    head, sep, tail = text.rpartition("/images/")
    return Path(f"{head}/labels/{tail}" if sep else text).with_suffix(".txt")


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise IngestError(f"data yaml {str(path)!r} does not exist", path=str(path)) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise IngestError(f"{path.name}: not valid YAML ({exc})", path=str(path)) from None
    if not isinstance(doc, dict):
        raise IngestError(
            f"{path.name}: expected a mapping with names and train/val", path=str(path)
        )
    return doc


def _names(doc: dict[str, Any], what: str) -> list[str]:
    names = doc.get("names")
    if isinstance(names, dict):
        keys = sorted(names)
        if keys != list(range(len(keys))):
            raise IngestError(f"{what}: names keys must be 0..{len(keys) - 1}", where=what)
        names = [names[k] for k in keys]
    if (
        not isinstance(names, list)
        or not names
        or not all(isinstance(n, str) and n.strip() for n in names)
    ):
        raise IngestError(
            f"{what}: names must be a non-empty list (or index -> name map) of class names",
            where=what,
        )
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise IngestError(f"{what}: class names repeat: {dup}", where=what)
    nc = doc.get("nc")
    if nc is not None and nc != len(names):
        raise IngestError(f"{what}: nc is {nc} but names lists {len(names)} classes", where=what)
    if doc.get("kpt_shape") is not None:
        raise IngestError(f"{what}: YOLO pose datasets (kpt_shape) are not supported", where=what)
    return names


def _images(root: Path, entry: Any, what: str) -> list[Path]:
    entries = entry if isinstance(entry, list) else [entry]
    out: list[Path] = []
    for e in entries:
        if not isinstance(e, str):
            raise IngestError(f"{what}: expected a path, got {e!r}", where=what)
        p = Path(e) if Path(e).is_absolute() else root / e
        if p.is_dir():
            out += sorted(
                f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()
            )
        elif p.is_file() and p.suffix == ".txt":
            for line in p.read_text().splitlines():
                line = line.strip()
                if line:
                    q = Path(line)
                    out.append(q if q.is_absolute() else (p.parent / q).resolve())
        else:
            raise IngestError(
                f"{what}: {str(p)!r} is neither an image folder nor an image list (.txt)",
                where=what,
                path=str(p),
            )
    return out


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


class _Yolo:
    def __init__(self, root: Path, names: list[str], issues: Issues) -> None:
        self.root = root
        self.names = names
        self.issues = issues
        self.records = RecordRows()
        self.kinds: set[str] = set()
        self.negatives = 0

    def labels(self, k: int, item: Item, label: Path, rel: str) -> None:
        try:
            text = label.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise IngestError(f"{rel}: cannot read ({exc})", path=str(label)) from None
        w, h = item.width, item.height
        lines = 0
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            what = f"{rel}:{n}"
            tokens = line.split()
            try:
                values = [float(t) for t in tokens[1:]]
                cls = int(tokens[0])
            except ValueError:
                raise IngestError(
                    f"{what}: expected 'class x y ...' numbers, got {line!r}", where=what
                ) from None
            if not 0 <= cls < len(self.names):
                raise IngestError(
                    f"{what}: class {cls} is not in names (0..{len(self.names) - 1})", where=what
                )
            if not all(math.isfinite(v) for v in values):
                raise IngestError(f"{what}: coordinates must be finite numbers", where=what)
            common: dict[str, Any] = {
                "label": self.names[cls],
                "label_id": cls,
                "metadata": {"object": str(n)},
            }
            if len(values) == 4:
                cx, cy, bw, bh = values
                if bw < 0 or bh < 0:
                    raise IngestError(f"{what}: negative box width or height", where=what)
                box = [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]
                box, clipped = clip_box(box, w, h)
                if clipped:
                    self.issues.add("box_clipped", "boxes outside the image, clipped to it", what)
                self.records.add(k, "bbox", what, bbox=box, **common)
                self.kinds.add("bbox")
            elif len(values) >= 6 and len(values) % 2 == 0:
                pts = [v * (w if i % 2 == 0 else h) for i, v in enumerate(values)]
                inside = [
                    min(max(v, 0.0), float(w if i % 2 == 0 else h)) for i, v in enumerate(pts)
                ]
                if any(abs(a - b) > 1e-3 for a, b in zip(inside, pts, strict=True)):
                    self.issues.add(
                        "polygon_clipped", "polygon points outside the image, clipped to it", what
                    )
                self.records.add(
                    k, "polygon", what, polygon=[{"exterior": inside, "holes": []}], **common
                )
                self.kinds.add("polygon")
            else:
                raise IngestError(
                    f"{what}: {len(tokens)} values: a box line has 5 "
                    "(class cx cy w h), a polygon line 1 + 2 per point "
                    "(3 points or more)",
                    where=what,
                )
            lines += 1
        if not lines:
            self.negatives += 1


def plan_yolo(
    data: str | Path,
    *,
    dataset: str,
    version: str = "1.0.0",
    splits: list[str] | None = None,
    progress: ImportProgress | None = None,
) -> Plan:
    """Parse and check a YOLO dataset into a :class:`Plan` (nothing is written)."""
    yaml_path = Path(data)
    doc = _load_yaml(yaml_path)
    names = _names(doc, yaml_path.name)
    root = Path(doc.get("path") or ".")
    root = root if root.is_absolute() else (yaml_path.parent / root)
    wanted = splits or [k for k in SPLIT_KEYS if doc.get(k)]
    if not wanted:
        raise IngestError(f"{yaml_path.name}: no train/val/test entry", path=str(yaml_path))
    issues = Issues()
    parser = _Yolo(root, names, issues)
    seen: dict[Path, str] = {}
    listed: list[tuple[Path, str]] = []
    for split in wanted:
        check_split_name(split, yaml_path.name)
        if not doc.get(split):
            raise IngestError(f"{yaml_path.name}: no {split!r} entry", split=split)
        for img in _images(root, doc[split], f"{yaml_path.name} {split}"):
            if img in seen:
                issues.add(
                    "yolo_duplicate_image",
                    "images listed in several splits (kept in the first)",
                    f"{_rel(img, root)} in {seen[img]} and {split}",
                )
                continue
            seen[img] = split
            listed.append((img, split))
    items = []
    missing = 0
    for k, (img, split) in enumerate(listed):
        rel = _rel(img, root)
        width, height, media = image_info(img, f"{yaml_path.name} {split}")
        label = label_path(img.absolute())
        lab_rel = _rel(label, root)
        meta = {"file_name": img.name, "yolo": {"image": rel, "label_file": label.is_file()}}
        item = Item(img, img.name, width, height, media, split, meta)
        if label.is_file():
            parser.labels(k, item, label, lab_rel)
        else:
            missing += 1
        items.append(item)
        tick(progress, "parse", k + 1, len(listed))
    notes = [f"splits {', '.join(wanted)} from {yaml_path.name}"]
    if missing or parser.negatives:
        notes.append(
            f"{missing + parser.negatives} negative images ({missing} without a label "
            f"file, {parser.negatives} with an empty one): datums without records"
        )
    kinds = sorted(parser.kinds) or ["bbox"]
    schema = {
        "task_type": "instance_segmentation" if "polygon" in kinds else "detection",
        "labels": [{"name": n, "label_id": i} for i, n in enumerate(names)],
        "allowed_kinds": kinds,
        "metadata": {"format": "yolo", "label_id": "class index"},
    }
    kept = {k: v for k, v in doc.items() if k not in ("path", "names", "nc")}
    return Plan(
        "yolo",
        dataset,
        version,
        items,
        parser.records,
        schema,
        set_metadata={"data": str(yaml_path)},
        version_metadata={"format": "yolo", "yolo": kept},
        message=f"YOLO {yaml_path.name}",
        issues=issues,
        notes=notes,
    )


def import_yolo(
    lake: Lake,
    data: str | Path,
    *,
    dataset: str,
    version: str = "1.0.0",
    splits: list[str] | None = None,
    progress: ImportProgress | None = None,
) -> ImportSummary:
    """Import a YOLO (ultralytics) detection or segmentation dataset described by its yaml.

    Args:
        lake: the lake to write to.
        data: the data yaml (``path``, ``train``/``val``/``test``, ``names``).
        dataset, version: the dataset version to commit.
        splits: which yaml entries to import (default every one of train/val/test given);
            the datums' split is the entry's key.
        progress: ``progress(stage, done, total)``.

    Raises:
        IngestError: malformed input (the message names the file and line); nothing is
            written.
        AlreadyExistsError: the dataset version exists already; nothing is written.
    """
    started = time.perf_counter()
    plan = plan_yolo(data, dataset=dataset, version=version, splits=splits, progress=progress)
    return write_plan(lake, plan, progress, started)
