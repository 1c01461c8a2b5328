"""Pascal VOC 2012 importer and exporter: generated official-convention trees (local and S3),
the labelme VOC-layout sample, malformed trees, download, double import, dedup, atomicity."""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from _voc_fixture import VocImage, VocObject, make_voc_tree, random_images
from conftest import SHARED_DATA
from PIL import Image

import lakecore
from lakecore.catalog.commit import set_fault_hook
from lakecore.errors import AlreadyExistsError, IngestError
from lakecore.exporters import export_coco, export_pascal_voc
from lakecore.importers import VOC_CLASSES, import_pascal_voc
from lakecore.importers._xml import same_content

SAMPLE = SHARED_DATA / "voc-sample"
FOLDERS = ("JPEGImages", "Annotations", "SegmentationClass", "SegmentationObject")


def _same_tree(src, out, ids, split):
    """Every file of the split's images has the same content (XML) or bytes (images, PNGs)."""
    for image_id in ids:
        for folder, ext in zip(FOLDERS, (".jpg", ".xml", ".png", ".png"), strict=True):
            a, b = src / folder / f"{image_id}{ext}", out / folder / f"{image_id}{ext}"
            assert a.is_file() == b.is_file(), b
            if not a.is_file():
                continue
            if ext == ".xml":
                assert same_content(ET.parse(a).getroot(), ET.parse(b).getroot()), b
            else:
                assert a.read_bytes() == b.read_bytes(), b
    for folder in ("Main", "Segmentation"):
        a = src / "ImageSets" / folder / f"{split}.txt"
        b = out / "ImageSets" / folder / f"{split}.txt"
        if a.is_file() and a.read_text().strip():
            assert sorted(a.read_text().split()) == b.read_text().split()


def test_round_trip_generated(lake, tmp_path):
    voc, images = make_voc_tree(tmp_path / "src")
    summary = import_pascal_voc(lake, tmp_path / "src", split="train")
    assert summary.ref == "pascal-voc-2012-train@1.0.0"
    train = [images[0], images[2]]
    n_obj = sum(len(i.objects) for i in train)
    assert (summary.datums, summary.images, summary.masks) == (2, 2, 4)
    assert summary.counts["bbox"] == n_obj
    assert any("union of ImageSets/Main/train.txt" in n for n in summary.notes)
    result = export_pascal_voc(lake, summary.dataset, tmp_path / "out")
    assert not result.warnings and result.images == 2
    _same_tree(voc, tmp_path / "out/VOCdevkit/VOC2012", [i.image_id for i in train], "train")


def test_records_attributes_and_masks(tmp_path):
    lake = lakecore.connect(tmp_path / "lake")
    voc, images = make_voc_tree(tmp_path / "src", random_images(1, seed=3))
    summary = import_pascal_voc(lake, tmp_path / "src", split="train", dataset="voc", version="2.0")
    schema = lake.annotations.get_schema(summary.schema_id)
    assert schema.label_names() == list(VOC_CLASSES)
    assert [lab.label_id for lab in schema.labels] == list(range(1, 21))
    assert schema.metadata["mask_values"]["void"] == 255
    assert schema.task_type.value == "segmentation"
    records = lake.datasets.get("voc", "2.0").annotations().to_pylist()
    first = images[0].objects[0]
    box = next(
        r
        for r in records
        if r["kind"] == "bbox"
        and json.loads(r["metadata"])["object"] == "1"
        and r["asset_id"] == _image_asset(lake, "voc", images[0].image_id)
    )
    assert json.loads(box["attributes"]) == {
        "difficult": True,
        "truncated": True,
        "occluded": True,
        "pose": first.pose,
    }
    x0, y0, x1, y1 = first.box
    assert box["bbox"] == [x0 - 1, y0 - 1, x1 - x0 + 1, y1 - y0 + 1]
    masks = [r for r in records if r["kind"] == "mask"]
    objects = [r for r in masks if json.loads(r["metadata"])["voc"]["mask"] == "object"]
    obj_png = np.asarray(Image.open(voc / "SegmentationObject" / f"{images[0].image_id}.png"))
    assert {r["mask_value"] for r in objects} == set(np.unique(obj_png).tolist()) - {0, 255}
    for r in objects:  # an object mask's label is its XML object's class
        assert r["label"] == images[0].objects[r["mask_value"] - 1].name
    assert all(r["mask_value"] != 255 for r in masks)
    # the PNG is stored unchanged: same sha256 as the file
    assets = lake.datasets.get("voc", "2.0").assets().to_pylist()
    png = voc / "SegmentationClass" / f"{images[0].image_id}.png"
    assert hashlib.sha256(png.read_bytes()).hexdigest() in {
        a["sha256"] for a in assets if a["kind"] == "mask"
    }
    cls = next(
        r
        for r in masks
        if r["label"] == first.name and json.loads(r["metadata"])["voc"]["mask"] == "class"
    )
    arr = np.asarray(Image.open(png))
    assert (arr == cls["mask_value"]).any() and 255 in arr


