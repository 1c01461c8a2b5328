"""Training dataloaders: lakecore vs Lance's own torch loader and HF datasets, streaming
throughput vs plain files with a thread pool (warm and cold), peak memory while streaming.

``run(size)``: ``size`` samples of 4 KiB + a label through a DataLoader with 2 spawn workers
(lakecore shuffled, exactly once and resumable; Lance unshuffled, the same rows in a Lance
dataset of 10 fragments; HF map-style, shuffled), every epoch checked for duplicates, missing
rows and byte-exact payloads; then ``size * 2 // 5`` payloads of 100 KB streamed as bytes vs
reading the same files with a thread pool, warm and cold; then the peak RSS of a process that
streams that whole version.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import random
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

import lakecore
from bench._common import drop_caches

NOTES = [
    "lakecore: to_torch(batch_size=256, decode='uint8', annotations='label'), seeded global "
    "shuffle, exactly once, resumable; ds.loader(num_workers=2) spawns, persistent workers",
    "lance: lance.torch.data.LanceDataset(batch_size=256, custom to_tensor_fn for binary), "
    "sequential (no shuffle), Lance dataset of 10 fragments, same rows",
    "hf: datasets load_from_disk (10 shards), with_format('numpy'), DataLoader shuffle=True; "
    "its binary values lose trailing zero bytes (counted as wrong bytes)",
    "epochs interleaved across loaders; rows/s = median of 3 warm epochs; every epoch checked "
    "for duplicates and missing rows, one extra epoch for exact bytes",
    "payloads end in i % 17 zero bytes; cold = after dropping the page cache (root)",
]
BATCH = 256
EPOCHS = 3  # timed (warm) epochs per loader, after one cold epoch that includes worker spawn


def _payload(i: int, size: int) -> bytes:
    """Deterministic random bytes ending in ``i % 17`` zero bytes (byte-exactness matters)."""
    zeros = i % 17
    body = random.Random(i).randbytes(size - zeros)
    return body + bytes(zeros)


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=12).digest()


# -- data ------------------------------------------------------------------------------------
def _build_small(work: Path, size: int) -> tuple[Any, dict[str, bytes], str]:
    """A lake version (4 KiB payload + classification label) and a Lance dataset of the same
    rows; returns the version, id -> payload digest, and the Lance dataset URI."""
    import lance

    blobs = [_payload(i, 4096) for i in range(size)]
    labels = [i % 10 for i in range(size)]
    lake = lakecore.connect(work / "lake")
    assets = lake.assets.add_many(blobs, kind="blob")
    datums = lake.datums.add_many(
        pa.table(
            {
                "assets": pa.array(
                    [[("data", a)] for a in assets["asset_id"].to_pylist()],
                    pa.map_(pa.string(), pa.string()),
                )
            }
        )
    )
    ids = datums["datum_id"].to_pylist()
    schema = lake.annotations.create_schema(
        "digits",
        task_type="classification",
        labels=[f"c{k}" for k in range(10)],
        allowed_kinds=["classification"],
    )
    gt = lake.annotations.create_set("digits-gt", schema_id=schema.schema_id)
    lake.annotations.add(
        gt.set_id,
        pa.table(
            {
                "datum_id": ids,
                "kind": ["classification"] * size,
                "label": [f"c{k}" for k in labels],
            }
        ),
    )
    version = lake.datasets.builder("bench").add(datums["datum_id"]).commit("1")
    uri = str(work / "plain.lance")
    lance.write_dataset(
        pa.table(
            {
                "id": pa.array(ids, pa.string()),
                "label": pa.array(labels, pa.int64()),
                "data": pa.array(blobs, pa.large_binary()),
            }
        ),
        uri,
        max_rows_per_file=max(size // 10, 1),
    )
    expected = {i: _digest(b) for i, b in zip(ids, blobs, strict=True)}
    return version, expected, uri


# -- loaders ---------------------------------------------------------------------------------
def _lance_tensors(batch: pa.RecordBatch, **_: Any) -> dict[str, Any]:
    """Lance's default to_tensor_fn refuses binary columns: one copy into a [B, 4096] tensor."""
    import torch

    data = batch.column("data")
    n = len(data)
    offsets = np.frombuffer(data.buffers()[1], np.int64)[data.offset : data.offset + n + 1]
    values = np.frombuffer(data.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    return {
        "id": batch.column("id").to_pylist(),
        "label": torch.from_numpy(batch.column("label").to_numpy().copy()),
        "data": torch.from_numpy(values.reshape(n, -1).copy()),
    }


def _hf_collate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    import torch

    return {
        "id": [r["id"] for r in rows],
        "label": torch.tensor([int(r["label"]) for r in rows]),
        "data": [bytes(r["data"]) for r in rows],
    }


def _epoch(
    loader: Any, id_key: str, data_key: str, check: dict[str, bytes] | None
) -> tuple[float, list[str], int]:
    """(seconds, ids in order, rows whose bytes differ) for one pass over ``loader``."""
    ids: list[str] = []
    bad = 0
    start = time.perf_counter()
    for batch in loader:
        ids.extend(batch[id_key])
        if check is not None:
            data = batch[data_key]
            rows = [bytes(r.numpy()) for r in data] if hasattr(data, "numpy") else data
            bad += sum(_digest(r) != check[i] for i, r in zip(batch[id_key], rows, strict=True))
    return time.perf_counter() - start, ids, bad


class _Runner:
    """One loader under test: a cold epoch, then timed epochs interleaved with the others
    (this box may be shared: interleaving spreads the noise over every loader alike)."""

    def __init__(self, name: str, loader: Any, id_key: str, data_key: str, set_epoch: Any = None):
        self.name, self.loader, self.id_key, self.data_key = name, loader, id_key, data_key
        self.set_epoch = set_epoch
        self.warm: list[float] = []
        self.cold = 0.0
        self.dups = self.missing = self.bad = 0
        self.heads: set[tuple[str, ...]] = set()

    def epoch(self, e: int, expected: dict[str, bytes], check: bool = False) -> None:
        if self.set_epoch is not None:
            self.set_epoch(e)
        t, ids, bad = _epoch(self.loader, self.id_key, self.data_key, expected if check else None)
        self.dups += len(ids) - len(set(ids))
        self.missing += len(set(expected) - set(ids))
        self.bad += bad
        self.heads.add(tuple(ids[:50]))
        if e == 0:
            self.cold = t
        elif not check:
            self.warm.append(t)

    def result(self, n: int) -> dict[str, Any]:
        t = statistics.median(self.warm)
        return {
            "name": self.name,
            "rows_per_s": n / t,
            "mb_per_s": n * 4096 / 1e6 / t,
            "cold_epoch_s": self.cold,
            "dups": self.dups,
            "missing": self.missing,
            "bad_bytes": self.bad,
            "shuffled": len(self.heads) > 1,
        }


def small_payloads(size: int) -> list[dict[str, Any]]:
    import torch

    from lakecore.loaders import to_torch

    work = Path(tempfile.mkdtemp(prefix="lakecore-bench-"))
    runners: list[_Runner] = []
    try:
        version, expected, uri = _build_small(work, size)
        ds = to_torch(
            version, roles="data", decode="uint8", annotations="label", batch_size=BATCH, seed=0
        )
        loader = ds.loader(num_workers=2, persistent_workers=True, prefetch_factor=4)
        runners.append(_Runner("lakecore", loader, "datum_id", "data", loader.set_epoch))
        from lance.torch.data import LanceDataset

        lds = LanceDataset(
            uri, batch_size=BATCH, columns=["id", "label", "data"], to_tensor_fn=_lance_tensors
        )
        runners.append(
            _Runner(
                "lance",
                torch.utils.data.DataLoader(
                    lds,
                    batch_size=None,
                    num_workers=2,
                    multiprocessing_context="spawn",
                    persistent_workers=True,
                    prefetch_factor=4,
                ),
                "id",
                "data",
            )
        )
        try:
            import datasets
        except ImportError:
            datasets = None
        if datasets is not None:
            import lance

            datasets.disable_progress_bars()
            hf = datasets.Dataset(lance.dataset(uri).to_table())
            hf.save_to_disk(str(work / "hf"), num_shards=10)
            hf = datasets.load_from_disk(str(work / "hf")).with_format("numpy")
            runners.append(
                _Runner(
                    "hf",
                    torch.utils.data.DataLoader(
                        hf,
                        batch_size=BATCH,
                        shuffle=True,
                        num_workers=2,
                        multiprocessing_context="spawn",
                        persistent_workers=True,
                        collate_fn=_hf_collate,
                        prefetch_factor=4,
                    ),
                    "id",
                    "data",
                )
            )
        for r in runners:  # cold: spawns the workers; one loader's workers at a time
            r.epoch(0, expected)
        for e in range(1, EPOCHS + 1):
            for r in runners:
                r.epoch(e, expected)
        for r in runners:  # untimed: every byte checked
            r.epoch(EPOCHS + 1, expected, check=True)
        results = {r.name: r.result(size) for r in runners}
    finally:
        for r in runners:
            r.loader = None
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    lc = results["lakecore"]
    for other, label, goal in (
        ("lance", "lance.torch LanceDataset (sequential)", "ratio >= 1"),
        ("hf", "HF datasets map-style numpy (shuffled)", "ratio >= 1.3"),
    ):
        if other not in results:
            continue
        o = results[other]
        rows.append(
            {
                "case": f"{size} x 4 KiB + label, 2 spawn workers",
                "lakecore": lc["rows_per_s"],
                "baseline": o["rows_per_s"],
                "baseline_name": label,
                "ratio": lc["rows_per_s"] / o["rows_per_s"],
                "unit": "rows/s",
                "goal": goal,
                "detail": {"lakecore": lc, other: o},
            }
        )
        rows.append(
            {
                "case": "  cold epoch incl. worker spawn",
                "lakecore": lc["cold_epoch_s"],
                "baseline": o["cold_epoch_s"],
                "baseline_name": label,
                "ratio": lc["cold_epoch_s"] / o["cold_epoch_s"],
                "unit": "s",
                "goal": "(informative)",
            }
        )
        rows.append(
            {
                "case": "  duplicate + missing + wrong-bytes rows",
                "lakecore": float(lc["dups"] + lc["missing"] + lc["bad_bytes"]),
                "baseline": float(o["dups"] + o["missing"] + o["bad_bytes"]),
                "baseline_name": label,
                "ratio": float("nan"),
                "unit": "rows",
                "goal": "lakecore 0",
            }
        )
    return rows


# -- streaming 100 KB payloads ---------------------------------------------------------------
def _build_large(work: Path, count: int, item: int) -> tuple[Any, list[Path]]:
    lake = lakecore.connect(work / "lake")
    folder = work / "files"
    folder.mkdir()
    paths = []
    step = 2000
    asset_ids: list[str] = []
    for lo in range(0, count, step):
        blobs = [_payload(i, item) for i in range(lo, min(lo + step, count))]
        asset_ids += lake.assets.add_many(blobs, kind="blob")["asset_id"].to_pylist()
        for i, b in enumerate(blobs, start=lo):
            p = folder / f"{i:08d}.bin"
            p.write_bytes(b)
            paths.append(p)
    datums = lake.datums.add_many(
        pa.table(
            {
                "assets": pa.array(
                    [[("data", a)] for a in asset_ids], pa.map_(pa.string(), pa.string())
                )
            }
        )
    )
    version = lake.datasets.builder("big").add(datums["datum_id"]).commit("1")
    os.sync()
    return version, paths


def _files_epoch(paths: list[Path], order: np.ndarray, threads: int = 8) -> int:
    total = 0
    with ThreadPoolExecutor(threads) as pool:
        for lo in range(0, len(order), 64):
            chunk = [paths[i] for i in order[lo : lo + 64]]
            total += sum(len(b) for b in pool.map(Path.read_bytes, chunk))
    return total


def _stream_epoch(version: Any, epoch: int) -> int:
    from lakecore.loaders import to_torch

    ds = to_torch(version, roles="data", decode=False, annotations=False, batch_size=64, seed=0)
    ds.set_epoch(epoch)
    return sum(len(b) for batch in ds for b in batch["data"])


def _status_mb(key: str) -> float:
    """A ``/proc/self/status`` memory figure (VmRSS, VmHWM) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss(uri: str, queue: Any) -> None:
    """In a fresh process: plan the version, reset the peak RSS, stream every payload."""
    from lakecore.loaders import to_torch

    version = lakecore.connect(uri).datasets.get("big", "1")
    ds = to_torch(version, roles="data", decode=False, annotations=False, batch_size=64)
    next(iter(ds))  # imports, plan, payload store opened
    before = _status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5\n")  # reset the peak (VmHWM) to the current RSS
    total = sum(len(b) for batch in ds for b in batch["data"])
    queue.put((before, _status_mb("VmHWM"), total))


def _large_vs_lance(work: Path, version: Any, count: int, item: int) -> list[dict[str, Any]]:
    """The 2-worker DataLoader comparison again with image-sized payloads."""
    import lance
    import torch

    from lakecore.loaders import to_torch

    uri = str(work / "plain-large.lance")
    schema = pa.schema([("id", pa.string()), ("label", pa.int64()), ("data", pa.large_binary())])

    def batches():
        for lo in range(0, count, 1000):
            idx = range(lo, min(lo + 1000, count))
            yield pa.record_batch(
                [
                    pa.array([str(i) for i in idx]),
                    pa.array([i % 10 for i in idx], pa.int64()),
                    pa.array([_payload(i, item) for i in idx], pa.large_binary()),
                ],
                schema=schema,
            )

    lance.write_dataset(
        pa.RecordBatchReader.from_batches(schema, batches()),
        uri,
        max_rows_per_file=max(count // 10, 1),
    )
    from lance.torch.data import LanceDataset

    ds = to_torch(version, roles="data", decode="uint8", annotations=False, batch_size=64)
    lc = ds.loader(num_workers=2, persistent_workers=True)
    la = torch.utils.data.DataLoader(
        LanceDataset(
            uri, batch_size=64, columns=["id", "label", "data"], to_tensor_fn=_lance_tensors
        ),
        batch_size=None,
        num_workers=2,
        multiprocessing_context="spawn",
        persistent_workers=True,
    )
    times: dict[str, list[float]] = {"lakecore": [], "lance": []}
    for e in range(3):
        for name, loader in (("lakecore", lc), ("lance", la)):
            if name == "lakecore":
                lc.set_epoch(e)
            t0 = time.perf_counter()
            n = sum(int(b["data"].shape[0]) for b in loader)
            assert n == count
            if e:  # epoch 0 spawns the workers
                times[name].append(time.perf_counter() - t0)
    del lc, la
    mb = count * item / 1e6
    a, b = statistics.median(times["lakecore"]), statistics.median(times["lance"])
    return [
        {
            "case": f"{count} x 100 KB, 2 spawn workers (lakecore shuffled)",
            "lakecore": mb / a,
            "baseline": mb / b,
            "baseline_name": "lance.torch LanceDataset (sequential)",
            "ratio": b / a,
            "unit": "MB/s",
            "goal": "(informative)",
        }
    ]


def streaming(count: int, item: int = 100_000) -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="lakecore-bench-"))
    rows = []
    try:
        version, paths = _build_large(work, count, item)
        mb = count * item / 1e6
        order = np.random.default_rng(0).permutation(count)
        for cache in ("warm", "cold"):
            if cache == "cold" and not drop_caches():
                continue
            if cache == "warm":  # read everything once so both sides start from the page cache
                _files_epoch(paths, order)
                _stream_epoch(version, 0)
            setup = drop_caches if cache == "cold" else (lambda: None)
            setup()
            t0 = time.perf_counter()
            got = _stream_epoch(version, 1)
            lake_t = time.perf_counter() - t0
            setup()
            t0 = time.perf_counter()
            files = _files_epoch(paths, order)
            files_t = time.perf_counter() - t0
            assert got == files == count * item
            rows.append(
                {
                    "case": f"stream {count} x 100 KB shuffled, bytes, in-process ({cache})",
                    "lakecore": mb / lake_t,
                    "baseline": mb / files_t,
                    "baseline_name": "plain files, 8-thread pool",
                    "ratio": files_t / lake_t,
                    "unit": "MB/s",
                    "goal": "ratio >= 0.9",
                }
            )
        rows += _large_vs_lance(work, version, count, item)
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(target=_peak_rss, args=(str(work / "lake"), queue))
        proc.start()
        before, peak, total = queue.get()
        proc.join()
        rows.append(
            {
                "case": f"peak RSS streaming a {total / 1e9:.1f} GB version ({count} datums)",
                "lakecore": peak,
                "baseline": total / 1e6,
                "baseline_name": "version payload MB",
                "ratio": peak / (total / 1e6),
                "unit": "MB",
                "goal": f"flat (RSS before streaming {before:.0f} MB)",
            }
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def run(size: int) -> list[dict[str, Any]]:
    """All loader figures (see the module docstring)."""
    return [*small_payloads(size), *streaming(max(size * 2 // 5, 100))]
