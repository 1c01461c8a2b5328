"""Entity ingest: assets + datums + box records, vs the anchor system and vs raw Lance writes."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lance
import numpy as np
import pyarrow as pa

import lakecore
from lakecore.storage.payloads import new_table_schema
from lakecore.tables import entity_specs

ANCHOR_ASSET_S = 0.0085  # measured per asset (4 KiB payload), reference/anchor-live-run.md
ANCHOR_DATUM_S = 0.0176  # measured per datum with 5 boxes
LABELS = ["cat", "dog", "person", "car", "bird"]


def _records(
    datum_ids: pa.Array, asset_ids: pa.Array, per: int, rng: np.random.Generator
) -> pa.Table:
    n = len(datum_ids) * per
    idx = np.repeat(np.arange(len(datum_ids)), per)
    boxes = rng.uniform(0, 500, size=(n, 4)).astype(np.float32)
    return pa.table(
        {
            "datum_id": datum_ids.take(pa.array(idx)),
            "asset_id": asset_ids.take(pa.array(idx)),
            "kind": pa.array(["bbox"] * n),
            "label": pa.array(np.array(LABELS)[rng.integers(0, len(LABELS), n)]),
            "bbox": pa.FixedSizeListArray.from_arrays(pa.array(boxes.ravel()), 4),
        }
    )


def ingest(size: int, per: int = 5, payload: int = 4096, repeats: int = 5) -> list[dict[str, Any]]:
    """``size`` assets with ``payload``-byte payloads, ``size`` datums, ``per`` boxes each.

    Run ``repeats`` times on fresh lakes, lakecore and raw Lance in the same round; each figure
    is the median of its rounds (single runs on this 2-vCPU machine varied by up to 2x).
    """
    rounds = [_ingest_once(size, per, payload) for _ in range(repeats)]
    t_assets, t_datums, t_boxes, raw = (statistics.median(r[i] for r in rounds) for i in range(4))
    boxes_written = rounds[0][4]
    total = t_assets + t_datums + t_boxes
    anchor = size * (ANCHOR_ASSET_S + ANCHOR_DATUM_S)
    return [
        {
            "case": (
                f"ingest {size} assets (4 KiB) + {size} datums + {boxes_written} boxes "
                f"(median of {repeats} rounds)"
            ),
            "lakecore": total,
            "baseline": anchor,
            "baseline_name": "anchor system (measured/item)",
            "ratio": anchor / total,
            "unit": "s",
            "goal": "ratio >= 1000 (<= 0.26 s at 10k)",
        },
        {
            "case": "  same rows, raw Lance writes (no validation, not atomic)",
            "lakecore": total,
            "baseline": raw,
            "baseline_name": "raw lance.write_dataset",
            "ratio": raw / total,
            "unit": "s",
            "goal": "ratio >= 0.5 (>= 50% of raw throughput)",
        },
        {"case": "  assets.add_many", "lakecore": t_assets, "unit": "s", "goal": ""},
        {"case": "  datums.add_many", "lakecore": t_datums, "unit": "s", "goal": ""},
        {"case": "  annotations.add", "lakecore": t_boxes, "unit": "s", "goal": ""},
    ]


def _ingest_once(size: int, per: int, payload: int) -> tuple[float, float, float, float, int]:
    """One round: (assets, datums, annotations, raw Lance) seconds and the boxes written."""
    rng = np.random.default_rng(0)
    blobs = [os.urandom(payload) for _ in range(size)]
    work = Path(tempfile.mkdtemp(prefix="lakecore-bench-"))
    try:
        lake = lakecore.connect(work / "lake")
        schema = lake.annotations.create_schema(
            "b", task_type="detection", labels=LABELS, allowed_kinds=["bbox"]
        )
        gt = lake.annotations.create_set("gt", schema_id=schema.schema_id)
        # Only the three calls are timed; building their Arrow input from the previous call's
        # ids is not (the raw Lance side gets its tables ready-made as well).
        t0 = time.perf_counter()
        assets = lake.assets.add_many(blobs, kind="blob")
        t_assets = time.perf_counter() - t0
        rows = pa.table(
            {
                "assets": pa.array(
                    [[("image", a)] for a in assets["asset_id"].to_pylist()],
                    pa.map_(pa.string(), pa.string()),
                ),
                "split": ["train"] * size,
            }
        )
        t0 = time.perf_counter()
        datums = lake.datums.add_many(rows)
        t_datums = time.perf_counter() - t0
        boxes = _records(
            datums["datum_id"].combine_chunks(), assets["asset_id"].combine_chunks(), per, rng
        )
        t0 = time.perf_counter()
        written = lake.annotations.add(gt.set_id, boxes)
        t_boxes = time.perf_counter() - t0
        # raw Lance: the same Arrow rows (and payloads in a blob column), no validation/atomicity
        snap = lake.snapshot()
        same = {n: snap.to_table(n) for n in ("assets", "datums", "annotation_records")}
        blob_rows = (
            lake.objects.mount("lake")
            .dataset(refresh=True)
            .scanner(columns=["sha256", "size"])
            .to_table()
        )
        # The blob field, with its marker and layout (what lakecore's payload table is made
        # with), must be on the table's own schema: ``write_dataset`` ignores the field
        # metadata of a ``schema=`` argument given with a Table (the column was then written
        # as plain large_binary, about half the work of the blob column lakecore writes)
        payload_table = blob_rows.append_column(
            new_table_schema().field("data"), pa.array(blobs, pa.large_binary())
        )
        r0 = time.perf_counter()
        lance.write_dataset(payload_table, str(work / "raw-blobs.lance"))
        for name, table in same.items():
            lance.write_dataset(table, str(work / f"raw-{name}.lance"))
        raw = time.perf_counter() - r0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return t_assets, t_datums, t_boxes, raw, written.num_rows


def _add_records(n: int, work: Path) -> tuple[float, float, pa.Table]:
    """Time ``annotations.add`` of ``n`` box records on a fresh lake, and until the background
    index refresh it started has landed. Returns (add s, ready s, rows written)."""
    rng = np.random.default_rng(1)
    lake = lakecore.connect(work)
    assets = lake.assets.add_many([i.to_bytes(4, "big") for i in range(1000)], kind="blob")
    schema = lake.annotations.create_schema(
        "b", task_type="detection", labels=LABELS, allowed_kinds=["bbox"]
    )
    gt = lake.annotations.create_set("gt", schema_id=schema.schema_id)
    ids = assets["asset_id"].combine_chunks()
    per = n // len(ids)
    table = _records(pa.nulls(len(ids), pa.string()), ids, per, rng).drop_columns(["datum_id"])
    t0 = time.perf_counter()
    written = lake.annotations.add(gt.set_id, table)
    add = time.perf_counter() - t0
    lake.wait()
    return add, time.perf_counter() - t0, written


def _raw_indexed(table: pa.Table, uri: str, indices: list[tuple[str, str]]) -> float:
    """Seconds for raw Lance to write ``table`` and build the same scalar indices."""
    t0 = time.perf_counter()
    ds = lance.write_dataset(table, uri)
    for column, kind in indices:
        ds.create_scalar_index(column, kind, name=f"{column}_idx")
    return time.perf_counter() - t0


def records_only(n: int, repeats: int = 5) -> list[dict[str, Any]]:
    """``annotations.add`` of n box records vs a raw Lance write of the same table (median of
    ``repeats`` rounds on fresh lakes, each system once per round).

    The add returns once the rows are committed; large adds refresh the table's scalar
    indices in a background commit right after. Also reported: the time until that refresh
    has landed, against raw Lance writing the rows and building the same indices.
    """
    rounds = []
    for _ in range(repeats):
        work = Path(tempfile.mkdtemp(prefix="lakecore-bench-"))
        try:
            add, ready, written = _add_records(n, work / "lake")
            r0 = time.perf_counter()
            lance.write_dataset(written, str(work / "raw.lance"))
            raw = time.perf_counter() - r0
            indices = list(entity_specs()["annotation_records"].indices)
            raw_indexed = _raw_indexed(written, str(work / "raw-indexed.lance"), indices)
            rounds.append((add, ready, raw, raw_indexed))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    add, ready, raw, raw_indexed = (statistics.median(r[i] for r in rounds) for i in range(4))
    return [
        {
            "case": (
                f"annotations.add of {written.num_rows} box records (median of {repeats}; "
                "returns once committed)"
            ),
            "lakecore": add,
            "baseline": raw,
            "baseline_name": "raw lance.write_dataset",
            "ratio": raw / add,
            "unit": "s",
            "goal": "ratio >= 0.5",
        },
        {
            "case": f"  until its background index refresh has landed ({len(indices)} indices)",
            "lakecore": ready,
            "baseline": raw_indexed,
            "baseline_name": "raw write + create_scalar_index of the same indices",
            "ratio": raw_indexed / ready,
            "unit": "s",
            "goal": "(informative)",
        },
    ]
