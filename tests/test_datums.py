"""Datums: every input form, reads, delete rules, and batch validation (hypothesis: one bad row
rejects the whole batch and is named) — on local disk and S3."""

from __future__ import annotations

import json
import uuid

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakecore.entities.assets import Assets
from lakecore.entities.datums import Datums
from lakecore.entities.summary import render_summary, summary
from lakecore.errors import InUseError, NotFoundError, ValidationError
from lakecore.tables import Append, to_arrow
from schemas import AnnotationRecord

MAP = pa.map_(pa.string(), pa.string())


def test_add_read_delete_every_input_form(lake):
    ids = Assets(lake).add_many([b"i0", b"i1", b"d0"], kind="blob")["asset_id"].to_pylist()
    datums = Datums(lake)
    one = datums.add(
        {"image": ids[0], "depth": ids[2]}, split="train", metadata={"k": 1}, created_by="ci"
    )
    assert (one.assets, one.split, one.metadata, one.created_by) == (
        {"image": ids[0], "depth": ids[2]},
        "train",
        {"k": 1},
        "ci",
    )

    as_map = pa.table(
        {
            "datum_id": ["datum_m0", None],
            "assets": pa.array([{"image": ids[0]}, {"image": ids[1]}], MAP),
            "metadata": ['{"src": "a"}', None],
        }
    )
    got = datums.add_many(as_map)
    assert got["datum_id"][0].as_py() == "datum_m0"
    assert got["datum_id"][1].as_py().startswith("datum_")
    roles = pa.StructArray.from_arrays(
        [pa.array([ids[0], ids[1]]), pa.array([ids[2], None])], ["image", "depth"]
    )
    meta = pa.StructArray.from_arrays([pa.array([1, 2])], ["frame"])
    as_struct = datums.add_many(
        pa.table({"assets": roles, "metadata": meta, "split": ["val", None]})
    )
    rows = datums.get_many(as_struct["datum_id"].to_pylist())
    assert [dict(m) for m in rows["assets"].to_pylist()] == [
        {"image": ids[0], "depth": ids[2]},
        {"image": ids[1]},
    ]
    assert [json.loads(m) for m in rows["metadata"].to_pylist()] == [{"frame": 1}, {"frame": 2}]
    as_dicts = datums.add_many(
        [{"assets": {"image": ids[1]}, "split": "test", "metadata": {"x": [1, 2]}}]
    )
    assert datums.get(as_dicts["datum_id"][0].as_py()).metadata == {"x": [1, 2]}
    assert datums.count() == 6 and datums.count("split = 'train'") == 1
    assert datums.table(["datum_id"], filter="split = 'val'").num_rows == 1

    rec = AnnotationRecord(
        set_id="annset_t",
        datum_id="datum_m0",
        kind="classification",
        label="cat",
        source_kind="human",
        source_name="t",
    )
    lake.commit([Append("annotation_records", to_arrow([rec], AnnotationRecord))])
    pins = lake.snapshot().pins
    with pytest.raises(InUseError, match=f"datum_m0 by annotation record {rec.annotation_id}"):
        datums.delete(["datum_m0", one.datum_id])
    with pytest.raises(NotFoundError, match="datum_zz"):
        datums.delete(["datum_zz"])
    with pytest.raises(NotFoundError, match="datum_zz"):
        datums.get("datum_zz")
    assert lake.snapshot().pins == pins
    datums.delete([one.datum_id])
    assert datums.count() == 5 and Assets(lake).count() == 3
    info = summary(lake)
    assert info["tables"]["datums"] == 5 and info["tables"]["annotation_records"] == 1
    assert info["payloads"] == {"count": 3, "bytes": 6}
    text = render_summary(info)
    assert (
        "datums" in text
        and "payloads" in text
        and len(text.splitlines()) == len(lake.table_names) + 1
    )


