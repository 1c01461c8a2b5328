"""YOLO importer and exporter: a generated detection + segmentation set (local and S3),
COCO128 from the shared data, malformed input, and the import/export command line."""

from __future__ import annotations

import json

import pytest
import typer
from conftest import SHARED_DATA
from PIL import Image
from typer.testing import CliRunner

import lakecore
from lakecore.cli.io import export_app, import_app
from lakecore.errors import IngestError
from lakecore.exporters import export_yolo
from lakecore.importers import import_yolo

SAMPLE = SHARED_DATA / "coco-sample" / "yolo"
NAMES = {0: "cat", 1: "dog", 2: "bird"}


def make_yolo(root):
    """train: a.jpg (2 boxes), b.png (polygon + box), neg.jpg (no label file), empty.jpg
    (empty label file); val (through an image list): c.jpg (a box reaching outside)."""
    sizes = {
        "train/a.jpg": (64, 48),
        "train/b.png": (32, 32),
        "train/neg.jpg": (20, 10),
        "train/empty.jpg": (20, 10),
        "val/c.jpg": (40, 40),
    }
    for rel, size in sizes.items():
        path = root / "images" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (10, 20, 30)).save(path)
    labels = {
        "train/a.txt": "0 0.5 0.5 0.25 0.5\n2 0.125 0.25 0.25 0.5\n",
        "train/b.txt": "1 0.25 0.25 0.75 0.25 0.5 0.75\n0 0.5 0.5 0.5 0.5\n",
        "train/empty.txt": "",
        "val/c.txt": "1 0.9 0.5 0.4 0.5\n",
    }
    for rel, text in labels.items():
        path = root / "labels" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "val.txt").write_text("./images/val/c.jpg\n")
    (root / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: val.txt\nnames:\n"
        + "".join(f"  {k}: {v}\n" for k, v in NAMES.items())
    )
    return root / "data.yaml"


def _lines(path):
    return [[float(v) for v in line.split()] for line in path.read_text().splitlines()]


def _close(a, b, tol=1e-5):
    return len(a) == len(b) and all(
        len(x) == len(y) and all(abs(p - q) <= tol for p, q in zip(x, y, strict=True))
        for x, y in zip(a, b, strict=True)
    )


def test_round_trip_generated(lake, tmp_path):
    data = make_yolo(tmp_path / "src")
    summary = import_yolo(lake, data, dataset="pets")
    assert summary.datums == 5 and summary.splits == {"train": 4, "val": 1}
    assert summary.counts == {"bbox": 4, "polygon": 1}
    assert any(
        "2 negative images (1 without a label file, 1 with an empty one)" in n
        for n in summary.notes
    )
    (clipped,) = summary.warnings
    assert clipped.code == "box_clipped" and clipped.examples == ["labels/val/c.txt:1"]
    records = lake.datasets.get("pets").annotations().to_pylist()
    box = next(
        r for r in records if r["label"] == "cat" and r["kind"] == "bbox" and r["bbox"][2] == 16.0
    )
    assert box["bbox"] == [24.0, 12.0, 16.0, 24.0]  # 0.5 0.5 0.25 0.5 of 64 x 48
    assert box["label_id"] == 0

    out = tmp_path / "out"
    result = export_yolo(lake, "pets", out)
    assert [w.code for w in result.warnings] == ["yolo_detect_polygon", "yolo_box_from_polygon"]
    src = tmp_path / "src" / "labels"
    assert _close(_lines(out / "labels/train/a.txt"), _lines(src / "train/a.txt"))
    # the polygon-only object gets the polygon's box (and a warning)
    assert _lines(out / "labels/train/b.txt") == [[1, 0.5, 0.5, 0.5, 0.5], [0, 0.5, 0.5, 0.5, 0.5]]
    assert _close(_lines(out / "labels/val/c.txt"), [[1, 0.85, 0.5, 0.3, 0.5]])  # clipped
    assert not (out / "labels/train/neg.txt").exists()
    assert (out / "labels/train/empty.txt").read_text() == ""
    assert (out / "images/train/b.png").read_bytes() == (
        tmp_path / "src/images/train/b.png"
    ).read_bytes()
    import yaml

    doc = yaml.safe_load((out / "data.yaml").read_text())
    assert doc["names"] == NAMES and doc["train"] == "images/train" and doc["val"] == "images/val"

    seg = export_yolo(lake, "pets", tmp_path / "seg", task="segment")
    assert {w.code for w in seg.warnings} == {"yolo_box_as_polygon"}
    b = _lines(tmp_path / "seg/labels/train/b.txt")
    assert _close(b[:1], _lines(src / "train/b.txt")[:1])


