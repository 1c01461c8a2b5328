"""Collections (unique names, idempotent membership, cascade delete) and retentions — on local
disk and S3."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lakecore.entities.assets import Assets
from lakecore.entities.collections import Collections, Retentions
from lakecore.errors import (
    AssetNotFoundError,
    CollectionAlreadyExistsError,
    CollectionNotFoundError,
    InUseError,
    NotFoundError,
    ValidationError,
)


def test_collection_lifecycle(lake):
    ids = Assets(lake).add_many([b"a", b"b", b"c"], kind="blob")["asset_id"].to_pylist()
    colls = Collections(lake)
    c = colls.create("import-may", description="May batch", metadata={"n": 3}, created_by="ci")
    assert colls.get("import-may") == c == colls.get(c.collection_id)
    assert colls.list()["name"].to_pylist() == ["import-may"]

    items = colls.add("import-may", [ids[0], ids[1], ids[0]], split="train", by="ci")
    assert items["item_id"].to_pylist() == [f"{c.collection_id}/{i}" for i in ids[:2]]
    colls.add(c.collection_id, [ids[1], ids[2]], split="val")  # re-adding replaces the row
    got = colls.items("import-may").sort_by("asset_id").to_pydict()
    assert sorted(got["asset_id"]) == sorted(ids)
    split = dict(zip(got["asset_id"], got["split"], strict=True))
    assert split == {ids[0]: "train", ids[1]: "val", ids[2]: "val"}
    assert lake.snapshot().count("collection_items") == 3  # no duplicate member rows

    colls.remove("import-may", [ids[2]])
    assert sorted(colls.items("import-may")["asset_id"].to_pylist()) == sorted(ids[:2])
    other = colls.create("other")
    colls.add("other", [ids[0]])

    pins = lake.snapshot().pins
    bad = [
        (lambda: colls.create("import-may"), CollectionAlreadyExistsError, "import-may"),
        (lambda: colls.create(""), ValidationError, "name"),
        (lambda: colls.create("x", metadata={"v": float("inf")}), ValidationError, "metadata"),
        (lambda: colls.get("nope"), CollectionNotFoundError, "nope"),
        (lambda: colls.add("nope", ids[:1]), CollectionNotFoundError, "nope"),
        (lambda: colls.add("other", ["asset_zz"]), AssetNotFoundError, "asset_zz"),
        (lambda: colls.add("other", ids[:1], split="bad split"), ValidationError, "split"),
        (lambda: colls.add("other", ids[:1], split=3), ValidationError, "split"),
        (lambda: colls.add("other", [""]), ValidationError, "asset_ids\\[0\\]"),
        (lambda: colls.remove("other", [ids[1]]), NotFoundError, ids[1]),
        (lambda: colls.delete("nope"), CollectionNotFoundError, "nope"),
        (lambda: colls.items(None), ValidationError, "collection"),
    ]
    for i, (call, error, match) in enumerate(bad):
        with pytest.raises(error, match=match):
            call()
        assert lake.snapshot().pins == pins, f"case {i} changed the lake"

    before = lake.snapshot().catalog_version
    colls.delete("import-may")  # cascades to its items, in one commit
    assert lake.snapshot().catalog_version == before + 1
    assert colls.list()["name"].to_pylist() == ["other"]
    assert lake.snapshot().count("collection_items") == 1
    assert colls.items(other.collection_id)["asset_id"].to_pylist() == [ids[0]]
    assert colls.create("import-may").collection_id != c.collection_id  # the name is free again
    assert Assets(lake).count() == 3  # assets stay


def test_retentions_pin_unpin(lake):
    assets = Assets(lake)
    ids = assets.add_many([b"x", b"y"], kind="blob")["asset_id"].to_pylist()
    rets = Retentions(lake)
    until = datetime.now(UTC) + timedelta(days=30)
    rows = rets.pin(
        [ids[0], ids[1], ids[0]],
        owner_type="dataset_version",
        owner_id="dsv_1",
        policy="delete_when_unreferenced",
        expires_at=until,
        by="ci",
    )
    assert rows.num_rows == 2 and set(rows["owner_type"].to_pylist()) == {"dataset_version"}
    manual = rets.pin(ids[0], owner_id="me")
    assert rets.for_asset(ids[0]).num_rows == 2 and rets.table().num_rows == 3
    with pytest.raises(InUseError, match="retention"):
        assets.delete([ids[0]])

    pins = lake.snapshot().pins
    bad = [
        (lambda: rets.pin(ids, owner_id=""), ValidationError, "owner_id"),
        (lambda: rets.pin(ids, owner_type="boss", owner_id="x"), ValidationError, "owner_type"),
        (lambda: rets.pin(ids, owner_id="x", policy="forever"), ValidationError, "policy"),
        (
            lambda: rets.pin(ids, owner_id="x", expires_at=datetime(2030, 1, 1)),
            ValidationError,
            "timezone",
        ),
        (lambda: rets.pin(["asset_zz"], owner_id="x"), AssetNotFoundError, "asset_zz"),
        (lambda: rets.unpin(["retention_zz"]), NotFoundError, "retention_zz"),
        (lambda: rets.for_asset(""), ValidationError, "asset_id"),
    ]
    for i, (call, error, match) in enumerate(bad):
        with pytest.raises(error, match=match):
            call()
        assert lake.snapshot().pins == pins, f"case {i} changed the lake"

    rets.unpin(rows["retention_id"])
    assert rets.for_asset(ids[0])["retention_id"].to_pylist() == manual["retention_id"].to_pylist()
    rets.unpin(manual["retention_id"].to_pylist())
    assets.delete(ids)
    assert assets.count() == 0 and rets.table().num_rows == 0
