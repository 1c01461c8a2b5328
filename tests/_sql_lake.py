"""A small lake for the SQL tests, built with the entity API, and helpers to compare results."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

LABELS = ["cat", "dog", "person", "helmet"]


@dataclass
class Small:
    """What :func:`populate` made."""

    assets: list[str]
    datums: list[str]
    gt: str
    pred: str
    schema: str
    collection: str


def populate(lake: Any, n: int = 8) -> Small:
    """n assets (aliased), n datums, a gt set (2 boxes per datum + 1 classification) and a
    pred set (the gt boxes shifted, with scores), a collection of 3 assets."""
    assets = lake.assets.add_many([f"image-{i}".encode() for i in range(n)], kind="blob")
    aids = assets["asset_id"].to_pylist()
    lake.aliases.set_many([f"cams/{i:04d}.jpg" for i in range(n)], aids)
    datums = lake.datums.add_many(
        [
            {
                "assets": {"image": a},
                "split": "val" if i % 3 == 0 else "train",
                "metadata": {"i": i, "camera": "front" if i % 2 else "back"},
            }
            for i, a in enumerate(aids)
        ]
    )
    dids = datums["datum_id"].to_pylist()
    schema = lake.annotations.create_schema(
        "shapes",
        task_type="detection",
        labels=LABELS,
        allowed_kinds=["bbox", "classification"],
        allow_scores=True,
        attributes=[{"name": "occluded", "type": "bool"}],
    )
    gt = lake.annotations.create_set("gt", schema_id=schema.schema_id)
    pred = lake.annotations.create_set(
        "yolo", purpose="prediction", source_kind="model", schema_id=schema.schema_id
    )
    rows: dict[str, list[Any]] = {
        k: [] for k in ("datum_id", "asset_id", "kind", "label", "bbox", "attributes")
    }
    for i, (d, a) in enumerate(zip(dids, aids, strict=True)):
        # a person on every datum, a helmet on every other one
        for label, box in (
            ("person", [10.0 * i, 20.0, 30.0, 60.0]),
            (LABELS[i % 4], [5.0, 5.0, 10.0 + i, 10.0]),
        ):
            rows["datum_id"].append(d)
            rows["asset_id"].append(a)
            rows["kind"].append("bbox")
            rows["label"].append(label)
            rows["bbox"].append(box)
            rows["attributes"].append(json.dumps({"occluded": i % 2 == 0}))
    rows["datum_id"].append(dids[0])
    rows["asset_id"].append(aids[0])
    rows["kind"].append("classification")
    rows["label"].append("cat")
    rows["bbox"].append(None)
    rows["attributes"].append("{}")
    lake.annotations.add(gt.set_id, pa.table(rows))
    boxes = [b for b in rows["bbox"] if b is not None]
    n_boxes = len(boxes)
    lake.annotations.add(
        pred.set_id,
        pa.table(
            {
                "datum_id": rows["datum_id"][:n_boxes],
                "asset_id": rows["asset_id"][:n_boxes],
                "kind": ["bbox"] * n_boxes,
                "label": rows["label"][:n_boxes],
                "bbox": [[b[0] + 1.0, b[1], b[2], b[3]] for b in boxes],
                "score": [0.5 + (i % 5) / 10 for i in range(n_boxes)],
            }
        ),
    )
    coll = lake.collections.create("batch-1")
    lake.collections.add(coll.collection_id, aids[:3], split="train")
    return Small(aids, dids, gt.set_id, pred.set_id, schema.schema_id, coll.collection_id)


def _norm(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, list):
        # Arrow maps come back as lists of (key, value) pairs in both engines
        return [_norm(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_norm(v) for v in value)
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    return value


def rows_by(table: pa.Table, key: str) -> dict[Any, dict[str, Any]]:
    """Rows keyed by ``key``, floats rounded: compare two tables whatever their row order."""
    return {r[key]: _norm(r) for r in table.to_pylist()}