def _image_asset(lake, dataset, image_id):
    rows = lake.datasets.get(dataset).to_arrow().to_pylist()
    return next(
        dict(r["assets"])["image"]
        for r in rows
        if json.loads(r["metadata"])["voc"]["id"] == image_id
    )


def test_single_list_and_plain_voc2012_root(tmp_path):
    lake = lakecore.connect(tmp_path / "lake")
    make_voc_tree(tmp_path / "src", main_lists=False, devkit=False)
    summary = import_pascal_voc(lake, tmp_path / "src", split="val")
    assert summary.notes[0].startswith("split 'val' from ImageSets/Segmentation/val.txt")
    make_voc_tree(tmp_path / "det", seg_lists=False, masks=False)
    det = import_pascal_voc(lake, tmp_path / "det", split="train", dataset="det")
    assert det.masks == 0 and det.counts == {"bbox": det.records}
    assert "ImageSets/Main/train.txt" in det.notes[0]


def test_sample(tmp_path):
    """The real sample on local disk (the generated trees cover every feature on S3 too)."""
    if not SAMPLE.is_dir():
        pytest.skip(f"../shared/data not present: {SAMPLE} is missing")
    lake = lakecore.connect(tmp_path / "lake")
    summary = import_pascal_voc(lake, SAMPLE, split="trainval", dataset="labelme")
    assert (summary.datums, summary.masks) == (2, 4)
    records = lake.datasets.get("labelme").annotations().to_pylist()
    boxes = [r for r in records if r["kind"] == "bbox"]
    assert len(boxes) == 6
    # empty <difficult/>, <truncated/> tags: False; empty <pose/>: absent
    assert all(
        json.loads(r["attributes"]) == {"difficult": False, "truncated": False, "occluded": False}
        for r in boxes
    )
    assert any(abs(r["bbox"][1] - 106.369) < 1e-3 for r in boxes)  # float coordinates
    labels = {r["label"] for r in records if r["kind"] == "mask"}
    assert labels >= {"person", "bottle"}
    export_pascal_voc(lake, "labelme", tmp_path / "out")
    _same_tree(
        SAMPLE / "VOCdevkit/VOC2012",
        tmp_path / "out/VOCdevkit/VOC2012",
        ["2011_000003", "2011_000006"],
        "trainval",
    )


def test_export_to_coco_encodes_object_masks(tmp_path):
    lake = lakecore.connect(tmp_path / "lake")
    _, images = make_voc_tree(tmp_path / "src", random_images(2, seed=5))
    import_pascal_voc(lake, tmp_path / "src", split="train")
    result = export_coco(lake, "pascal-voc-2012-train", tmp_path / "coco")
    (warning,) = result.warnings
    assert warning.code == "coco_semantic_mask"
    doc = json.loads((tmp_path / "coco/annotations/instances_train.json").read_text())
    assert len(doc["annotations"]) == len(images[0].objects)
    assert all(isinstance(a["segmentation"], dict) for a in doc["annotations"])


