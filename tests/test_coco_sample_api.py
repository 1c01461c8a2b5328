"""The real COCO sample through the entity API: every image, box and polygon round-trips."""

from __future__ import annotations

import json
from collections import defaultdict

import pyarrow as pa
import pytest
from conftest import SHARED_DATA

COCO = SHARED_DATA / "coco-sample"
pytestmark = pytest.mark.skipif(
    not COCO.exists(),
    reason="../shared/data/coco-sample not present (CI has it); the same API "
    "paths are covered on generated data by test_assets/test_annotations/test_datums",
)


def test_coco_sample_round_trips(lake):
    doc = json.loads((COCO / "annotations" / "instances_val2017.json").read_text())
    images = sorted(doc["images"], key=lambda i: i["id"])
    files = [COCO / "val2017" / i["file_name"] for i in images]
    assets = lake.assets.add_many(
        files, kind="image", metadata=[{"coco_id": i["id"]} for i in images]
    )
    # Pillow read every JPEG header: sizes match the annotation file
    assert assets["width"].to_pylist() == [i["width"] for i in images]
    assert assets["height"].to_pylist() == [i["height"] for i in images]
    by_coco = dict(zip([i["id"] for i in images], assets["asset_id"].to_pylist(), strict=True))
    datums = lake.datums.add_many(
        [{"assets": {"image": by_coco[i["id"]]}, "split": "val"} for i in images]
    )
    datum_of = dict(zip([i["id"] for i in images], datums["datum_id"].to_pylist(), strict=True))
    cats = {c["id"]: c["name"] for c in doc["categories"]}
    schema = lake.annotations.create_schema(
        "coco",
        task_type="instance_segmentation",
        labels=[{"name": n, "label_id": i} for i, n in cats.items()],
        allowed_kinds=["bbox", "polygon"],
    )
    gt = lake.annotations.create_set("instances", schema_id=schema.schema_id, source_kind="import")
    polys = [a for a in doc["annotations"] if not a["iscrowd"]]
    rows: dict[str, list] = defaultdict(list)
    for a in doc["annotations"]:
        for kind in ("bbox", "polygon"):
            if kind == "polygon" and a["iscrowd"]:
                continue  # crowd regions are RLE masks (the importers issue handles them)
            rows["asset_id"].append(by_coco[a["image_id"]])
            rows["datum_id"].append(datum_of[a["image_id"]])
            rows["kind"].append(kind)
            rows["label"].append(cats[a["category_id"]])
            rows["label_id"].append(a["category_id"])
            rows["bbox"].append(a["bbox"] if kind == "bbox" else None)
            rows["polygon"].append(
                [{"exterior": p} for p in a["segmentation"]] if kind == "polygon" else None
            )
            rows["metadata"].append(json.dumps({"coco_id": a["id"]}))
    lake.annotations.add(gt.set_id, pa.table(rows))
    # read everything back and compare with the source file
    for f, ref in zip(files[:5], assets["asset_id"].to_pylist()[:5], strict=True):
        assert lake.assets.read(ref) == f.read_bytes()
    table = lake.annotations.table()
    assert table.num_rows == len(doc["annotations"]) + len(polys)
    got = defaultdict(dict)
    for r in table.to_pylist():
        got[json.loads(r["metadata"])["coco_id"]][r["kind"]] = r
    for a in doc["annotations"]:
        box = got[a["id"]]["bbox"]["bbox"]
        assert box == pytest.approx(a["bbox"], rel=1e-6, abs=1e-3)
        if not a["iscrowd"]:
            parts = got[a["id"]]["polygon"]["polygon"]
            assert len(parts) == len(a["segmentation"])
            for part, ring in zip(parts, a["segmentation"], strict=True):
                assert part["exterior"] == pytest.approx(ring, rel=1e-6, abs=1e-3)
    version = lake.datasets.builder("coco-val").add(datums["datum_id"]).commit("1.0.0")
    assert version.stats()["records"] == table.num_rows
    empty = {i["id"] for i in images} - {a["image_id"] for a in doc["annotations"]}
    assert len(empty) == 2  # the two images without annotations are datums too
