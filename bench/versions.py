"""Dataset versions: commit cost, child-commit cost, to_arrow vs raw Lance, streaming memory."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

import lakecore

ANCHOR_COMMIT_S = 0.0008  # per manifest entry, reference/anchor-live-run.md
ANCHOR_RESOLVE_S = 0.008  # per datum
MEMORY_CAP_MB = 1024
STREAM_BYTES = 11 * MEMORY_CAP_MB * 2**20 // 2  # a version 5.5x the memory cap


def _lake_with_datums(path: Path, n: int, meta_bytes: int = 0) -> tuple[lakecore.Lake, pa.Array]:
    """A lake of ``n`` assets and datums (each datum's metadata padded to ``meta_bytes``)."""
    lake = lakecore.connect(path)
    assets = lake.assets.add_many([i.to_bytes(8, "big") for i in range(n)], kind="blob")
    asset_ids = assets["asset_id"].to_pylist()
    pad = "x" * meta_bytes
    step = n if meta_bytes * n <= 1 << 30 else max((1 << 28) // max(meta_bytes, 1), 1)
    ids = []
    for start in range(0, n, step):  # large metadata: chunks of ~256 MB
        part = range(start, min(start + step, n))
        rows = pa.table(
            {
                "assets": pa.array(
                    [[("image", asset_ids[i])] for i in part], pa.map_(pa.string(), pa.string())
                ),
                "split": ["train" if i % 10 else "val" for i in part],
                "metadata": [f'{{"i": {i}, "pad": "{pad}"}}' for i in part],
            }
        )
        ids.append(lake.datums.add_many(rows)["datum_id"].combine_chunks())
    lake.wait()  # the background index refresh: not part of what is timed next
    return lake, pa.concat_arrays(ids)


def run(size: int) -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="lakecore-bench-"))
    try:
        lake, ids = _lake_with_datums(work / "lake", size)
        t0 = time.perf_counter()
        v1 = lake.datasets.builder("bench").add(ids).commit("1")
        full = time.perf_counter() - t0
        lake.wait()
        full_indexed = time.perf_counter() - t0
        k = max(size // 100, 1)
        extra, _ = _more(lake, k)
        lake.wait()  # each commit timed alone (a background index refresh holds the lease)
        t0 = time.perf_counter()
        lake.datasets.builder("bench", parent="latest").add(extra).remove(ids[:k]).commit("2")
        child = time.perf_counter() - t0
        few, _ = _more(lake, 5)
        lake.wait()
        t0 = time.perf_counter()
        lake.datasets.builder("bench", parent="latest").add(few).remove(ids[k : k + 5]).commit("3")
        tiny = time.perf_counter() - t0
        lake.wait()
        fresh = lakecore.connect(work / "lake").datasets.get("bench", "1")
        t0 = time.perf_counter()
        table = fresh.to_arrow()
        read = time.perf_counter() - t0
        ds = v1.snapshot.dataset("datums")
        t0 = time.perf_counter()
        raw = ds.to_table(columns=["datum_id", "split", "assets", "metadata", "created_at"])
        raw_t = time.perf_counter() - t0
        assert table.num_rows == size and raw.num_rows == size
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stream = streaming(min(size, 50_000), STREAM_BYTES // min(size, 50_000))
    return [
        {
            "case": f"commit a version of {size} datums",
            "lakecore": full,
            "baseline": size * ANCHOR_COMMIT_S,
            "baseline_name": "anchor (0.8 ms/entry)",
            "ratio": size * ANCHOR_COMMIT_S / full,
            "unit": "s",
            "goal": "<= 1% of anchor (ratio >= 100)",
        },
        {
            "case": "  until its background index refresh (membership rows) has landed",
            "lakecore": full_indexed,
            "unit": "s",
            "goal": "(informative)",
        },
        {
            "case": f"commit a child changing 1% ({2 * k} datums)",
            "lakecore": child,
            "baseline": full,
            "baseline_name": "full commit",
            "ratio": child / full,
            "unit": "s",
            "goal": "ratio <= 0.05",
        },
        {
            "case": "  a child changing 10 datums (the fixed cost of a commit)",
            "lakecore": tiny,
            "baseline": full,
            "baseline_name": "full commit",
            "ratio": tiny / full,
            "unit": "s",
            "goal": "(informative: child cost = this + O(changes))",
        },
        {
            "case": f"to_arrow() of {size} datums (fresh handle)",
            "lakecore": read,
            "baseline": raw_t,
            "baseline_name": "raw Lance scan, same rows",
            "ratio": raw_t / read,
            "unit": "s",
            "goal": "ratio >= 0.5",
        },
        {
            "case": f"  resolve vs anchor ({size} datums)",
            "lakecore": read,
            "baseline": size * ANCHOR_RESOLVE_S,
            "baseline_name": "anchor (8 ms/datum)",
            "ratio": size * ANCHOR_RESOLVE_S / read,
            "unit": "s",
            "goal": "ratio >= 1000",
        },
        stream,
    ]


def _more(lake: lakecore.Lake, k: int) -> tuple[pa.Array, None]:
    assets = lake.assets.add_many([b"extra" + i.to_bytes(8, "big") for i in range(k)], kind="blob")
    datums = lake.datums.add_many(
        [{"assets": {"image": a}} for a in assets["asset_id"].to_pylist()]
    )
    return datums["datum_id"].combine_chunks(), None


def _peak_mb() -> float:
    """This process's peak RSS (VmHWM; ru_maxrss would include the parent's peak at spawn)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> None:
    """Start the peak RSS afresh (Linux: writing 5 to clear_refs resets VmHWM)."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _stream_child(uri: str, batch: int, out: Any) -> None:
    _reset_peak()
    lake = lakecore.connect(uri)
    version = lake.datasets.get("s")
    base = _peak_mb()
    rows = 0
    nbytes = 0
    for b in version.to_batches(batch_size=batch):
        rows += b.num_rows
        nbytes += b.nbytes
    out["rows"], out["bytes"] = rows, nbytes
    out["peak_mb"] = _peak_mb()
    out["base_mb"] = base


def streaming(n: int, meta_bytes: int) -> dict[str, Any]:
    """Peak RSS while streaming a version whose rows total about ``n * meta_bytes`` bytes."""
    work = Path(tempfile.mkdtemp(prefix="lakecore-bench-"))
    try:
        lake, ids = _lake_with_datums(work / "lake", n, meta_bytes)
        lake.datasets.builder("s").add(ids).commit("1")
        ctx = mp.get_context("spawn")
        with ctx.Manager() as manager:
            out = manager.dict()
            p = ctx.Process(target=_stream_child, args=(str(work / "lake"), 1024, out))
            p.start()
            p.join()
            got = dict(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size_mb = got["bytes"] / 2**20
    return {
        "case": f"stream a {size_mb:.0f} MB version (to_batches 1024): peak RSS "
        f"(process before streaming: {got['base_mb']:.0f} MB)",
        "lakecore": got["peak_mb"],
        "baseline": size_mb,
        "baseline_name": "version size",
        "ratio": got["peak_mb"] / size_mb,
        "unit": "MB",
        "goal": f"peak <= {MEMORY_CAP_MB} MB",
    }