def _broken(tmp_path, kind):
    voc, images = make_voc_tree(tmp_path / "src")
    first = images[0].image_id
    if kind == "truncated-xml":
        path = voc / "Annotations" / f"{first}.xml"
        path.write_text(path.read_text()[:120])
        return r"Annotations/2012_000000\.xml: malformed XML"
    if kind == "missing-image":
        (voc / "JPEGImages" / f"{first}.jpg").unlink()
        return r"image 2012_000000 .*does not exist"
    if kind == "unknown-class":
        path = voc / "Annotations" / f"{first}.xml"
        path.write_text(
            path.read_text().replace(f"<name>{images[0].objects[0].name}<", "<name>unicorn<", 1)
        )
        return r"Annotations/2012_000000\.xml object 1: class 'unicorn' is not one of"
    if kind == "bad-coordinate":
        path = voc / "Annotations" / f"{first}.xml"
        text = path.read_text()
        start = text.index("<xmin>") + len("<xmin>")
        path.write_text(text[:start] + "abc" + text[text.index("</xmin>") :])
        return r"object 1: bndbox/xmin is missing or not a number"
    if kind == "rgb-mask":
        Image.new("RGB", (64, 48)).save(voc / "SegmentationClass" / f"{first}.png")
        return r"SegmentationClass/2012_000000\.png: mode RGB PNG"
    if kind == "no-split":
        return r"no image list for split 'test'"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    ["truncated-xml", "missing-image", "unknown-class", "bad-coordinate", "rgb-mask", "no-split"],
)
def test_malformed_tree_writes_nothing(tmp_path, kind):
    lake = lakecore.connect(tmp_path / "lake")
    message = _broken(tmp_path, kind)
    pins = lake.snapshot().pins
    with pytest.raises(IngestError, match=message):
        import_pascal_voc(lake, tmp_path / "src", split="test" if kind == "no-split" else "train")
    assert lake.snapshot().pins == pins


def test_box_outside_image_is_clipped(tmp_path):
    lake = lakecore.connect(tmp_path / "lake")
    img = VocImage("2012_000100", 64, 48, [VocObject("cat", (50, 10, 70, 60))])
    make_voc_tree(tmp_path / "src", [img], splits={"train": [0]}, masks=False)
    summary = import_pascal_voc(lake, tmp_path / "src")
    (warning,) = summary.warnings
    assert warning.code == "box_clipped" and "object 1" in warning.examples[0]
    (box,) = lake.datasets.get(summary.dataset).annotations()["bbox"].to_pylist()
    assert box == [49.0, 9.0, 15.0, 39.0]


def test_double_import_dedup_and_fresh_lake(tmp_path, where):
    lake = where.connect()
    make_voc_tree(tmp_path / "src")
    import_pascal_voc(lake, tmp_path / "src")
    pins = lake.snapshot().pins
    with pytest.raises(AlreadyExistsError, match=r"pascal-voc-2012-train@1\.0\.0 exists"):
        import_pascal_voc(lake, tmp_path / "src")
    assert lake.snapshot().pins == pins
    blobs = lake.objects.mount("lake").dataset(refresh=True).count_rows()
    other = import_pascal_voc(lake, tmp_path / "src", dataset="copy")
    assert lake.objects.mount("lake").dataset(refresh=True).count_rows() == blobs
    a = sorted(lake.datasets.get("pascal-voc-2012-train").assets()["sha256"].to_pylist())
    assert a == sorted(lake.datasets.get(other.dataset).assets()["sha256"].to_pylist())


def _import_failing(lake, root, step):
    """Import with an injected failure at one step of the (single) import commit."""

    def hook(s):
        if s == step:
            raise RuntimeError("injected failure")

    set_fault_hook(hook)
    try:
        with pytest.raises(RuntimeError, match="injected"):
            import_pascal_voc(lake, root)
    finally:
        set_fault_hook(None)


