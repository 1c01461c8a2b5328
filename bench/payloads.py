"""Payload store against plain files: put of many small and medium payloads, random gets."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import lakecore
from bench._common import drop_caches, timed


def _plain_put(root: Path, blobs: list[bytes]) -> None:
    root.mkdir(parents=True)
    for i, b in enumerate(blobs):
        (root / f"{i:08d}.bin").write_bytes(b)


def put(size: int, item_bytes: int, label: str) -> dict[str, Any]:
    """put_many of ``size`` payloads vs one plain file per payload (then os.sync for both)."""
    blobs = [os.urandom(item_bytes) for _ in range(size)]
    work = Path(tempfile.mkdtemp(prefix="lakecore-bench-"))
    try:
        counter = iter(range(10**6))
        lakes: list[Any] = []
        lake_t = timed(
            lambda: (lakes[-1].objects.put_many(blobs), os.sync()),
            repeat=3,
            setup=lambda: lakes.append(lakecore.connect(work / f"lake{next(counter)}")),
        )
        files_t = timed(
            lambda: (_plain_put(work / f"files{next(counter)}", blobs), os.sync()), repeat=3
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    mb = size * item_bytes / 1e6
    return {
        "case": f"put {size} x {label}",
        "lakecore": mb / lake_t,
        "baseline": mb / files_t,
        "baseline_name": "plain files",
        "ratio": files_t / lake_t,
        "unit": "MB/s",
        "goal": "ratio >= 1 (faster than files)",
    }


def get(size: int, gets: int = 1000, item_bytes: int = 4096) -> list[dict[str, Any]]:
    """``gets`` random payload reads: batch get_many, one-by-one get, vs plain file reads."""
    blobs = [os.urandom(item_bytes) for _ in range(size)]
    work = Path(tempfile.mkdtemp(prefix="lakecore-bench-"))
    rows = []
    try:
        lake = lakecore.connect(work / "lake")
        refs = lake.objects.put_many(blobs)
        _plain_put(work / "files", blobs)
        rng = random.Random(7)
        pick = [rng.randrange(size) for _ in range(gets)]
        chosen = [refs[i] for i in pick]
        paths = [work / "files" / f"{i:08d}.bin" for i in pick]

        def read_files() -> None:
            for p in paths:
                p.read_bytes()

        for cache in ("warm", "cold"):
            setup = drop_caches if cache == "cold" else None
            if setup is not None and not drop_caches():
                continue
            files_t = timed(read_files, repeat=5, setup=setup)
            store = lakecore.connect(work / "lake").objects
            batch_t = timed(lambda s=store: s.get_many(chosen), repeat=5, setup=setup)
            single_t = timed(
                lambda s=store: [s.get(r) for r in chosen[:200]], repeat=3, setup=setup
            )
            rows.append(
                {
                    "case": f"{gets} random gets, get_many ({cache})",
                    "lakecore": batch_t,
                    "baseline": files_t,
                    "baseline_name": "plain files",
                    "ratio": batch_t / files_t,
                    "unit": "s",
                    "goal": "ratio <= 2",
                }
            )
            rows.append(
                {
                    "case": f"200 random gets, one call each ({cache})",
                    "lakecore": single_t,
                    "baseline": files_t * 200 / gets,
                    "baseline_name": "plain files",
                    "ratio": single_t / (files_t * 200 / gets),
                    "unit": "s",
                    "goal": "(informative)",
                }
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows
