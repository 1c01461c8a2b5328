"""COCO importer and exporter: generated files (local and S3), the real COCO sample, malformed
input, warnings, atomicity."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from _coco_fixture import compare_coco, decode, make_coco
from conftest import SHARED_DATA

import lakecore
from lakecore.errors import AlreadyExistsError, IngestError
from lakecore.exporters import export_coco, export_pascal_voc, export_yolo
from lakecore.importers import import_coco

SAMPLE = SHARED_DATA / "coco-sample"


def _files(paths):
    return {
        "annotations": paths["annotations"],
        "keypoints": paths["keypoints"],
        "captions": paths["captions"],
    }


def test_round_trip_generated(lake, tmp_path):
    paths = make_coco(tmp_path / "src")
    seen = []
    summary = import_coco(
        lake, paths["images"], **_files(paths), dataset="gen", progress=lambda *a: seen.append(a[0])
    )
    assert summary.ref == "gen@1.0.0"
    assert (summary.datums, summary.images, summary.assets) == (3, 3, 3)
    assert summary.counts == {"bbox": 5, "polygon": 2, "mask": 2, "keypoints": 1, "caption": 3}
    assert summary.splits == {"val": 3} and not summary.warnings
    assert {"scan", "parse", "payloads", "commit"} <= set(seen)
    version = lake.datasets.get("gen", "1.0.0")
    assert version.members().num_rows == 3

    result = export_coco(lake, "gen", tmp_path / "out")
    assert result.images == 3 and not result.warnings
    for role in ("instances", "person_keypoints", "captions"):
        compare_coco(
            paths[
                {
                    "instances": "annotations",
                    "person_keypoints": "keypoints",
                    "captions": "captions",
                }[role]
            ],
            tmp_path / "out" / "annotations" / f"{role}_val.json",
        )
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        assert (tmp_path / "out" / "val" / name).read_bytes() == (
            paths["images"] / name
        ).read_bytes()


def test_schema_records_and_metadata(tmp_path):
    lake = lakecore.connect(tmp_path / "lake")
    paths = make_coco(tmp_path / "src")
    summary = import_coco(lake, paths["images"], **_files(paths), dataset="gen", split="val")
    schema = lake.annotations.get_schema(summary.schema_id)
    assert [(lab.name, lab.label_id, lab.supercategory) for lab in schema.labels] == [
        ("person", 1, "person"),
        ("car", 3, "vehicle"),
        ("dog", 5, "animal"),
    ]
    assert schema.keypoint_names == ["nose", "left_eye", "right_eye"]
    assert schema.skeleton == [(0, 1), (0, 2)]
    records = lake.annotations.records(set_id=summary.set_id).to_pylist()
    kp = next(r for r in records if r["kind"] == "keypoints")
    assert kp["keypoint_visibility"] == [2, 1, 0] and kp["keypoints"][:2] == [5.0, 6.0]
    crowd = next(r for r in records if r["kind"] == "mask" and '"iscrowd": true' in r["attributes"])
    assert json.loads(crowd["metadata"])["coco"]["id"] == 12
    src = json.loads(paths["annotations"].read_text())["annotations"][2]["segmentation"]
    stored = crowd["mask_rle"]
    assert np.array_equal(
        decode(src, 30, 40), decode({"size": [30, 40], "counts": stored["counts"]}, 30, 40)
    )
    poly = next(r for r in records if r["kind"] == "polygon" and r["label"] == "person")
    assert len(poly["polygon"]) == 2  # multi-part
    captions = sorted(r["text"] for r in records if r["kind"] == "caption")
    assert captions[0] == "A person next to a car."
    datums = lake.datasets.get("gen").to_arrow().to_pylist()
    no_objects = [d for d in datums if json.loads(d["metadata"])["coco"]["id"] == 7]
    assert len(no_objects) == 1


def test_export_warns_what_other_formats_cannot_hold(tmp_path):
    lake = lakecore.connect(tmp_path / "lake")
    paths = make_coco(tmp_path / "src")
    import_coco(lake, paths["images"], **_files(paths), dataset="gen")
    det = export_yolo(lake, "gen", tmp_path / "yolo")
    codes = {w.code: w.count for w in det.warnings}
    assert codes == {
        "yolo_detect_polygon": 2,
        "yolo_detect_mask": 2,
        "yolo_detect_keypoints": 1,
        "yolo_detect_caption": 3,
    }
    assert det.records == {"bbox": 5} and det.skipped == {
        "polygon": 2,
        "mask": 2,
        "keypoints": 1,
        "caption": 3,
    }
    seg = export_yolo(lake, "gen", tmp_path / "seg", task="segment")
    assert {w.code for w in seg.warnings} >= {
        "yolo_segment_mask",
        "yolo_multipart",
        "yolo_box_as_polygon",
    }
    voc = export_pascal_voc(lake, "gen", tmp_path / "voc")
    assert {w.code: w.count for w in voc.warnings} == {
        "voc_polygon": 2,
        "voc_mask": 2,
        "voc_keypoints": 1,
        "voc_caption": 3,
    }
    xml = (tmp_path / "voc/VOCdevkit/VOC2012/Annotations/b.xml").read_text()
    assert xml.count("<object>") == 3


def test_sample_round_trip(tmp_path):
    """The real sample on local disk (the generated set covers every feature on S3 too)."""
    if not SAMPLE.is_dir():
        pytest.skip(f"../shared/data not present: {SAMPLE} is missing")
    lake = lakecore.connect(tmp_path / "lake")
    ann = SAMPLE / "annotations"
    summary = import_coco(
        lake,
        SAMPLE / "val2017",
        ann / "instances_val2017.json",
        keypoints=ann / "person_keypoints_val2017.json",
        captions=ann / "captions_val2017.json",
        dataset="coco-sample",
    )
    assert summary.datums == 50
    assert summary.counts == {
        "bbox": 382,
        "polygon": 377,
        "mask": 5,
        "keypoints": 127,
        "caption": 250,
    }
    assert any("2 images without object annotations" in n for n in summary.notes)
    result = export_coco(lake, "coco-sample", tmp_path / "out")
    assert not result.warnings and result.images == 50
    out = tmp_path / "out" / "annotations"
    assert compare_coco(ann / "instances_val2017.json", out / "instances_val2017.json") == 382
    assert (
        compare_coco(ann / "person_keypoints_val2017.json", out / "person_keypoints_val2017.json")
        == 127
    )
    assert compare_coco(ann / "captions_val2017.json", out / "captions_val2017.json") == 250
    for name in ("000000226111.jpg", "000000058636.jpg", "000000087038.jpg"):
        assert (tmp_path / "out/val2017" / name).read_bytes() == (
            SAMPLE / "val2017" / name
        ).read_bytes()


def _mutate(paths, change):
    doc = json.loads(paths["annotations"].read_text())
    change(doc)
    paths["annotations"].write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["annotations"][1].update(category_id=99),
            r"instances_val.json annotation id 11: category_id 99 is not in categories",
        ),
        (
            lambda d: d["annotations"][2]["segmentation"]["counts"].append(5),
            r"annotation id 12: bad RLE",
        ),
        (
            lambda d: d["annotations"][3]["segmentation"].update(counts="~~~"),
            r"annotation id 13: bad RLE",
        ),
        (
            lambda d: d["annotations"][3]["segmentation"].update(size=[10, 10]),
            r"annotation id 13: RLE size",
        ),
        (
            lambda d: d["annotations"][0].update(image_id=999),
            r"annotation id 10: image_id 999 is not in the images list",
        ),
        (
            lambda d: d["annotations"][4].update(bbox=[1, 1, -5, 4]),
            r"annotation id 14: bbox .* negative",
        ),
        (
            lambda d: d["annotations"][1]["segmentation"][0].append(3.0),
            r"annotation id 11: segmentation\[0\] has an odd number",
        ),
        (
            lambda d: d["images"].append(
                {"id": 9, "file_name": "gone.jpg", "width": 4, "height": 4}
            ),
            r"image id 9: image file .*gone.jpg.* does not exist",
        ),
    ],
    ids=[
        "category",
        "rle-sum",
        "rle-chars",
        "rle-size",
        "image-id",
        "negative-box",
        "odd-polygon",
        "missing-image",
    ],
)
def test_malformed_input_writes_nothing(tmp_path, change, message):
    lake = lakecore.connect(tmp_path / "lake")
    paths = make_coco(tmp_path / "src")
    _mutate(paths, change)
    pins = lake.snapshot().pins
    with pytest.raises(IngestError, match=message):
        import_coco(lake, paths["images"], paths["annotations"], dataset="bad")
    assert lake.snapshot().pins == pins


def test_truncated_json_and_bad_keypoints(tmp_path):
    lake = lakecore.connect(tmp_path / "lake")
    paths = make_coco(tmp_path / "src")
    text = paths["annotations"].read_text()
    paths["annotations"].write_text(text[: len(text) // 2])
    with pytest.raises(IngestError, match=r"instances_val\.json: not valid JSON"):
        import_coco(lake, paths["images"], paths["annotations"], dataset="bad")
    doc = json.loads(paths["keypoints"].read_text())
    doc["annotations"][0]["keypoints"] = [1, 2, 3]
    paths["keypoints"].write_text(json.dumps(doc))
    with pytest.raises(IngestError, match="annotation id 10: keypoints must hold 9 numbers"):
        import_coco(lake, paths["images"], keypoints=paths["keypoints"], dataset="bad")
    assert lake.summary()["tables"]["annotation_records"] == 0


def test_box_outside_image_is_clipped_with_a_warning(tmp_path):
    lake = lakecore.connect(tmp_path / "lake")
    paths = make_coco(tmp_path / "src")
    _mutate(paths, lambda d: d["annotations"][4].update(bbox=[-2.0, 25.0, 10.0, 10.0]))
    summary = import_coco(lake, paths["images"], paths["annotations"], dataset="clip")
    (warning,) = summary.warnings
    assert warning.code == "box_clipped" and warning.count == 1
    assert "annotation id 14" in warning.examples[0]
    box = next(
        r["bbox"]
        for r in lake.annotations.records(set_id=summary.set_id).to_pylist()
        if r["kind"] == "bbox" and json.loads(r["metadata"])["object"] == "14"
    )
    assert box == [0.0, 25.0, 8.0, 5.0]


def test_double_import_and_dedup(tmp_path, lake):
    paths = make_coco(tmp_path / "src")
    import_coco(lake, paths["images"], paths["annotations"], dataset="one")
    blobs = lake.objects.mount("lake").dataset(refresh=True).count_rows()
    pins = lake.snapshot().pins
    with pytest.raises(AlreadyExistsError, match=r"one@1\.0\.0 exists already"):
        import_coco(lake, paths["images"], paths["annotations"], dataset="one")
    assert lake.snapshot().pins == pins
    copy = tmp_path / "copy"
    shutil.copytree(paths["images"], copy)
    import_coco(lake, copy, paths["annotations"], dataset="two")
    assert lake.objects.mount("lake").dataset(refresh=True).count_rows() == blobs
    shas = [sorted(lake.datasets.get(n).assets()["sha256"].to_pylist()) for n in ("one", "two")]
    assert shas[0] == shas[1]