BAD_INPUT = [
    ("not a table", "rows"),
    (pa.table({"split": ["train"]}), "assets"),
    (pa.table({"assets": pa.array([{"image": "asset_x"}], MAP), "extra": [1]}), "extra"),
    (pa.table({"assets": [1]}), "assets"),
    ([{"assets": {"image": "asset_x"}, "colour": "red"}], "colour"),
    ([{"assets": ["asset_x"]}], "assets"),
    ([{"assets": {"image": 5}}], "assets"),
    ([{"assets": {}}], "assets"),
    ([{"assets": {"image": "  "}}], "assets"),
    ([{"assets": {"image": "asset_x"}, "metadata": "[1, 2]"}], "metadata"),
    ([{"assets": {"image": "asset_x"}, "metadata": '{"a": NaN}'}], "metadata"),
    ([{"assets": {"image": "asset_x"}, "datum_id": "has space"}], "datum_id"),
    ([{"assets": {"image": "asset_x"}, "datum_id": ""}], "datum_id"),
    (pa.table({"assets": pa.array([[("image", "a"), ("image", "b")]], MAP)}), "assets"),
]


def test_bad_input_is_refused(tmp_path):
    import lakecore

    lake = lakecore.connect(tmp_path / "lake")  # these checks run before any storage access
    pins = lake.snapshot().pins
    for i, (rows, field) in enumerate(BAD_INPUT):
        with pytest.raises(ValidationError) as err:
            Datums(lake).add_many(rows)
        assert err.value.details.get("field") == field, f"case {i}: {err.value}"
    assert lake.snapshot().pins == pins


GOOD_ROLES = st.sampled_from(["image", "depth", "mask_2", "x"])
BAD = {
    "unknown_asset": "assets",
    "bad_role": "assets",
    "bad_split": "split",
    "dup_in_batch": "datum_id",
    "dup_existing": "datum_id",
    "bad_metadata": "metadata",
}


@st.composite
def batch_with_one_bad_row(draw, asset_ids):
    kind = draw(st.sampled_from(sorted(BAD)))
    n = draw(st.integers(2 if kind == "dup_in_batch" else 1, 6))
    bad = draw(st.integers(1 if kind == "dup_in_batch" else 0, n - 1))
    rows = []
    for _ in range(n):
        roles = draw(st.lists(GOOD_ROLES, min_size=1, max_size=3, unique=True))
        rows.append(
            {
                "datum_id": draw(st.sampled_from([None, f"datum_{uuid.uuid4().hex}"])),
                "assets": {r: draw(st.sampled_from(asset_ids)) for r in roles},
                "split": draw(st.sampled_from([None, "train", "val", "trainval.v2"])),
                "metadata": draw(st.sampled_from([None, '{"a": 1}', "{}"])),
            }
        )
    row = rows[bad]
    if kind == "unknown_asset":
        row["assets"][draw(st.sampled_from(sorted(row["assets"])))] = "asset_unknown"
    elif kind == "bad_role":
        row["assets"][draw(st.sampled_from(["Image", "1st", "a-b", "", "x y"]))] = asset_ids[0]
    elif kind == "bad_split":
        row["split"] = draw(st.sampled_from(["", "has space", "x" * 65, "a/b"]))
    elif kind == "dup_in_batch":
        earlier = draw(st.integers(0, bad - 1))
        rows[earlier]["datum_id"] = row["datum_id"] = f"datum_dup_{uuid.uuid4().hex}"
    elif kind == "dup_existing":
        row["datum_id"] = "datum_existing"
    else:
        row["metadata"] = draw(st.sampled_from(['{"a": 1', "[]", "null", '{"a": Infinity}']))
    as_table = draw(st.booleans())
    if as_table:
        rows = pa.table(
            {
                k: pa.array([r[k] for r in rows], MAP if k == "assets" else pa.string())
                for k in rows[0]
            }
        )
    return rows, bad, BAD[kind]


@pytest.fixture
def seeded(lake):
    ids = Assets(lake).add_many([b"s0", b"s1", b"s2"], kind="blob")["asset_id"].to_pylist()
    Datums(lake).add_many([{"datum_id": "datum_existing", "assets": {"image": ids[0]}}])
    return lake, ids


