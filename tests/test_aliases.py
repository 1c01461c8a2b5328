"""Aliases: uniqueness, idempotence, repoint history, batches, validation and concurrent writers —
on local disk and S3."""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import time
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from _entity_workers import entity_writer
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticError

from lakecore.entities import aliases as aliases_module
from lakecore.entities._checks import SPACE_OR_CONTROL
from lakecore.entities.aliases import Aliases, check_aliases
from lakecore.entities.assets import Assets
from lakecore.errors import (
    AliasAlreadyExistsError,
    AliasNotFoundError,
    AssetNotFoundError,
    ValidationError,
)
from schemas.asset import AliasStr


def test_set_resolve_repoint_remove(lake):
    ids = Assets(lake).add_many([b"one", b"two"], kind="blob")["asset_id"].to_pylist()
    aliases = Aliases(lake)
    name = "cams/front/it's latest.jpg".replace(" ", "_")  # a quote survives SQL quoting
    first = aliases.set(name, ids[0], by="alice")
    assert (first.alias, first.asset_id, first.created_by) == (name, ids[0], "alice")
    pins = lake.snapshot().pins
    version = lake.snapshot().catalog_version
    again = aliases.set(name, ids[0], by="bob")  # same target: idempotent no-op, no commit
    assert again == first and lake.snapshot().catalog_version == version
    with pytest.raises(AliasAlreadyExistsError, match="repoint=True"):
        aliases.set(name, ids[1])
    assert lake.snapshot().pins == pins and aliases.resolve(name) == ids[0]

    moved = aliases.set(name, ids[1], repoint=True, by="bob")
    assert moved.asset_id == ids[1] and moved.created_at == first.created_at
    assert moved.updated_at > first.updated_at and moved.created_by == "alice"
    assert aliases.resolve(name) == ids[1]
    assert aliases.for_asset(ids[1]) == [name] and aliases.for_asset(ids[0]) == []
    aliases.set("other", ids[1])
    assert aliases.for_asset(ids[1]) == ["cams/front/it's_latest.jpg", "other"]
    got = aliases.resolve_many(["other", name])
    assert got.to_pydict() == {"alias": ["other", name], "asset_id": [ids[1], ids[1]]}
    assert aliases.table().num_rows == 2

    aliases.remove(name, by="carol")
    events = aliases.history(name).select(["action", "asset_id", "previous_asset_id", "by"])
    assert events.to_pylist() == [
        {"action": "set", "asset_id": ids[0], "previous_asset_id": None, "by": "alice"},
        {"action": "repoint", "asset_id": ids[1], "previous_asset_id": ids[0], "by": "bob"},
        {"action": "remove", "asset_id": None, "previous_asset_id": ids[1], "by": "carol"},
    ]
    with pytest.raises(AliasNotFoundError, match="latest"):
        aliases.resolve(name)
    pins = lake.snapshot().pins
    with pytest.raises(AliasNotFoundError):
        aliases.remove(name)
    with pytest.raises(AliasNotFoundError, match="nope"):
        aliases.resolve_many(["other", "nope"])
    with pytest.raises(AssetNotFoundError, match="asset_missing"):
        aliases.set("x", "asset_missing")
    assert lake.snapshot().pins == pins


