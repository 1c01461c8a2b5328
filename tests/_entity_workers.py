"""Writer processes for the entity concurrency test (imported by spawned children)."""

from __future__ import annotations

import json
import time

import lakecore
from lakecore.entities.aliases import Aliases
from lakecore.entities.assets import Assets
from lakecore.errors import AliasAlreadyExistsError


def entity_writer(uri: str, options: dict[str, str] | None, wid: int, rounds: int,
                  out_path: str, start_at: float) -> None:
    """Add assets (with own aliases), race for ``race/<r>`` and repoint ``shared/*``.

    Writes what it did to ``out_path`` (JSON) for the parent to check.
    """
    lake = lakecore.connect(uri, storage_options=options, lease_ttl=10.0)
    assets, aliases = Assets(lake), Aliases(lake)
    done: dict[str, list[str]] = {"assets": [], "won": [], "lost": []}
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
    with open(out_path, "w") as f:
        json.dump(done, f)