@given(data=st.data())
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_batch_with_one_bad_row_is_rejected_whole(seeded, data):
    lake, ids = seeded
    rows, bad, field = data.draw(batch_with_one_bad_row(ids))
    pins = lake.snapshot().pins
    with pytest.raises(ValidationError) as err:
        Datums(lake).add_many(rows)
    assert (err.value.details["row"], err.value.details["field"]) == (bad, field), err.value
    assert f"row {bad}" in str(err.value)
    assert lake.snapshot().pins == pins


def _data_files(lake, table: str) -> set[str]:
    fs, data = lake._catalog.fs, f"{lake._tables.uri(table)}/data"
    fs.invalidate_cache()
    return set(fs.find(data))


@given(data=st.data())
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_a_batch_written_ahead_is_still_rejected_whole(seeded, monkeypatch, data):
    """Large batches write their data files while they are checked against the lake: a bad
    row still leaves the lake as it was, and no writer thread is left behind."""
    import threading

    from lakecore.entities import datums

    monkeypatch.setattr(datums, "WRITE_AHEAD_ROWS", 1)  # every batch takes that path
    lake, ids = seeded
    rows, bad, field = data.draw(batch_with_one_bad_row(ids))
    pins, files = lake.snapshot().pins, _data_files(lake, "datums")
    with pytest.raises(ValidationError) as err:
        Datums(lake).add_many(rows)
    assert (err.value.details["row"], err.value.details["field"]) == (bad, field), err.value
    assert lake.snapshot().pins == pins
    assert _data_files(lake, "datums") == files  # what was written ahead is removed
    assert not [t for t in threading.enumerate() if t.name.startswith("lakecore-write-ahead")]
    written = Datums(lake).add_many([{"assets": {"image": ids[1]}}, {"assets": {"image": ids[2]}}])
    stored = lake.snapshot().to_table("datums", columns=["datum_id"])["datum_id"].to_pylist()
    assert set(written["datum_id"].to_pylist()) <= set(stored)


@pytest.mark.parametrize("ahead", [False, True], ids=["small batch", "written ahead"])
@pytest.mark.parametrize("race", ["asset deleted", "datum id taken"])
def test_a_change_between_the_check_and_the_commit_is_seen(where, monkeypatch, ahead, race):
    """``add_many`` checks its batch before it takes the lease and reuses that check when the
    datums and assets tables have not moved since; here another writer changes one of them in
    between: the commit checks again and refuses the batch, and nothing is written."""
    from lakecore.entities import datums

    if ahead:
        monkeypatch.setattr(datums, "WRITE_AHEAD_ROWS", 1)
    lake, other = where.connect(), where.connect()
    keep, doomed = lake.assets.add_many([b"keep", b"doomed"], kind="blob")["asset_id"].to_pylist()
    checks: list[int] = []
    real_check = datums._check_snapshot

    def counted(*args, **kwargs):
        checks.append(1)
        return real_check(*args, **kwargs)

    monkeypatch.setattr(datums, "_check_snapshot", counted)
    lake.datums.add_many([{"assets": {"image": keep}}])  # nothing moved: one check
    assert len(checks) == 1
    commit = lake.commit

    def racing(*args, **kwargs):
        if race == "asset deleted":
            other.assets.delete([doomed])
        else:
            other.datums.add_many([{"datum_id": "datum_raced", "assets": {"image": keep}}])
        return commit(*args, **kwargs)

    monkeypatch.setattr(lake, "commit", racing)
    rows = [{"assets": {"image": doomed}}, {"assets": {"image": keep}}]
    if race == "datum id taken":
        rows[0] = {"datum_id": "datum_raced", "assets": {"image": keep}}
    before = lake.snapshot().to_table("datums").num_rows
    with pytest.raises(ValidationError) as err:
        lake.datums.add_many(rows)
    assert err.value.details["row"] == 0
    assert len(checks) == 1 + 2 + (1 if race == "datum id taken" else 0)
    monkeypatch.undo()
    after = lake.snapshot().to_table("datums")
    assert after.num_rows == before + (1 if race == "datum id taken" else 0)