@pytest.mark.parametrize(
    "step", ["table_committed:assets", "table_committed:annotation_records", "before_swap"]
)
def test_failed_import_leaves_nothing(tmp_path, where, step):
    lake = where.connect()
    make_voc_tree(tmp_path / "src")
    before = lake.snapshot().pins
    rows = lake.summary()["tables"]
    _import_failing(lake, tmp_path / "src", step)
    assert lake.snapshot().pins == before  # not a single table moved
    assert lake.summary()["tables"] == rows
    assert not lake.datasets.exists("pascal-voc-2012-train", "1.0.0")
    assert import_pascal_voc(lake, tmp_path / "src").datums == 2  # and a retry works


def test_download(tmp_path):
    lake = lakecore.connect(tmp_path / "lake")
    with pytest.raises(
        IngestError,
        match=r"cannot download Pascal VOC 2012 from http://127\.0\.0\.1:9/",
    ):
        import_pascal_voc(
            lake,
            tmp_path / "empty",
            download=True,
            url="http://127.0.0.1:9/VOCtrainval_11-May-2012.tar",
        )
    make_voc_tree(tmp_path / "tree")
    summary = import_pascal_voc(
        lake, tmp_path / "tree", download=True, url="http://127.0.0.1:9/VOCtrainval_11-May-2012.tar"
    )
    assert summary.datums == 2 and any("using the VOC tree" in n for n in summary.notes)


def test_export_reflects_edits(tmp_path):
    """A record added after the import gets a new <object>; the imported ones keep their XML."""
    import pyarrow as pa

    lake = lakecore.connect(tmp_path / "lake")
    img = VocImage("2012_000200", 64, 48, [VocObject("dog", (5, 6, 20, 30))])
    voc, _ = make_voc_tree(tmp_path / "src", [img], splits={"train": [0]}, masks=False)
    summary = import_pascal_voc(lake, tmp_path / "src", dataset="edit")
    row = lake.datasets.get("edit").to_arrow().to_pylist()[0]
    lake.annotations.add(
        summary.set_id,
        pa.table(
            {
                "asset_id": [dict(row["assets"])["image"]],
                "datum_id": [row["datum_id"]],
                "kind": ["bbox"],
                "label": ["cat"],
                "label_id": [8],
                "bbox": [[10.5, 2.0, 20.0, 10.0]],
                "attributes": ['{"difficult": true}'],
            }
        ),
    )
    lake.datasets.builder("edit", parent="latest").commit("1.1.0")
    export_pascal_voc(lake, "edit", tmp_path / "out", version="1.1.0")
    root = ET.parse(tmp_path / "out/VOCdevkit/VOC2012/Annotations/2012_000200.xml").getroot()
    objects = root.findall("object")
    assert [o.findtext("name") for o in objects] == ["dog", "cat"]
    assert same_content(
        objects[0], ET.parse(voc / "Annotations/2012_000200.xml").getroot().find("object")
    )
    box = objects[1].find("bndbox")
    assert [box.findtext(t) for t in ("xmin", "ymin", "xmax", "ymax")] == [
        "11.5",
        "3",
        "30.5",
        "12",
    ]
    assert objects[1].findtext("difficult") == "1"
    old = tmp_path / "old"
    export_pascal_voc(lake, "edit", old, version="1.0.0")  # the old version is unchanged
    assert (
        len(
            ET.parse(old / "VOCdevkit/VOC2012/Annotations/2012_000200.xml")
            .getroot()
            .findall("object")
        )
        == 1
    )


def test_failure_while_storing_payloads_leaves_tables_untouched(tmp_path, monkeypatch):
    lake = lakecore.connect(tmp_path / "lake")
    make_voc_tree(tmp_path / "src")
    before = lake.snapshot().pins
    real = lake.objects.put_many

    def half_then_fail(sources, **kwargs):
        real(sources[: len(sources) // 2])  # some payloads are stored (allowed) ...
        raise OSError("disk full")  # ... then the import dies

    monkeypatch.setattr(lake.objects, "put_many", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        import_pascal_voc(lake, tmp_path / "src")
    assert lake.snapshot().pins == before
