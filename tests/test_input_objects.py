"""Bad input to connect(), Lake, lake.objects and table scans: a clear lakecore error, no change.

Every bad call must raise an error of lakecore's tree (ConfigError, ValidationError with
``field`` and ``row``) and leave the lake as it was: ``lake.json``, the mounts, the catalog pins
and the payload table.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import pickle
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Where

import lakecore
from lakecore.errors import (
    ConfigError,
    LakecoreError,
    LakeNotFoundError,
    NotInstalledError,
    ValidationError,
)
from schemas import StorageRef

# -- helpers ------------------------------------------------------------------------------------

FOLDER = "<folder>"
"""Stands for a good folder URI next to the test lake (on the lake's own storage)."""


def _fill(value: Any, folder: str) -> Any:
    if isinstance(value, dict):
        return {k: folder if v == FOLDER else v for k, v in value.items()}
    return value


def _lake_json(lake: Any) -> bytes:
    return bytes(lake._fs.cat_file(lake.location.child("lake.json").uri))


@pytest.fixture(scope="module", params=["local", "s3"])
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One lake (with a folder mount "raw") per storage for the many calls that must change
    nothing: each test checks that its call left the lake as it was."""
    if request.param == "local":
        where = Where("local", str(tmp_path_factory.mktemp("shared") / "lake"), None)
    else:
        server = request.getfixturevalue("s3_server")
        where = Where("s3", f"s3://{server.bucket()}/lake", server.options)
    lake = where.connect(mounts={"raw": where.child("raw").uri})
    lake.objects.put(b"c")
    lake.assets.add(b"an asset", kind="image")
    lake.wait()
    lake.where = where  # type: ignore[attr-defined]
    return lake


def _state(lake: Any) -> tuple[dict[str, int], int, bytes]:
    """What a failed call must not change: the pins, the payload table version, lake.json."""
    blobs = lake.objects.mount("lake").dataset(refresh=True).version
    return dict(lake.snapshot().pins), blobs, _lake_json(lake)


# -- 1. mounts: checked before lake.json is written ----------------------------------------------

BAD_MOUNTS = [
    pytest.param({"m": "ftp://host/x"}, "unsupported URI scheme 'ftp'", id="ftp-scheme"),
    pytest.param({"m": "s3://"}, "expected s3://bucket", id="s3-no-bucket"),
    pytest.param({"m": "s3:///prefix"}, "expected s3://bucket", id="s3-empty-bucket"),
    pytest.param({"m": 5}, "must be a str or a path", id="uri-int"),
    pytest.param({"m": None}, "must be a str or a path", id="uri-none"),
    pytest.param({"m": ""}, "empty lake URI", id="uri-empty"),
    pytest.param({"m": "memory://"}, "bad memory URI", id="memory-no-name"),
    pytest.param(["x"], "mounts must be a dict", id="list"),
    pytest.param("raw", "mounts must be a dict", id="str"),
    pytest.param({"bad name": FOLDER}, "mount name 'bad name' is invalid", id="name-space"),
    pytest.param({"": FOLDER}, "mount name '' is invalid", id="name-empty"),
    pytest.param({5: FOLDER}, "mount name 5 is of type int", id="name-int"),
    pytest.param({"lake": FOLDER}, "exists already", id="repoint-lake-mount"),
    pytest.param({"ok": FOLDER, "m": "ftp://x/y"}, "unsupported URI scheme", id="good-and-bad"),
]
REPOINT = pytest.param({"raw": "memory://elsewhere"}, "exists already", id="repoint-raw-mount")
"""Bad only for a lake that has a mount "raw" already."""


@pytest.mark.parametrize(("mounts", "message"), [*BAD_MOUNTS, REPOINT])
def test_bad_mounts_leave_the_lake_as_it_was(shared, mounts, message):
    where = shared.where
    lake = where.connect()
    before = _state(lake)
    mounts_before = dict(lake.info.mounts)
    assert set(mounts_before) == {"lake", "raw"}
    with pytest.raises(ConfigError, match=message) as caught:
        where.connect(mounts=_fill(mounts, where.child("other").uri))
    assert caught.value.details["field"] == "mounts"
    again = where.connect()  # the lake still opens ...
    assert again.info.mounts == mounts_before  # ... with its mounts unchanged
    assert _state(again) == before
    assert again.objects.get(again.objects.put(b"still works")) == b"still works"


@pytest.mark.parametrize(("mounts", "message"), BAD_MOUNTS)
def test_bad_mounts_create_no_lake(where, mounts, message):
    fresh = where.child("fresh")
    with pytest.raises(ConfigError, match=message):
        fresh.connect(mounts=_fill(mounts, where.child("other").uri))
    with pytest.raises(LakeNotFoundError):
        fresh.connect(create=False)


def test_bad_mount_names_the_mount(where):
    lake = where.connect()
    with pytest.raises(ConfigError) as caught:
        where.connect(mounts={"m": "ftp://host/x"})
    assert "mount 'm'" in str(caught.value)
    assert caught.value.details["mount"] == "m"
    assert set(where.connect().info.mounts) == set(lake.info.mounts) == {"lake"}


@pytest.mark.skipif(importlib.util.find_spec("gcsfs") is not None, reason="gcsfs is installed here")
def test_mount_whose_backend_is_missing_is_refused_before_writing(where):
    lake = where.connect()
    before = _state(lake)
    with pytest.raises(NotInstalledError, match="gcsfs"):
        where.connect(mounts={"g": "gs://bucket/prefix"})
    assert _state(where.connect()) == before


def test_good_mounts_still_work(where, tmp_path):
    raw = where.child("raw").uri
    lake = where.connect(mounts={"raw": raw})
    assert lake.info.mounts["raw"].uri == raw
    assert where.connect(mounts={"raw": raw}).info == lake.info  # same config again: no-op
    ref = lake.objects.put(b"abc", mount="raw")
    assert where.connect().objects.get(ref) == b"abc"
    local = lakecore.connect(tmp_path / "pathlake", mounts={"p": tmp_path / "folder"})
    assert local.info.mounts["p"].uri == str(tmp_path / "folder")


def test_lake_json_with_a_bad_mount_names_it(tmp_path):
    lake = lakecore.connect(tmp_path / "l")
    path = Path(lake.location.child("lake.json").uri)
    info = json.loads(path.read_text())
    info["mounts"]["m"] = {"kind": "folder", "uri": "ftp://host/x", "read_only": False}
    path.write_text(json.dumps(info))
    with pytest.raises(ConfigError, match=r"mount 'm' of lake\.json is unusable"):
        lakecore.connect(tmp_path / "l")


# -- 2. lake.objects ----------------------------------------------------------------------------


def _ghost() -> StorageRef:
    return StorageRef(mount="lake", key="blob/" + "0" * 64, sha256="0" * 64, size=1)


BAD_OBJECT_CALLS = [
    pytest.param(lambda o: o.put(123), "source", None, id="put-int"),
    pytest.param(lambda o: o.put(None), "source", None, id="put-none"),
    pytest.param(lambda o: o.put({"a": 1}), "source", None, id="put-dict"),
    pytest.param(lambda o: o.put(b"x", mount=5), "mount", None, id="put-mount-int"),
    pytest.param(lambda o: o.put(b"x", key=5), "key", None, id="put-key-int"),
    pytest.param(lambda o: o.put_many([b"x", 5]), "sources", 1, id="put_many-item-int"),
    pytest.param(lambda o: o.put_many([b"x", b"y", None]), "sources", 2, id="put_many-item-none"),
    pytest.param(lambda o: o.put_many(b"abc"), "sources", None, id="put_many-bytes"),
    pytest.param(lambda o: o.put_many("a.bin"), "sources", None, id="put_many-str"),
    pytest.param(lambda o: o.put_many(io.BytesIO(b"x")), "sources", None, id="put_many-stream"),
    pytest.param(lambda o: o.put_many(None), "sources", None, id="put_many-none"),
    pytest.param(lambda o: o.put_many(5), "sources", None, id="put_many-int"),
    pytest.param(lambda o: o.put_many({b"x": 1}), "sources", None, id="put_many-dict"),
    pytest.param(lambda o: o.put_many([b"x"], keys=[]), "keys", None, id="put_many-keys-short"),
    pytest.param(lambda o: o.put_many([b"x"], keys="k"), "keys", None, id="put_many-keys-str"),
    pytest.param(lambda o: o.put_many([b"x"], keys=[5]), "keys", 0, id="put_many-keys-int"),
    pytest.param(lambda o: o.put_many([b"x"], progress=5), "progress", None, id="progress-int"),
    pytest.param(lambda o: o.put_columns([b"x", 5.0]), "sources", 1, id="put_columns-item"),
    pytest.param(lambda o: o.get("blob/abc"), "ref", None, id="get-str"),
    pytest.param(lambda o: o.get(None), "ref", None, id="get-none"),
    pytest.param(lambda o: o.get(dict), "ref", None, id="get-type"),
    pytest.param(lambda o: o.get(_ghost().model_dump()), "ref", None, id="get-dict"),
    pytest.param(lambda o: o.get_many("x"), "refs", None, id="get_many-str"),
    pytest.param(lambda o: o.get_many(None), "refs", None, id="get_many-none"),
    pytest.param(lambda o: o.get_many(_ghost()), "refs", None, id="get_many-one-ref"),
    pytest.param(lambda o: o.get_many([_ghost(), "x"]), "refs", 1, id="get_many-item"),
    pytest.param(lambda o: o.open(5), "ref", None, id="open-int"),
    pytest.param(lambda o: o.exists(5), "ref", None, id="exists-int"),
    pytest.param(lambda o: o.head("x"), "ref", None, id="head-str"),
    pytest.param(lambda o: o.copy(5, "lake"), "ref", None, id="copy-ref-int"),
    pytest.param(lambda o: o.copy(o.put(b"c"), 5), "mount", None, id="copy-mount-int"),
    pytest.param(lambda o: o.register(5, "k"), "mount", None, id="register-mount-int"),
    pytest.param(lambda o: o.register("raw", 5), "key", None, id="register-key-int"),
    pytest.param(lambda o: o.register("raw", ""), "key", None, id="register-key-empty"),
    pytest.param(lambda o: o.mount(5), "mount", None, id="mount-int"),
]


@pytest.mark.parametrize(("call", "field", "row"), BAD_OBJECT_CALLS)
def test_bad_object_calls_raise_validation_errors(shared, call, field, row):
    lake = shared  # copy-mount-int puts b"c" first: stored already, so no change
    before = _state(lake)
    raw_before = lake.objects.mount("raw").fs.find(lake.objects.mount("raw").root.uri)
    with pytest.raises(ValidationError) as caught:
        call(lake.objects)
    err = caught.value
    assert err.details["field"] == field
    assert err.details.get("row") == row
    assert field in str(err)
    assert _state(lake) == before
    assert lake.objects.mount("raw").fs.find(lake.objects.mount("raw").root.uri) == raw_before


def test_bad_payload_types_say_what_is_accepted(lake):
    with pytest.raises(ValidationError, match="pass bytes, a file path or a binary stream"):
        lake.objects.put(123)
    with pytest.raises(ValidationError, match=r"sources\[1\] of type int"):
        lake.objects.put_many([b"x", 5])
    with pytest.raises(ValidationError, match="not a StorageRef: pass a StorageRef, as returned"):
        lake.objects.get("blob/abc")


def test_bad_payload_type_is_also_a_type_error_and_pickles(lake):
    with pytest.raises(TypeError) as caught:  # what put() raised before: still caught
        lake.objects.put(123)
    err = caught.value
    assert isinstance(err, ValidationError)
    assert isinstance(err, LakecoreError)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert back.details == err.details == {"field": "source"}


def test_bad_item_in_folder_put_many_writes_nothing(where):
    lake = where.connect(mounts={"raw": where.child("raw").uri})
    raw = lake.objects.mount("raw")
    before = raw.fs.find(raw.root.uri)
    with pytest.raises(ValidationError) as caught:
        lake.objects.put_many([b"first", b"second", object()], mount="raw")
    assert caught.value.details == {"field": "sources", "row": 2}
    assert raw.fs.find(raw.root.uri) == before


def test_good_object_calls_still_work(where, tmp_path):
    lake = where.connect(mounts={"raw": where.child("raw").uri})
    objs = lake.objects
    path = tmp_path / "p.bin"
    path.write_bytes(b"from a path")
    refs = objs.put_many([b"a", bytearray(b"b"), memoryview(b"c"), str(path), io.BytesIO(b"d")])
    assert objs.get_many(refs) == [b"a", b"b", b"c", b"from a path", b"d"]
    assert objs.get_many(tuple(refs[:2])) == [b"a", b"b"]
    assert objs.get_many(r for r in refs[:1]) == [b"a"]
    assert objs.put(path) == refs[3]
    assert objs.put_many([b"k1", b"k2"], mount="raw", keys=["x/1", None])[0].key == "x/1"
    assert objs.exists(refs[0]) and objs.head(refs[0]).size == 1
    moved = objs.copy(refs[0], "raw")
    assert objs.get(moved) == b"a"
    assert objs.register("raw", "x/1").size == 2
    assert not objs.exists(_ghost())


# -- 3. connect() and Lake methods --------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"uri": 5}, "uri", id="uri-int"),
        pytest.param({"uri": None}, "uri", id="uri-none"),
        pytest.param({"uri": b"/tmp/x"}, "uri", id="uri-bytes"),
        pytest.param({"storage_options": 5}, "storage_options", id="options-int"),
        pytest.param({"storage_options": "region=x"}, "storage_options", id="options-str"),
        pytest.param({"storage_options": ["a"]}, "storage_options", id="options-list"),
        pytest.param({"storage_options": {"region": 1}}, "storage_options", id="options-value"),
        pytest.param({"lease_ttl": 0}, "lease_ttl", id="ttl-zero"),
        pytest.param({"lease_ttl": -5.0}, "lease_ttl", id="ttl-negative"),
        pytest.param({"lease_ttl": math.nan}, "lease_ttl", id="ttl-nan"),
        pytest.param({"lease_ttl": "30"}, "lease_ttl", id="ttl-str"),
        pytest.param({"large_threshold": 0}, "large_threshold", id="threshold-zero"),
        pytest.param({"large_threshold": 1.5}, "large_threshold", id="threshold-float"),
        pytest.param({"large_threshold": "big"}, "large_threshold", id="threshold-str"),
    ],
)
def test_bad_connect_arguments(tmp_path, kwargs, field):
    args = {"uri": tmp_path / "lake", **kwargs}
    with pytest.raises(ConfigError) as caught:
        lakecore.connect(args.pop("uri"), **args)
    assert caught.value.details["field"] == field
    assert not (tmp_path / "lake").exists()  # nothing created


def test_bad_connect_arguments_leave_an_existing_lake_alone(where):
    lake = where.connect()
    before = _state(lake)
    with pytest.raises(ConfigError):
        where.connect(lease_ttl=-1)
    with pytest.raises(ConfigError):
        lakecore.connect(where.uri, storage_options=5)
    assert _state(where.connect()) == before


@pytest.mark.parametrize(
    ("call", "field"),
    [
        pytest.param(lambda lake: lake.snapshot_at(-1), "catalog_version", id="snapshot_at-neg"),
        pytest.param(lambda lake: lake.snapshot_at(0), "catalog_version", id="snapshot_at-zero"),
        pytest.param(lambda lake: lake.snapshot_at("1"), "catalog_version", id="snapshot_at-str"),
        pytest.param(lambda lake: lake.snapshot_at(1.0), "catalog_version", id="snapshot_at-float"),
        pytest.param(lambda lake: lake.snapshot_at(True), "catalog_version", id="snapshot_at-bool"),
        pytest.param(lambda lake: lake.gc(grace=5), "grace", id="gc-grace-int"),
        pytest.param(lambda lake: lake.gc(grace="1h"), "grace", id="gc-grace-str"),
        pytest.param(
            lambda lake: lake.gc(grace=timedelta(hours=-1)), "grace", id="gc-grace-negative"
        ),
        pytest.param(
            lambda lake: lake.gc(dry_run=None, grace=timedelta(0)), "dry_run", id="gc-dry-none"
        ),
        pytest.param(lambda lake: lake.gc(compact="no"), "compact", id="gc-compact-str"),
        pytest.param(lambda lake: lake.wait("x"), "timeout", id="wait-str"),
        pytest.param(lambda lake: lake.wait(-1), "timeout", id="wait-negative"),
        pytest.param(lambda lake: lake.wait(math.nan), "timeout", id="wait-nan"),
    ],
)
def test_bad_lake_method_arguments(shared, call, field):
    lake = shared
    before = _state(lake)
    with pytest.raises(ValidationError) as caught:
        call(lake)
    assert caught.value.details["field"] == field
    assert field in str(caught.value)
    assert _state(lake) == before


def test_good_lake_method_arguments(lake):
    snap = lake.snapshot()
    assert lake.snapshot_at(snap.catalog_version).pins == snap.pins
    lake.wait(0)
    lake.wait(0.5)
    report = lake.gc(grace=timedelta(0))
    assert report.dry_run


# -- 4. table scans: columns and filter ---------------------------------------------------------

BAD_SCANS = [
    pytest.param(lambda lake: lake.table("assets", filter="kind = "), "filter", id="filter-eof"),
    pytest.param(lambda lake: lake.assets.count(filter="nope = 1"), "filter", id="count-unknown"),
    pytest.param(lambda lake: lake.assets.count(filter="kind ="), "filter", id="count-parse"),
    pytest.param(lambda lake: lake.assets.table(filter="kind = 1"), "filter", id="filter-type"),
    pytest.param(lambda lake: lake.assets.table(filter=""), "filter", id="filter-empty"),
    pytest.param(lambda lake: lake.assets.count(filter=5), "filter", id="filter-int"),
    pytest.param(lambda lake: lake.datums.count("split = "), "filter", id="datums-count"),
    pytest.param(
        lambda lake: lake.annotations.table(filter="label =="), "filter", id="annotations-filter"
    ),
    pytest.param(
        lambda lake: lake.assets.table(columns=["asset_id"], filter="size_bytes = 'x'"),
        "filter",
        id="filter-with-columns",
    ),
    pytest.param(lambda lake: lake.assets.table(columns="nope"), "columns", id="columns-str"),
    pytest.param(lambda lake: lake.assets.table(columns=b"kind"), "columns", id="columns-bytes"),
    pytest.param(lambda lake: lake.assets.table(columns=["nope"]), "columns", id="columns-unknown"),
    pytest.param(
        lambda lake: lake.assets.table(columns=["asset_id", "asset_id"]),
        "columns",
        id="columns-twice",
    ),
    pytest.param(lambda lake: lake.assets.table(columns=[5]), "columns", id="columns-int"),
    pytest.param(lambda lake: lake.assets.table(columns=5), "columns", id="columns-not-list"),
    pytest.param(
        lambda lake: lake.table("assets", columns=["nope"], filter="kind = 'image'"),
        "columns",
        id="columns-unknown-with-filter",
    ),
    pytest.param(
        lambda lake: lake.table("assets", columns=["storage.nope"]),
        "columns",
        id="columns-nested-unknown",
    ),
]


@pytest.mark.parametrize(("call", "field"), BAD_SCANS)
def test_bad_scans_raise_validation_errors(shared, call, field):
    lake = shared
    before = _state(lake)
    with pytest.raises(ValidationError) as caught:
        call(lake)
    err = caught.value
    assert not isinstance(err, OSError)  # never mistaken for an I/O error
    assert err.details["field"] == field
    assert _state(lake) == before


def test_bad_scan_messages(lake):
    with pytest.raises(ValidationError, match=r"bad filter 'kind = ' on table 'assets'"):
        lake.table("assets", filter="kind = ")
    with pytest.raises(ValidationError, match=r"has no column\(s\) \['nope'\].*'asset_id'"):
        lake.assets.table(columns=["nope"])
    with pytest.raises(ValidationError, match=r"list of column names \(e.g. \['asset_id'\]\)"):
        lake.assets.table(columns=5)
    with pytest.raises(ValidationError) as caught:
        lake.assets.count(filter="nope = 1")
    assert caught.value.details["filter"] == "nope = 1"
    assert ".rs:" not in str(caught.value)  # Lance's source locations are dropped


def test_good_scans_still_work(lake):
    lake.assets.add(b"an asset", kind="image")
    assert lake.assets.count(filter="kind = 'image'") == 1
    assert lake.assets.count() == 1
    assert lake.assets.table(["asset_id"], filter="kind = 'image'").column_names == ["asset_id"]
    assert lake.table("assets", columns=("asset_id", "kind")).num_rows == 1
    # a lone str is one column (as in lake.datasets and lake.sql)
    assert lake.assets.table(columns="asset_id").column_names == ["asset_id"]
    assert lake.table("assets", columns="kind").column("kind").to_pylist() == ["image"]
    assert lake.table("assets", columns=["_rowid"]).column_names == ["_rowid"]
    assert lake.table("assets", columns=["storage.mount"]).column("storage.mount").to_pylist() == [
        "lake"
    ]
    assert lake.table("assets", filter="storage.mount = 'lake'").num_rows == 1
    assert lake.table("assets", columns=[]).num_rows == 1


@pytest.mark.parametrize("damage", ["deleted", "overwritten"])
def test_io_errors_are_not_validation_errors(tmp_path, damage):
    """A missing or damaged data file is not a bad filter or column (Lance calls a damaged
    file "invalid user input" too)."""
    lake = lakecore.connect(tmp_path / "l")
    lake.assets.add(b"an asset", kind="image")
    for data in Path(lake._tables.uri("assets"), "data").iterdir():
        if damage == "deleted":
            data.unlink()
        else:
            with data.open("r+b") as f:
                f.seek(-8, 2)
                f.write(bytes(8))
    again = lakecore.connect(tmp_path / "l")
    for call in (
        lambda: again.table("assets", filter="kind = 'image'"),
        lambda: again.assets.count(filter="kind = 'image'"),
        lambda: again.table("assets", columns=["asset_id"]),
    ):
        with pytest.raises(Exception) as caught:  # whatever Lance raises
            call()
        assert not isinstance(caught.value, ValidationError)
