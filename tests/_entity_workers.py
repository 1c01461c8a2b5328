"""Writer processes for the entity concurrency test (imported by spawned children)."""

from __future__ import annotations

import json
import time

import pyarrow as pa

import lakecore
from lakecore.entities.aliases import Aliases
from lakecore.entities.assets import Assets
from lakecore.errors import AliasAlreadyExistsError


def entity_writer(
    uri: str,
    options: dict[str, str] | None,
    wid: int,
    rounds: int,
    out_path: str,
    start_at: float,
    set_id: str | None = None,
) -> None:
    """Add assets (with own aliases), race for ``race/<r>`` and repoint ``shared/*``.

    Writes what it did to ``out_path`` (JSON) for the parent to check.
    """
    lake = lakecore.connect(uri, storage_options=options, lease_ttl=10.0)
    assets, aliases = Assets(lake), Aliases(lake)
    done: dict[str, list[str]] = {"assets": [], "won": [], "lost": [], "records": []}
    while time.time() < start_at:
        time.sleep(0.005)
    for r in range(rounds):
        payloads = [f"w{wid}-r{r}-{i}".encode() for i in range(3)]
        own = [f"own/w{wid}/r{r}/{i}" for i in range(3)]
        ids = assets.add_many(payloads, kind="blob", aliases=own)["asset_id"].to_pylist()
        done["assets"] += ids
        try:
            aliases.set(f"race/{r}", ids[0], by=f"w{wid}")
            done["won"].append(f"race/{r}")
        except AliasAlreadyExistsError:
            done["lost"].append(f"race/{r}")
        aliases.set_many(["shared/a", "shared/b"], ids[1:], repoint=True, by=f"w{wid}")
        if set_id is not None:
            written = lake.annotations.add(
                set_id,
                pa.table(
                    {
                        "asset_id": ids,
                        "kind": ["bbox"] * 3,
                        "label": ["cat"] * 3,
                        "bbox": [[float(wid), float(r), 1.0, 1.0]] * 3,
                    }
                ),
            )
            done["records"] += written["annotation_id"].to_pylist()
    with open(out_path, "w") as f:
        json.dump(done, f)