def test_coco128_sample(tmp_path):
    """The real sample on local disk (the generated set covers every feature on S3 too)."""
    if not SAMPLE.is_dir():
        pytest.skip(f"../shared/data not present: {SAMPLE} is missing")
    lake = lakecore.connect(tmp_path / "lake")
    summary = import_yolo(lake, SAMPLE / "config.yaml", dataset="coco128")
    assert summary.datums == 14 and summary.splits == {"train": 11, "val": 3}
    rows = lake.datasets.get("coco128").to_arrow().to_pylist()
    negative = next(r for r in rows if json.loads(r["metadata"])["file_name"] == "000000000250.jpg")
    records = lake.datasets.get("coco128").annotations()
    assert negative["datum_id"] not in set(records["datum_id"].to_pylist())
    out = tmp_path / "out"
    result = export_yolo(lake, "coco128", out)
    assert not result.warnings and result.images == 14
    for label in (SAMPLE / "labels").rglob("*.txt"):  # byte-identical label files
        assert (out / label.relative_to(SAMPLE)).read_text() == label.read_text(), label
    assert not (out / "labels/train2017/000000000250.txt").exists()


@pytest.mark.parametrize(
    ("label", "yaml_extra", "message"),
    [
        ("7 0.5 0.5 0.1 0.1\n", "", r"labels/train/a\.txt:1: class 7 is not in names"),
        ("0 0.5 x 0.1 0.1\n", "", r"labels/train/a\.txt:1: expected 'class x y \.\.\.'"),
        ("0 0.5 0.5 0.1\n", "", r"labels/train/a\.txt:1: 4 values"),
        ("0 0.5 0.5 0.1 -0.1\n", "", r"a\.txt:1: negative box width or height"),
        (None, "nc: 5\n", r"data\.yaml: nc is 5 but names lists 3 classes"),
        (None, "test: images/nowhere\n", r"images/nowhere.* is neither an image folder"),
    ],
    ids=["class", "token", "short", "negative", "nc", "missing-dir"],
)
def test_malformed_input_writes_nothing(tmp_path, label, yaml_extra, message):
    lake = lakecore.connect(tmp_path / "lake")
    data = make_yolo(tmp_path / "src")
    if label is not None:
        (tmp_path / "src/labels/train/a.txt").write_text(label)
    data.write_text(data.read_text() + yaml_extra)
    pins = lake.snapshot().pins
    with pytest.raises(IngestError, match=message):
        import_yolo(lake, data, dataset="bad")
    assert lake.snapshot().pins == pins


def test_command_line(tmp_path):
    app = typer.Typer()
    app.add_typer(import_app, name="import")
    app.add_typer(export_app, name="export")
    runner = CliRunner()
    lake = str(tmp_path / "lake")
    data = make_yolo(tmp_path / "src")
    done = runner.invoke(
        app, ["import", "yolo", "--data", str(data), "--dataset", "pets", "--lake", lake, "--json"]
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["ref"] == "pets@1.0.0"
    again = runner.invoke(
        app, ["import", "yolo", "--data", str(data), "--dataset", "pets", "--lake", lake]
    )
    assert again.exit_code != 0  # the version exists already
    out = tmp_path / "out"
    done = runner.invoke(
        app,
        [
            "export",
            "yolo",
            "--dataset",
            "pets",
            "--out",
            str(out),
            "--lake",
            lake,
            "--task",
            "segment",
        ],
    )
    assert done.exit_code == 0, done.output
    assert "exported pets@1.0.0" in done.output and (out / "data.yaml").is_file()
    done = runner.invoke(
        app,
        [
            "export",
            "coco",
            "--dataset",
            "pets",
            "--out",
            str(tmp_path / "coco"),
            "--lake",
            lake,
            "--json",
        ],
    )
    assert done.exit_code == 0 and json.loads(done.output)["images"] == 5
    done = runner.invoke(
        app,
        [
            "export",
            "voc",
            "--dataset",
            "pets",
            "--version",
            "1.0.0",
            "--out",
            str(tmp_path / "voc"),
            "--lake",
            lake,
            "--json",
        ],
    )
    assert done.exit_code == 0 and json.loads(done.output)["records"]["bbox"] == 4
    failed = runner.invoke(
        app,
        [
            "import",
            "voc",
            "--root-dir",
            str(tmp_path / "none"),
            "--download",
            "--url",
            "http://127.0.0.1:9/voc.tar",
            "--lake",
            lake,
        ],
    )
    assert isinstance(failed.exception, IngestError)
