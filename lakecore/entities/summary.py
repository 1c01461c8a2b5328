"""A one-screen summary of a lake: rows per table and the payloads its assets reference."""

from __future__ import annotations

from typing import Any

import pyarrow.compute as pc

from lakecore.entities._base import LakeCore

__all__ = ["human_bytes", "render_summary", "summary"]


def summary(core: LakeCore) -> dict[str, Any]:
    """Row counts of every table and the distinct payloads (count, bytes) assets reference.

    Everything is read from one snapshot, so the numbers are consistent with each other.

    Example:
        >>> summary(lake)["tables"]["assets"]  # doctest: +SKIP
        1200
    """
    snap = core.snapshot()
    tables = {name: snap.count(name) for name in sorted(snap.pins)}
    assets = snap.to_table("assets", columns=["sha256", "size_bytes"])
    payloads = assets.group_by("sha256").aggregate([("size_bytes", "max")])
    size = pc.sum(payloads["size_bytes_max"]).as_py() or 0
    return {
        "catalog_version": snap.catalog_version,
        "tables": tables,
        "payloads": {"count": payloads.num_rows, "bytes": int(size)},
    }


def human_bytes(n: int) -> str:
    """Bytes for people: ``512 B``, ``4.5 KiB``, ``1.2 GiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def render_summary(d: dict[str, Any]) -> str:
    """One short line per table, then the payload line.

    Example:
        >>> print(render_summary({"tables": {"assets": 2}, "payloads": {"count": 2, "bytes": 10}}))
        assets            2 rows
        payloads          2 (10 B)
    """
    width = max(10, *(len(name) + 2 for name in d["tables"]))
    lines = [f"{name:<{width}}{rows:>9,} rows" for name, rows in d["tables"].items()]
    pay = d["payloads"]
    lines.append(f"{'payloads':<{width}}{pay['count']:>9,} ({human_bytes(pay['bytes'])})")
    return "\n".join(lines)
