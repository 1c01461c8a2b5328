"""Spawned committers for the dataset-version tests."""

from __future__ import annotations

import os
import signal
import time

import lakecore
from lakecore.catalog.commit import set_fault_hook


def commit_version(
    uri: str,
    options: dict[str, str] | None,
    name: str,
    version: str,
    datum_ids: list[str],
    *,
    kill_at: str | None = None,
    start_at: float = 0.0,
    ttl: float = 30.0,
) -> str:
    """Commit ``name@version`` with the given datums; kill -9 itself at a step if asked."""
    lake = lakecore.connect(uri, storage_options=options, lease_ttl=ttl)

    def hook(step: str) -> None:
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    set_fault_hook(hook)
    while time.time() < start_at:
        time.sleep(0.002)
    try:
        lake.datasets.builder(name).add(datum_ids).commit(version)
    except lakecore.LakecoreError as exc:
        return type(exc).__name__
    return "ok"


def race(
    uri: str,
    options: dict[str, str] | None,
    name: str,
    version: str,
    datum_ids: list[str],
    start_at: float,
    out: dict,
) -> None:  # type: ignore[type-arg]
    out[os.getpid()] = commit_version(uri, options, name, version, datum_ids, start_at=start_at)
