"""Importers: the COCO sample and a generated VOC-style tree, in images per second, against the
anchor system's importer (6 images in 0.42 s: 14.3 images/s)."""

from __future__ import annotations

import random
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import lakecore
from lakecore.importers import VOC_CLASSES, import_coco, import_pascal_voc

ANCHOR_IMAGES_S = 6 / 0.42
"""The anchor system's importer: 6 images in 0.42 s."""

COCO = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco-sample"


def make_voc(root: Path, n: int, seg_every: int = 3, seed: int = 0) -> Path:
    """A VOC-2012-layout tree of ``n`` 96x64 JPEGs with 1-3 boxes each; every
    ``seg_every``-th image also has class/object palette PNGs (255 void outlines)."""
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in (
        "JPEGImages",
        "Annotations",
        "SegmentationClass",
        "SegmentationObject",
        "ImageSets/Main",
        "ImageSets/Segmentation",
    ):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    noise = np.random.default_rng(seed).integers(0, 255, (64, 96, 3), np.uint8)
    w, h = 96, 64
    ids, seg_ids = [], []
    for i in range(n):
        image_id = f"2012_{i:06d}"
        ids.append(image_id)
        root_el = ET.Element("annotation")
        ET.SubElement(root_el, "filename").text = f"{image_id}.jpg"
        size = ET.SubElement(root_el, "size")
        for tag, v in (("width", w), ("height", h), ("depth", 3)):
            ET.SubElement(size, tag).text = str(v)
        cls = np.zeros((h, w), np.uint8)
        obj = np.zeros((h, w), np.uint8)
        for k in range(rng.randint(1, 3)):
            x0, y0 = rng.randint(1, w // 2), rng.randint(1, h // 2)
            x1, y1 = rng.randint(x0 + 4, w), rng.randint(y0 + 4, h)
            name = rng.choice(VOC_CLASSES)
            el = ET.SubElement(root_el, "object")
            ET.SubElement(el, "name").text = name
            ET.SubElement(el, "difficult").text = "0"
            bb = ET.SubElement(el, "bndbox")
            for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), (x0, y0, x1, y1), strict=True):
                ET.SubElement(bb, tag).text = str(v)
            cls[y0 - 1 : y1, x0 - 1 : x1] = VOC_CLASSES.index(name) + 1
            obj[y0 - 1 : y1, x0 - 1 : x1] = k + 1
            for arr in (cls, obj):
                arr[y0 - 1, x0 - 1 : x1] = arr[y1 - 1, x0 - 1 : x1] = 255
        ET.ElementTree(root_el).write(voc / "Annotations" / f"{image_id}.xml")
        pixels = noise.copy()
        pixels[..., 0] = cls * 10
        Image.fromarray(pixels).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=80)
        if i % seg_every == 0:
            seg_ids.append(image_id)
            for folder, arr in (("SegmentationClass", cls), ("SegmentationObject", obj)):
                im = Image.fromarray(arr, mode="P")
                im.putpalette([v for c in range(256) for v in (c, 255 - c, (c * 7) % 256)])
                im.save(voc / folder / f"{image_id}.png")
    (voc / "ImageSets/Main/train.txt").write_text("".join(f"{i}\n" for i in ids))
    (voc / "ImageSets/Segmentation/train.txt").write_text("".join(f"{i}\n" for i in seg_ids))
    return root


def _row(case: str, images: int, seconds: float) -> dict[str, Any]:
    rate = images / seconds
    return {
        "case": case,
        "lakecore": rate,
        "baseline": ANCHOR_IMAGES_S,
        "baseline_name": "anchor importer (6 images in 0.42 s)",
        "ratio": rate / ANCHOR_IMAGES_S,
        "unit": "images/s",
        "goal": "ratio >= 1 (faster than the anchor)",
    }


def run(size: int = 10_000) -> list[dict[str, Any]]:
    """The COCO sample import (if the shared data is present) and a ``size``-image VOC tree."""
    work = Path(tempfile.mkdtemp(prefix="lakecore-bench-"))
    rows = []
    try:
        if COCO.is_dir():
            ann = COCO / "annotations"
            lake = lakecore.connect(work / "coco-lake")
            start = time.perf_counter()
            summary = import_coco(
                lake,
                COCO / "val2017",
                ann / "instances_val2017.json",
                keypoints=ann / "person_keypoints_val2017.json",
                captions=ann / "captions_val2017.json",
                dataset="coco",
            )
            seconds = time.perf_counter() - start
            rows.append(
                _row(
                    f"COCO sample: {summary.images} images, {summary.records} records "
                    "(instances + keypoints + captions)",
                    summary.images,
                    seconds,
                )
            )
        make_voc(work / "voc", size)
        lake = lakecore.connect(work / "voc-lake")
        start = time.perf_counter()
        summary = import_pascal_voc(lake, work / "voc", split="train")
        seconds = time.perf_counter() - start
        rows.append(
            _row(
                f"VOC-style tree: {summary.images} images, {summary.masks} mask PNGs, "
                f"{summary.records} records",
                summary.images,
                seconds,
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


if __name__ == "__main__":  # pragma: no cover - python -m bench.importers
    for r in run(1000):
        print(r)
