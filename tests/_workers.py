"""Writer processes for the commit-protocol tests (imported by spawned children)."""

from __future__ import annotations

import hashlib
import os
import signal
import time

import pyarrow as pa

import lakecore
from lakecore.catalog.commit import set_fault_hook
from lakecore.tables import Append, Upsert, to_arrow
from schemas import Alias, AnnotationRecord, Asset, Datum, StorageRef

TABLES = ("assets", "datums", "annotation_records")


def rows(txn: str, n: int) -> dict[str, pa.Table]:
    """n assets, n datums and n box records whose ids carry the transaction tag."""
    assets, datums, records = [], [], []
    for i in range(n):
        sha = hashlib.sha256(f"{txn}-{i}".encode()).hexdigest()
        ref = StorageRef(mount="lake", key=f"blob/{sha}", sha256=sha, size=1)
        aid = f"asset_{txn}_{i}"
        assets.append(
            Asset(
                asset_id=aid,
                kind="image",
                media_type="image/png",
                sha256=sha,
                size_bytes=1,
                storage=ref,
            )
        )
        datums.append(Datum(datum_id=f"datum_{txn}_{i}", assets={"image": aid}))
        records.append(
            AnnotationRecord(
                annotation_id=f"ann_{txn}_{i}",
                set_id="annset_x",
                asset_id=aid,
                kind="bbox",
                label="cat",
                bbox=(1.0, 2.0, 3.0, 4.0),
                source_kind="human",
                source_name="t",
            )
        )
    return {
        "assets": to_arrow(assets, Asset),
        "datums": to_arrow(datums, Datum),
        "annotation_records": to_arrow(records, AnnotationRecord),
    }


def ops(txn: str, n: int) -> list[Append]:
    return [Append(name, table) for name, table in rows(txn, n).items()]


def commit_one(
    uri: str,
    options: dict[str, str] | None,
    txn: str,
    n: int,
    *,
    kill_at: str | None = None,
    stall_at: str | None = None,
    stall: float = 0.0,
    ttl: float = 30.0,
) -> None:
    """Commit one 3-table transaction; kill -9 itself or stall at a named step."""
    lake = lakecore.connect(uri, storage_options=options, lease_ttl=ttl)

    def hook(step: str) -> None:
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if step == stall_at:
            set_fault_hook(None)  # stall once
            time.sleep(stall)

    set_fault_hook(hook)
    lake.commit(ops(txn, n), message=txn)


def writer_loop(
    uri: str, options: dict[str, str] | None, wid: int, commits: int, n: int, start_at: float
) -> None:
    """Commit ``commits`` transactions, each with appends on 3 tables and an alias upsert."""
    lake = lakecore.connect(uri, storage_options=options, lease_ttl=10.0)
    while time.time() < start_at:
        time.sleep(0.005)
    for c in range(commits):
        txn = f"w{wid}c{c}"
        aliases = [Alias(alias=f"shared/{i}", asset_id=f"asset_{txn}_{i}") for i in range(n)]
        lake.commit([*ops(txn, n), Upsert("aliases", to_arrow(aliases, Alias))], message=txn)
