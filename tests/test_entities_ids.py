"""Generated ids: format, uniqueness, order within a batch (pure, no lake)."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from lakecore.entities._base import new_ids


@pytest.mark.parametrize("n", [0, 1, 7, 10_000])
def test_new_ids_are_unique_prefixed_hex_and_ascending(n: int) -> None:
    ids = new_ids("ann", n)
    assert ids.type == pa.string() and len(ids) == n and ids.null_count == 0
    ids.validate(full=True)
    values = ids.to_pylist()
    assert all(re.fullmatch(r"ann_[0-9a-f]{32}", v) for v in values)
    assert len(set(values)) == n
    assert values == sorted(values)  # ascending: cheap BTree builds over the key


def test_new_ids_differ_between_calls_and_keep_the_prefix() -> None:
    a, b = new_ids("asset", 1000), new_ids("asset", 1000)
    assert not set(a.to_pylist()) & set(b.to_pylist())
    assert pc.all(pc.starts_with(a, "asset_")).as_py()
    assert new_ids("annschema", 1)[0].as_py().startswith("annschema_")
