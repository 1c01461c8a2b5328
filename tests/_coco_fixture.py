"""A small COCO image set generated with Pillow and pycocotools, and a round-trip comparison.

Covers: multi-part polygons, a crowd object with uncompressed RLE, a compressed RLE, a box-only
object, keypoints with all three visibilities and a skeleton, captions, an image without
annotations, supercategories and sparse category ids.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

W, H = 40, 30


def _runs(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO counts of a binary mask (test data only: column-major run lengths,
    starting with a run of zeros)."""
    flat = mask.flatten(order="F")
    counts, current, run = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    return counts


def make_coco(root: Path) -> dict[str, Path]:
    """Write ``images/`` and the three annotation files; return their paths."""
    images = root / "images"
    images.mkdir(parents=True)
    entries = []
    for i, (image_id, name) in enumerate([(1, "a.jpg"), (2, "b.jpg"), (7, "c.jpg")]):
        arr = np.full((H, W, 3), 40 * (i + 1), np.uint8)
        Image.fromarray(arr).save(images / name, quality=90)
        entries.append(
            {
                "id": image_id,
                "file_name": name,
                "width": W,
                "height": H,
                "license": 1,
                "coco_url": f"http://example.invalid/{name}",
            }
        )
    crowd = np.zeros((H, W), np.uint8)
    crowd[5:20, 3:12] = 1
    crowd[22:28, 30:38] = 1
    blob = np.zeros((H, W), np.uint8)
    blob[10:25, 15:30] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        compressed = mask_utils.encode(np.asfortranarray(blob))["counts"].decode("ascii")
    person = {
        "id": 10,
        "image_id": 1,
        "category_id": 1,
        "iscrowd": 0,
        "area": 95.5,
        "bbox": [2.5, 3.25, 10.0, 12.0],
        "segmentation": [
            [2.5, 3.25, 12.5, 3.25, 12.5, 10.0, 2.5, 10.0],
            [4.0, 11.0, 9.5, 11.0, 9.5, 15.25, 4.0, 15.25],
        ],
    }
    anns = [
        person,
        {
            "id": 11,
            "image_id": 1,
            "category_id": 3,
            "iscrowd": 0,
            "area": 120.0,
            "bbox": [20.0, 5.0, 15.5, 10.0],
            "segmentation": [[20.0, 5.0, 35.5, 5.0, 35.5, 15.0, 20.0, 15.0]],
            "attributes": {"occluded": True},
        },
        {
            "id": 12,
            "image_id": 2,
            "category_id": 5,
            "iscrowd": 1,
            "area": float(crowd.sum()),
            "bbox": [3.0, 5.0, 35.0, 23.0],
            "segmentation": {"size": [H, W], "counts": _runs(crowd)},
        },
        {
            "id": 13,
            "image_id": 2,
            "category_id": 3,
            "iscrowd": 0,
            "area": float(blob.sum()),
            "bbox": [15.0, 10.0, 15.0, 15.0],
            "segmentation": {"size": [H, W], "counts": compressed},
        },
        {
            "id": 14,
            "image_id": 2,
            "category_id": 3,
            "iscrowd": 0,
            "area": 20.0,
            "bbox": [1.0, 1.0, 5.0, 4.0],
            "segmentation": [],
        },
    ]
    cats = [
        {"supercategory": "person", "id": 1, "name": "person"},
        {"supercategory": "vehicle", "id": 3, "name": "car"},
        {"supercategory": "animal", "id": 5, "name": "dog"},
    ]
    top = {
        "info": {"description": "generated", "year": 2024},
        "licenses": [{"id": 1, "name": "CC BY 4.0", "url": "http://example.invalid/l"}],
    }
    ann_dir = root / "annotations"
    ann_dir.mkdir()
    paths = {"images": images}
    doc = {**top, "images": entries, "annotations": anns, "categories": cats}
    paths["annotations"] = ann_dir / "instances_val.json"
    paths["annotations"].write_text(json.dumps(doc))
    kp = {**person, "keypoints": [5.0, 6.0, 2, 7.5, 7.0, 1, 0, 0, 0], "num_keypoints": 2}
    kp_cats = [
        {**cats[0], "keypoints": ["nose", "left_eye", "right_eye"], "skeleton": [[1, 2], [1, 3]]}
    ]
    paths["keypoints"] = ann_dir / "person_keypoints_val.json"
    paths["keypoints"].write_text(
        json.dumps({**top, "images": entries, "annotations": [kp], "categories": kp_cats})
    )
    caps = [
        {"image_id": 1, "id": 100, "caption": "A person next to a car."},
        {"image_id": 1, "id": 101, "caption": "Someone standing by a red car."},
        {"image_id": 7, "id": 102, "caption": "An empty grey picture."},
    ]
    paths["captions"] = ann_dir / "captions_val.json"
    paths["captions"].write_text(json.dumps({**top, "images": entries, "annotations": caps}))
    return paths


def _close(a: list[float], b: list[float], tol: float = 1e-3) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def decode(seg: dict[str, Any], h: int, w: int) -> np.ndarray:
    """Pixels of an RLE segmentation (compressed or not), with pycocotools."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pycocotools under numpy 2
        if isinstance(seg["counts"], list):
            return mask_utils.decode(mask_utils.frPyObjects(seg, h, w))
        return mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode("ascii")})


def compare_coco(orig: Path, new: Path) -> int:
    """Assert two COCO files are equal up to float tolerance (RLE masks pixel-identical);
    return the number of annotations compared."""
    a, b = json.loads(orig.read_text()), json.loads(new.read_text())
    assert set(a) == set(b), set(a) ^ set(b)
    for key in a:
        if key not in ("images", "annotations", "categories"):
            assert a[key] == b[key], key
    assert sorted(a.get("categories", []), key=lambda c: c["id"]) == sorted(
        b.get("categories", []), key=lambda c: c["id"]
    )
    images = {i["id"]: i for i in a["images"]}
    assert images == {i["id"]: i for i in b["images"]}
    ours = {x["id"]: x for x in b["annotations"]}
    assert set(ours) == {x["id"] for x in a["annotations"]}
    for x in a["annotations"]:
        y = ours[x["id"]]
        assert set(x) == set(y), (x["id"], set(x) ^ set(y))
        for key, value in x.items():
            if key in ("bbox", "keypoints"):
                assert _close(value, y[key]), (x["id"], key, value, y[key])
            elif key == "area":
                assert abs(value - y[key]) <= 1e-6 * max(1.0, abs(value)), x["id"]
            elif key == "segmentation" and isinstance(value, dict):
                img = images[x["image_id"]]
                assert np.array_equal(
                    decode(value, img["height"], img["width"]),
                    decode(y[key], img["height"], img["width"]),
                ), x["id"]
            elif key == "segmentation":
                assert len(value) == len(y[key]), x["id"]
                assert all(_close(p, q) for p, q in zip(value, y[key], strict=True)), x["id"]
            else:
                assert value == y[key], (x["id"], key, value, y[key])
    return len(a["annotations"])
