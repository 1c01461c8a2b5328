"""A multi-table lake commit against raw Lance appends of the same rows."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import lance

import lakecore
from bench._common import timed
from lakecore.tables import Append

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _workers import rows


def commit(size: int, repeat: int = 7) -> list[dict[str, Any]]:
    """One 3-table commit of ``size`` rows per table vs 3 raw ``write_dataset(mode=append)``."""
    work = Path(tempfile.mkdtemp(prefix="lakecore-bench-"))
    try:
        lake = lakecore.connect(work / "lake")
        tag = iter(range(10**6))
        data = {i: rows(f"r{i}", size) for i in range(repeat)}
        lake_t = timed(
            lambda: lake.commit([Append(n, t) for n, t in data[next(tag)].items()]), repeat=repeat
        )
        raw_tag = iter(range(10**6))
        first = data[0]
        for name, table in first.items():
            lance.write_dataset(table, str(work / f"raw-{name}.lance"))

        def raw() -> None:
            for name, table in data[next(raw_tag)].items():
                lance.write_dataset(table, str(work / f"raw-{name}.lance"), mode="append")

        raw_t = timed(raw, repeat=repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [
        {
            "case": f"3-table commit, {size} rows/table",
            "lakecore": lake_t,
            "baseline": raw_t,
            "baseline_name": "3 raw Lance appends",
            "ratio": lake_t / raw_t,
            "unit": "s",
            "goal": "overhead of atomicity (measured ~3x in the prototype)",
        }
    ]
