"""The README's demo: a small synthetic detection dataset, end to end, in a local lake.

``python -m lakecore.demo [--lake ./demo-lake] [--images 48]``. It needs nothing outside the
repository: shapes are drawn with Pillow, so every box, polygon and mask is exact.
"""

from __future__ import annotations

import argparse
import io
import math
import random
import shlex
import sys
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image, ImageDraw

import lakecore

LABELS = ["square", "circle", "triangle"]
SIZE = 128
PNG_MAGIC = b"\x89PNG"


def _polygon(label: str, x: int, y: int, w: int, h: int) -> list[tuple[float, float]]:
    if label == "square":
        return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    if label == "triangle":
        return [(x + w / 2, y), (x + w, y + h), (x, y + h)]
    cx, cy, rx, ry = x + w / 2, y + h / 2, w / 2, h / 2
    return [
        (cx + rx * math.cos(t * math.pi / 8), cy + ry * math.sin(t * math.pi / 8))
        for t in range(16)
    ]


def draw_sample(rng: random.Random) -> tuple[bytes, bytes, list[dict[str, Any]]]:
    """One RGB PNG, its instance mask PNG (pixel value = instance number) and the shapes."""
    img = Image.new("RGB", (SIZE, SIZE), tuple(rng.randrange(48) for _ in range(3)))
    mask = Image.new("L", (SIZE, SIZE), 0)
    draw, mdraw = ImageDraw.Draw(img), ImageDraw.Draw(mask)
    shapes = []
    for instance in range(1, rng.randint(1, 3) + 1):
        label = rng.choice(LABELS)
        w, h = rng.randint(18, 44), rng.randint(18, 44)
        x, y = rng.randint(0, SIZE - w - 1), rng.randint(0, SIZE - h - 1)
        poly = _polygon(label, x, y, w, h)
        color = tuple(rng.randint(128, 255) for _ in range(3))
        draw.polygon(poly, fill=color)
        mdraw.polygon(poly, fill=instance)
        xs, ys = [p[0] for p in poly], [p[1] for p in poly]
        shapes.append(
            {
                "label": label,
                "instance": instance,
                "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                "polygon": [c for p in poly for c in p],
            }
        )
    out = []
    for picture in (img, mask):
        buf = io.BytesIO()
        picture.save(buf, format="PNG")
        out.append(buf.getvalue())
    return out[0], out[1], shapes


def build(lake: lakecore.Lake, n: int, seed: int = 0) -> lakecore.Lake:
    """Put ``n`` synthetic samples into ``lake`` and commit ``shapes@1.0.0``."""
    rng = random.Random(seed)
    samples = [draw_sample(rng) for _ in range(n)]
    images = lake.assets.add_many(
        [s[0] for s in samples],
        kind="image",
        metadata=[{"source": "demo", "index": i} for i in range(n)],
    )
    masks = lake.assets.add_many([s[1] for s in samples], kind="mask")
    splits = ["val" if i % 5 == 0 else "train" for i in range(n)]
    datums = lake.datums.add_many(
        pa.table(
            {
                "assets": pa.array(
                    [
                        [("image", a), ("mask", m)]
                        for a, m in zip(
                            images["asset_id"].to_pylist(),
                            masks["asset_id"].to_pylist(),
                            strict=True,
                        )
                    ],
                    pa.map_(pa.string(), pa.string()),
                ),
                "split": splits,
            }
        )
    )
    schema = lake.annotations.create_schema(
        "shapes",
        task_type="instance_segmentation",
        labels=LABELS,
        allowed_kinds=["bbox", "polygon", "mask"],
    )
    gt = lake.annotations.create_set("shapes-gt", schema_id=schema.schema_id)
    cols: dict[str, list[Any]] = {
        k: []
        for k in (
            "datum_id",
            "asset_id",
            "kind",
            "label",
            "bbox",
            "polygon",
            "mask_asset_id",
            "mask_value",
        )
    }
    for datum, image, mask, (_, _, shapes) in zip(
        datums["datum_id"].to_pylist(),
        images["asset_id"].to_pylist(),
        masks["asset_id"].to_pylist(),
        samples,
        strict=True,
    ):
        for s in shapes:
            for kind in ("bbox", "polygon", "mask"):
                cols["datum_id"].append(datum)
                cols["asset_id"].append(image)
                cols["kind"].append(kind)
                cols["label"].append(s["label"])
                cols["bbox"].append(s["bbox"] if kind == "bbox" else None)
                cols["polygon"].append([{"exterior": s["polygon"]}] if kind == "polygon" else None)
                cols["mask_asset_id"].append(mask if kind == "mask" else None)
                cols["mask_value"].append(s["instance"] if kind == "mask" else None)
    lake.annotations.add(gt.set_id, pa.table(cols))
    lake.datasets.builder("shapes").add(datums["datum_id"]).commit(
        "1.0.0", message="synthetic shapes from the demo", author="demo", tags=["prod"]
    )
    return lake


def _positive(text: str) -> int:
    """An ``--images`` count: a whole number >= 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lakecore.demo", description=__doc__)
    parser.add_argument("--lake", default="./demo-lake", help="lake folder (or URI) to fill")
    parser.add_argument(
        "--images", type=_positive, default=48, help="synthetic images to draw (>= 1)"
    )
    args = parser.parse_args(argv)
    lake = lakecore.connect(args.lake)
    if lake.datasets.exists("shapes", "1.0.0"):
        print(f"{lake.uri} already holds shapes@1.0.0 (delete the folder to rebuild it)")
    else:
        build(lake, args.images)
    version = lake.datasets.get("shapes", "prod")
    print(f"lake {lake.info.lake_id} at {lake.uri}")
    summary = lake.summary()
    print(
        f"  {summary['tables']['assets']} assets, {summary['tables']['datums']} datums, "
        f"{summary['tables']['annotation_records']} annotation records, "
        f"{summary['payloads']['count']} payloads ({summary['payloads']['bytes']} bytes)"
    )
    stats = version.stats()
    print(f"dataset {version.ref} (tag prod): {stats['datums']} datums, splits {stats['splits']}")
    boxes = version.annotations(columns=["kind", "label", "bbox", "datum_id", "asset_id"])
    boxes = boxes.filter(pc.equal(boxes["kind"], "bbox"))
    flat = pc.list_flatten(boxes["bbox"]).to_numpy().reshape(-1, 4)
    area = pa.array(flat[:, 2] * flat[:, 3])
    table = (
        pa.table({"label": boxes["label"], "area": area})
        .group_by("label")
        .aggregate([("area", "count"), ("area", "mean")])
        .sort_by("label")
    )
    print("query: boxes per label and mean box area in", version.ref)
    for row in table.to_pylist():
        print(
            f"  {row['label']:<9} {row['area_count']:>4} boxes, mean area {row['area_mean']:.0f} px"
        )
    first = version.head(1)["datum_id"][0].as_py()
    png = version.payloads([first])[0]
    is_png = png.startswith(PNG_MAGIC)
    print(f"payload of {first}: {len(png)} bytes, PNG: {is_png}")
    where = shlex.quote(str(args.lake))
    print(f"look at it from the shell: lakecore info --lake {where}")
    print(f"  or: export LAKECORE_LAKE={where}; lakecore datasets show shapes@prod")
    return 0


if __name__ == "__main__":
    sys.exit(main())