def test_set_many_is_all_or_nothing(lake):
    ids = Assets(lake).add_many([b"a", b"b", b"c"], kind="blob")["asset_id"].to_pylist()
    aliases = Aliases(lake)
    aliases.set_many(["k/0", "k/1"], ids[:2])
    rows = aliases.set_many(["k/0", "k/2"], [ids[0], ids[2]])  # k/0 unchanged, k/2 new
    assert rows["alias"].to_pylist() == ["k/0", "k/2"]
    assert lake.snapshot().count("alias_history") == 3
    pins = lake.snapshot().pins
    bad = [
        (
            lambda: aliases.set_many(["k/3", "k/1"], [ids[2], ids[2]]),
            AliasAlreadyExistsError,
            "'k/1' -> ",
        ),
        (lambda: aliases.set_many(["k/4", "k/4"], ids[:2]), ValidationError, "twice"),
        (lambda: aliases.set_many(["k/5"], ids[:2]), ValidationError, "1 aliases for 2"),
        (
            lambda: aliases.set_many(["k/6", "k/7"], [ids[0], "asset_zz"]),
            AssetNotFoundError,
            "asset_zz",
        ),
        (
            lambda: aliases.set_many(["ok", "/lead"], ids[:2]),
            ValidationError,
            "aliases\\[1\\]: .*start or end",
        ),
        (lambda: aliases.set_many(["a//b"], ids[:1]), ValidationError, "//"),
        (lambda: aliases.set_many(["x" * 513], ids[:1]), ValidationError, "1-512"),
        (lambda: aliases.set_many(["tab\there"], ids[:1]), ValidationError, "whitespace"),
        (lambda: aliases.set_many([""], ids[:1]), ValidationError, "empty"),
        (lambda: aliases.set("ok", ""), ValidationError, "asset_id"),
        (lambda: aliases.set(None, ids[0]), ValidationError, "alias"),
        (lambda: aliases.set("ok", ids[0], by=1), ValidationError, "by"),
        (lambda: aliases.history(""), ValidationError, "alias"),
    ]
    for i, (call, error, match) in enumerate(bad):
        with pytest.raises(error, match=match):
            call()
        assert lake.snapshot().pins == pins, f"case {i} changed the lake"
    assert aliases.resolve_many(["k/0", "k/1", "k/2"])["asset_id"].to_pylist() == ids

    aliases.set_many(["k/1", "k/2"], [ids[2], ids[1]], repoint=True)  # swap in one commit
    assert aliases.resolve_many(["k/1", "k/2"])["asset_id"].to_pylist() == [ids[2], ids[1]]
    aliases.remove_many(["k/0", "k/1"])
    assert aliases.table()["alias"].to_pylist() == ["k/2"]
    assert aliases.set_many([], []).num_rows == 0


@given(st.lists(st.text(min_size=0, max_size=12), min_size=1, max_size=8))
@settings(max_examples=200, deadline=None)
def test_vectorized_alias_check_agrees_with_the_schema(values):
    adapter = TypeAdapter(AliasStr)
    expected_bad = []
    for i, v in enumerate(values):
        try:
            adapter.validate_python(v)
        except PydanticError:
            expected_bad.append(i)
    if expected_bad:
        with pytest.raises(ValidationError) as err:
            check_aliases(pa.array(values, pa.string()))
        assert err.value.details["row"] == expected_bad[0]
    else:
        check_aliases(pa.array(values, pa.string()))


def test_vectorized_alias_check_every_code_point():
    """The RE2 class refuses exactly what the schema's whitespace/control rule refuses."""
    astral = [0x110BD, 0x1BCA0, 0x1D173, 0xE0001, 0xE0020, 0xE007F, 0x1F600]
    codes = [c for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF] + astral
    adapter = TypeAdapter(AliasStr)
    values = [f"a{chr(c)}b" for c in codes]
    arr = pa.array(values, pa.string())
    vector = pc.match_substring_regex(arr, SPACE_OR_CONTROL).to_pylist()
    for v, hit in zip(values, vector, strict=True):
        try:
            adapter.validate_python(v)
            ok = True
        except PydanticError:
            ok = False
        assert ok != hit, repr(v)


