"""YOLO (ultralytics) exporter: a dataset version -> ``data.yaml``, ``images/<split>/...`` and
``labels/<split>/*.txt`` (detection or segmentation lines, normalized coordinates).

``task="detect"`` writes one ``c cx cy w h`` line per box; ``task="segment"`` one
``c x1 y1 x2 y2 ...`` line per polygon part (a box-only object is written as its rectangle).
Class indices are the labels' ``label_id`` when those are 0..N-1 (as a YOLO import makes
them), else the labels in ``label_id`` order renumbered from 0 (noted). Images imported from
YOLO keep their relative paths (``images/train2017/...``). What YOLO cannot hold (keypoints,
captions, masks, polygons in detection, holes, ...) is counted in the result's warnings; an
image without lines is a negative (no label file when the import had none).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lakecore.exporters._common import (
    Datum,
    ExportProgress,
    ExportResult,
    Tally,
    VersionData,
    load_version,
    objects,
    split_name,
    unique_names,
    write_bytes,
)
from lakecore.importers.yolo import label_path

if TYPE_CHECKING:
    from lakecore.lake import Lake

__all__ = ["export_yolo"]

Task = Literal["detect", "segment"]


def _num(v: float) -> str:
    """A normalized coordinate as ultralytics writes it (``%g``: 6 significant digits)."""
    return f"{min(max(v, 0.0), 1.0):g}"


class _Lines:
    def __init__(self, data: VersionData, task: Task, tally: Tally) -> None:
        self.task, self.tally = task, tally
        labels = sorted(
            (lab for lab in data.labels),
            key=lambda lab: (lab.label_id is None, lab.label_id if lab.label_id is not None else 0),
        )
        ids = [lab.label_id for lab in labels]
        if ids == list(range(len(ids))):
            self.index = {lab.name: lab.label_id for lab in labels}
        else:
            self.index = {lab.name: i for i, lab in enumerate(labels)}
            if labels:
                tally.notes.append(
                    "class indices renumbered 0..N-1 in label_id order (the "
                    "labels' ids are not 0..N-1)"
                )
        self.names = {i: name for name, i in self.index.items()}

    def _skip(self, kind: str, where: str, n: int = 1) -> None:
        what = (
            "detection holds boxes only"
            if self.task == "detect"
            else ("segmentation holds polygons only")
        )
        self.tally.skip(
            kind, f"yolo_{self.task}_{kind}", f"{kind} records: YOLO {what}, not exported", where, n
        )

    def datum(self, records: list[dict[str, Any]], w: int, h: int, where: str) -> list[str]:
        out = []
        for group in objects(records):
            box = next((r for r in group if r["kind"] == "bbox"), None)
            poly = next((r for r in group if r["kind"] == "polygon"), None)
            for r in group:
                if r is not box and r is not poly:
                    self._skip(r["kind"], where)
            first = box or poly
            if first is None:
                continue
            cls = self.index[first["label"]]
            if self.task == "detect":
                if poly is not None:
                    self._skip("polygon", where)
                if box is None:
                    flat = [v for part in poly["polygon"] for v in part["exterior"]]  # type: ignore[index]
                    xs, ys = flat[0::2], flat[1::2]
                    x, y, bw, bh = min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)
                    self.tally.issues.add(
                        "yolo_box_from_polygon",
                        "objects without a box: box derived from the polygon",
                        where,
                    )
                else:
                    x, y, bw, bh = box["bbox"]
                    self.tally.ok("bbox")
                out.append(
                    f"{cls} {_num((x + bw / 2) / w)} {_num((y + bh / 2) / h)} "
                    f"{_num(bw / w)} {_num(bh / h)}"
                )
                continue
            if box is not None and poly is not None:
                self._skip("bbox", where)
            if poly is None:
                x, y, bw, bh = box["bbox"]  # type: ignore[index]
                rings = [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]
                self.tally.ok("bbox")
                self.tally.issues.add(
                    "yolo_box_as_polygon",
                    "objects with a box only: written as a rectangle polygon",
                    where,
                )
            else:
                rings = [part["exterior"] for part in poly["polygon"]]
                holes = sum(len(part["holes"]) for part in poly["polygon"])
                if holes:
                    self.tally.issues.add(
                        "yolo_holes",
                        "polygon holes: YOLO cannot hold them, exterior rings exported",
                        where,
                        holes,
                    )
                if len(rings) > 1:
                    self.tally.issues.add(
                        "yolo_multipart", "multi-part polygons: one line per part", where
                    )
                self.tally.ok("polygon")
            for ring in rings:
                coords = " ".join(_num(v / (w if i % 2 == 0 else h)) for i, v in enumerate(ring))
                out.append(f"{cls} {coords}")
        return out


def _yaml(doc: dict[str, Any]) -> str:
    import yaml

    return str(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def export_yolo(
    lake: Lake,
    dataset: str,
    out_dir: str | Path,
    version: str = "latest",
    *,
    task: Task = "detect",
    progress: ExportProgress | None = None,
) -> ExportResult:
    """Write a dataset version as a YOLO dataset: ``data.yaml``, images and label files.

    Args:
        lake: the lake. dataset, version: what to export (``latest`` or a tag work too).
        out_dir: a local folder (created).
        task: ``detect`` (boxes) or ``segment`` (polygons).
        progress: ``progress(stage, done, total)``.

    Returns:
        An :class:`ExportResult`; its warnings count what YOLO cannot hold.
    """
    if task not in ("detect", "segment"):
        from lakecore.errors import ValidationError

        raise ValidationError(f"task must be 'detect' or 'segment', got {task!r}", field="task")
    started = time.perf_counter()
    data = load_version(lake, dataset, version)
    out = Path(out_dir)
    tally = Tally()
    lines = _Lines(data, task, tally)
    kept = data.handle.record.metadata.get("yolo", {})
    by_split: dict[str, list[Datum]] = {}
    for d in data.datums.values():
        if d.image is not None:
            by_split.setdefault(split_name(d.split), []).append(d)
    doc: dict[str, Any] = {"path": "."}
    files = images = 0
    for split, datums in sorted(by_split.items()):
        datums.sort(key=lambda d: data.file_name(d))
        given = [d.metadata.get("yolo", {}).get("image") for d in datums]
        if (
            all(given)
            and len(set(given)) == len(given)
            and not any(str(g).startswith(("/", "..")) for g in given)
        ):
            rels = [str(g) for g in given]  # the paths the import read
        else:
            names = unique_names([Path(data.file_name(d)).name for d in datums], tally)
            rels = [f"images/{split}/{n}" for n in names]
        folders = sorted({str(Path(r).parent) for r in rels})
        doc[split] = folders[0] if len(folders) == 1 else folders
        for d, rel in zip(datums, rels, strict=True):
            w, h = data.size(d)
            rows = lines.datum(d.records, w, h, rel) if w and h else []
            if d.records and not (w and h):
                tally.skip(
                    "all",
                    "yolo_no_size",
                    "records of images without a known size, not exported",
                    rel,
                    len(d.records),
                )
            had_file = d.metadata.get("yolo", {}).get("label_file", True)
            if rows or had_file:
                label = label_path(out / rel)
                label.parent.mkdir(parents=True, exist_ok=True)
                label.write_text("".join(f"{r}\n" for r in rows))
                files += 1
        target = {d.image: rel for d, rel in zip(datums, rels, strict=True)}
        for aid, payload in data.payloads([d.image for d in datums if d.image]):
            write_bytes(out / target[aid], payload)
            images += 1
            if progress is not None:
                progress("write", images, len(data.datums))
    if not any(k in doc for k in ("train", "val")):
        tally.notes.append(
            "no split named train or val: ultralytics needs both keys in "
            "data.yaml; rename the entries or set datum splits"
        )
    extra = {k: v for k, v in kept.items() if k not in doc and k not in ("train", "val", "test")}
    doc.update(extra)
    doc["names"] = dict(sorted(lines.names.items()))
    (out / "data.yaml").parent.mkdir(parents=True, exist_ok=True)
    (out / "data.yaml").write_text(_yaml(doc))
    return tally.result("yolo", data.handle.ref, out, images, files + images + 1, started)
