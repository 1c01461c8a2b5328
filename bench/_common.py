"""Timing, machine description, result tables and JSON files shared by every scenario."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What ran the benchmark."""
    import lance
    import pyarrow

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem, 1),
        "python": platform.python_version(),
        "pylance": lance.__version__,
        "pyarrow": pyarrow.__version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def timed(fn: Callable[[], Any], repeat: int = 1, setup: Callable[[], Any] | None = None) -> float:
    """Median wall time of ``fn`` in seconds over ``repeat`` runs (``setup`` untimed)."""
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def drop_caches() -> bool:
    """Drop the page cache (root only); return whether it worked."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def report(scenario: str, size: int, rows: list[dict[str, Any]], notes: list[str]) -> Path:
    """Print a table of figures and ratios and write the JSON result file."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{scenario} (size {size})")
    for col in ("case", "lakecore", "baseline", "baseline_name", "ratio", "unit", "goal"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["case"],
            f"{r['lakecore']:.4g}",
            f"{r.get('baseline', float('nan')):.4g}",
            r.get("baseline_name", ""),
            f"{r.get('ratio', float('nan')):.3g}",
            r["unit"],
            r.get("goal", ""),
        )
    console = Console(width=150)
    console.print(table)
    for n in notes:
        console.print(f"- {n}")
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{scenario}-{size}-{stamp}.json"
    path.write_text(
        json.dumps(
            {
                "scenario": scenario,
                "size": size,
                "machine": machine(),
                "rows": rows,
                "notes": notes,
            },
            indent=2,
        )
    )
    console.print(f"wrote {path.relative_to(RESULTS.parent.parent)}")
    return path