@pytest.mark.parametrize("racing_target", ["other asset", "same asset"])
def test_an_alias_set_between_the_check_and_the_commit_is_seen(where, monkeypatch, racing_target):
    """``set`` checks before it takes the lease and reuses that check when nothing moved
    since; here another writer sets the same alias in between: the commit checks again."""
    lake, other = where.connect(), where.connect()
    a, b = lake.assets.add_many([b"a", b"b"], kind="blob")["asset_id"].to_pylist()
    theirs = b if racing_target == "other asset" else a
    commit = lake.commit

    def racing(*args, **kwargs):
        other.aliases.set("cams/front", theirs)  # lands after set()'s own check
        return commit(*args, **kwargs)

    checks = []
    real_changes = aliases_module.alias_changes

    def counted(*args, **kwargs):
        checks.append(1)
        return real_changes(*args, **kwargs)

    monkeypatch.setattr(aliases_module, "alias_changes", counted)
    lake.aliases.set("cams/back", b)  # nothing moved: the check before the lease is reused
    assert len(checks) == 1
    monkeypatch.setattr(lake, "commit", racing)
    if theirs == b:
        with pytest.raises(AliasAlreadyExistsError):
            lake.aliases.set("cams/front", a)
    else:
        assert lake.aliases.set("cams/front", a).asset_id == a  # already so: idempotent
    # the other writer's set: one check; this one: its own, then again under the lease
    assert len(checks) == 1 + 1 + 2
    monkeypatch.undo()
    assert lake.aliases.resolve("cams/front") == theirs
    assert lake.aliases.table().num_rows == 2
    assert lake.aliases.history("cams/front")["action"].to_pylist() == ["set"]


def test_concurrent_writers_keep_one_target_per_alias(where, tmp_path):
    lake = where.connect()
    writers, rounds = 4, (2 if where.kind == "local" else 1)
    ctx = mp.get_context("spawn")  # Lance is not fork-safe
    start_at = time.time() + 4.0
    outs = [tmp_path / f"w{w}.json" for w in range(writers)]
    schema = lake.annotations.create_schema(
        "pets", task_type="detection", labels=["cat"], allowed_kinds=["bbox"]
    )
    set_id = lake.annotations.create_set("gt", schema_id=schema.schema_id).set_id
    procs = [
        ctx.Process(
            target=entity_writer,
            args=(where.uri, where.options, w, rounds, str(outs[w]), start_at, set_id),
        )
        for w in range(writers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0] * writers
    done = [json.loads(o.read_text()) for o in outs]

    snap = lake.snapshot()
    ids = snap.to_table("assets", columns=["asset_id"])["asset_id"].to_pylist()
    reported = [a for d in done for a in d["assets"]]
    assert len(ids) == len(set(ids)) == writers * rounds * 3  # nothing lost, no duplicate
    assert set(ids) == set(reported)
    records = snap.to_table("annotation_records", columns=["annotation_id", "asset_id"])
    rec_ids = records["annotation_id"].to_pylist()
    assert len(rec_ids) == len(set(rec_ids)) == writers * rounds * 3
    assert set(rec_ids) == {a for d in done for a in d["records"]}
    assert set(records["asset_id"].to_pylist()) == set(ids)  # every record on a written asset
    table = snap.to_table("aliases")
    names = table["alias"].to_pylist()
    assert len(names) == len(set(names))  # one row (so one target) per alias
    target = dict(zip(names, table["asset_id"].to_pylist(), strict=True))
    for w, d in enumerate(done):
        for r in range(rounds):
            for i in range(3):
                assert target[f"own/w{w}/r{r}/{i}"] == d["assets"][r * 3 + i]
    for r in range(rounds):
        winners = [w for w, d in enumerate(done) if f"race/{r}" in d["won"]]
        assert len(winners) == 1 and target[f"race/{r}"] in done[winners[0]]["assets"]
    history = snap.to_table("alias_history").sort_by("at")
    for name in ("shared/a", "shared/b"):
        events = history.filter(pc.equal(history["alias"], name)).to_pylist()
        assert Counter(e["action"] for e in events)["set"] == 1
        assert len(events) == writers * rounds
        for prev, event in itertools.pairwise(events):
            assert event["previous_asset_id"] == prev["asset_id"]  # no lost update
        assert events[-1]["asset_id"] == target[name]
