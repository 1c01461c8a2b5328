"""Bad arguments to the entity API: every one gets an error from lakecore's error tree naming
what was wrong, and the lake (tables and payloads) reads as before — on local disk and S3."""

from __future__ import annotations

from types import MappingProxyType

import pyarrow as pa
import pytest

from lakecore.errors import AliasAlreadyExistsError, LakecoreError, ValidationError

MAP = pa.map_(pa.string(), pa.string())


def _seed(lake):
    aid = lake.assets.add(b"seed", kind="blob", alias="cams/seed").asset_id
    schema = lake.annotations.create_schema(
        "pets", task_type="detection", labels=["cat"], allowed_kinds=["bbox"], allow_scores=True
    )
    aset = lake.annotations.create_set("gt", schema_id=schema.schema_id)
    return lake, aid, aset.set_id


@pytest.fixture
def seeded(lake):
    return _seed(lake)


@pytest.fixture(scope="module")
def shared(module_where):
    """One seeded lake per storage for the refused calls (each checks it left it as it was)."""
    return _seed(module_where.connect())


def _payload_rows(lake) -> int:
    return lake.objects.mount("lake").dataset(refresh=True).count_rows()


def _refused(lake, call, field=None, error=ValidationError):
    """``call`` raises ``error`` (a LakecoreError), naming ``field``; nothing changed."""
    pins, payloads = lake.snapshot().pins, _payload_rows(lake)
    with pytest.raises(error) as err:
        call()
    assert isinstance(err.value, LakecoreError)
    if field is not None:
        assert err.value.details.get("field") == field, err.value
    assert lake.snapshot().pins == pins
    assert _payload_rows(lake) == payloads
    return err.value


def _box(aid, **over):
    cols = {"asset_id": [aid], "kind": ["bbox"], "label": ["cat"], "bbox": [[1.0, 2.0, 3.0, 4.0]]}
    cols.update(over)
    return pa.table(cols)


ANNOTATION_CALLS = {
    "labels as one string": (
        lambda a, aid, s: a.create_schema(
            "x", task_type="detection", labels="car", allowed_kinds=["bbox"]
        ),
        "labels",
    ),
    "kinds as one string": (
        lambda a, aid, s: a.create_schema(
            "x", task_type="detection", labels=["car"], allowed_kinds="bbox"
        ),
        "allowed_kinds",
    ),
    "labels None": (
        lambda a, aid, s: a.create_schema(
            "x", task_type="detection", labels=None, allowed_kinds=["bbox"]
        ),
        "labels",
    ),
    "skeleton a number": (
        lambda a, aid, s: a.create_schema(
            "x", task_type="keypoints", labels=["p"], allowed_kinds=["keypoints"], skeleton=5
        ),
        "skeleton",
    ),
    "metadata a list": (
        lambda a, aid, s: a.create_set("x", metadata=[1]),
        "metadata",
    ),
    "schema name with a control character": (
        lambda a, aid, s: a.create_schema(
            "y\x00", task_type="detection", labels=["car"], allowed_kinds=["bbox"]
        ),
        "name",
    ),
    "get_schema(5)": (lambda a, aid, s: a.get_schema(5), "schema_id"),
    "get_set(None)": (lambda a, aid, s: a.get_set(None), "set_id"),
    "get(5)": (lambda a, aid, s: a.get(5), "annotation_id"),
    "find_schema(5)": (lambda a, aid, s: a.find_schema(5), "name"),
    "find_schema version 1": (lambda a, aid, s: a.find_schema("pets", 1), "version"),
    "delete_schema(5)": (lambda a, aid, s: a.delete_schema(5), "schema_id"),
    "delete_set(5)": (lambda a, aid, s: a.delete_set(5), "set_id"),
    "records(set_id=5)": (lambda a, aid, s: a.records(set_id=5), "set_id"),
    "count(set_id=5)": (lambda a, aid, s: a.count(set_id=5), "set_id"),
    "delete(5)": (lambda a, aid, s: a.delete(5), "annotation_ids"),
    "delete(None)": (lambda a, aid, s: a.delete(None), "annotation_ids"),
    "delete([None])": (lambda a, aid, s: a.delete([None]), "annotation_ids"),
    "add to set 5": (lambda a, aid, s: a.add(5, _box(aid)), "set_id"),
    "add None": (lambda a, aid, s: a.add(s, None), "records"),
    "add a number": (lambda a, aid, s: a.add(s, 5), "records"),
    "add one dict": (
        lambda a, aid, s: a.add(s, {"asset_id": aid, "kind": "bbox", "label": "cat"}),
        "records",
    ),
    "bbox as text": (
        lambda a, aid, s: a.add(s, _box(aid, bbox=[["1", "2", "3e1", "4"]])),
        "bbox",
    ),
    "score as text": (lambda a, aid, s: a.add(s, _box(aid, score=["0.5"])), "score"),
    "score as a bool": (lambda a, aid, s: a.add(s, _box(aid, score=[True])), "score"),
    "label as a number": (lambda a, aid, s: a.add(s, _box(aid, label=[7])), "label"),
}


@pytest.mark.parametrize("case", sorted(ANNOTATION_CALLS))
def test_bad_annotation_arguments_are_refused(shared, case):
    lake, aid, set_id = shared
    call, field = ANNOTATION_CALLS[case]
    before = lake.annotations.count()
    _refused(lake, lambda: call(lake.annotations, aid, set_id), field, error=LakecoreError)
    assert lake.annotations.count() == before


def test_good_annotation_arguments_still_pass(seeded):
    """The checks above refuse types, not values: the same calls with the right types work."""
    lake, aid, set_id = seeded
    ann = lake.annotations
    ann.create_schema(
        "x",
        task_type="detection",
        labels=("car", "bus"),  # any iterable of labels
        allowed_kinds=iter(["bbox"]),
        metadata=MappingProxyType({"a": 1}),
    )
    assert ann.find_schema("x").label_names() == ["car", "bus"]
    written = ann.add(
        set_id, _box(aid, score=[0.5], bbox=pa.array([[1, 2, 3, 4]], pa.list_(pa.int64())))
    )
    assert written["bbox"].to_pylist() == [[1.0, 2.0, 3.0, 4.0]]
    assert ann.delete(written["annotation_id"]) == 1


ASSET_CALLS = {
    "metadata a list": (lambda lk, aid: lk.assets.add(b"n1", metadata=[1, 2]), "metadata"),
    "metadata a string": (lambda lk, aid: lk.assets.add(b"n2", metadata="abc"), "metadata"),
    "alias a number": (lambda lk, aid: lk.assets.add(b"n3", alias=123), "aliases"),
    "aliases with a number": (
        lambda lk, aid: lk.assets.add_many([b"n4", b"n5"], aliases=["p/1", 7]),
        "aliases",
    ),
    "progress not callable": (
        lambda lk, aid: lk.assets.add_many([b"n6"], progress=5),
        "progress",
    ),
    "media type with a newline": (
        lambda lk, aid: lk.assets.add(b"n7", media_type="image/jp eg\n"),
        "media_types",
    ),
    "media type with two slashes": (
        lambda lk, aid: lk.assets.add(b"n8", media_type="a/b/c"),
        "media_types",
    ),
    "created_by with a control character": (
        lambda lk, aid: lk.assets.add(b"n9", created_by="a\x00b"),
        "created_by",
    ),
    "update_metadata None": (lambda lk, aid: lk.assets.update_metadata(aid, None), "metadata"),
    "update_metadata None, merged": (
        lambda lk, aid: lk.assets.update_metadata(aid, None, merge=True),
        "metadata",
    ),
    "collection name with a control character": (
        lambda lk, aid: lk.collections.create("ctl\x01"),
        "name",
    ),
}


@pytest.mark.parametrize("case", sorted(ASSET_CALLS))
def test_bad_asset_arguments_are_refused_before_any_payload_is_stored(shared, case):
    lake, aid, _ = shared
    call, field = ASSET_CALLS[case]
    _refused(lake, lambda: call(lake, aid), field, error=LakecoreError)
    assert lake.assets.get(aid).metadata == {}


def test_an_alias_taken_already_is_refused_before_the_payloads_are_stored(shared):
    lake, _, _ = shared
    err = _refused(
        lake,
        lambda: lake.assets.add_many(
            [b"p%d" % i for i in range(5)], aliases=[None] * 4 + ["cams/seed"]
        ),
        error=AliasAlreadyExistsError,
    )
    assert "cams/seed" in str(err)


def test_metadata_mappings_of_any_kind_are_accepted(seeded):
    lake, _, _ = seeded
    rows = lake.assets.add_many([b"m1", b"m2"], metadata=[MappingProxyType({"k": 1}), None])
    assert [lake.assets.get(a).metadata for a in rows["asset_id"].to_pylist()] == [{"k": 1}, {}]


@pytest.mark.parametrize(
    "column, values",
    [
        ("datum_id", pa.array([7], pa.int64())),
        ("split", pa.array([5], pa.int64())),
        ("created_by", pa.array([1], pa.int32())),
        ("metadata", pa.array([b"{}"], pa.binary())),
    ],
)
def test_datum_columns_of_the_wrong_type_are_refused_not_cast(shared, column, values):
    lake, aid, _ = shared
    rows = pa.table({"assets": pa.array([[("image", aid)]], MAP), column: values})
    err = _refused(lake, lambda: lake.datums.add_many(rows), column)
    assert str(values.type) in str(err)


def test_a_label_with_control_characters_is_refused_in_a_set_without_schema(seeded):
    lake, aid, _ = seeded
    free = lake.annotations.create_set("free").set_id
    rows = _box(aid, label=["\x00car\n"])
    err = _refused(lake, lambda: lake.annotations.add(free, pa.concat_tables([_box(aid), rows])))
    assert err.details["row"] == 1
    assert lake.annotations.add(free, _box(aid, label=["a cat, été"])).num_rows == 1


def test_sql_front_ends_take_a_lone_ref_and_refuse_other_types(seeded):
    lake, aid, _ = seeded
    datums = lake.datums.add_many([{"assets": {"image": aid}}])
    lake.datasets.builder("cams").add(datums["datum_id"]).commit("1")
    con = lake.duckdb("cams@1")  # one ref, not the letters c, a, m, s, ...
    try:
        assert con.execute('SELECT count(*) FROM "cams@1"').fetchall() == [(1,)]
    finally:
        con.close()
    for bad in (5, [5], [None]):
        with pytest.raises(ValidationError) as err:
            lake.duckdb(bad)
        assert err.value.details["field"] == "refs"
    with pytest.raises(ValidationError):
        lake.polars(5)


def test_names_written_before_the_control_character_rule_still_read(lake):
    """Older lakes may hold names with control characters (a label read from a CRLF file):
    they stay readable and usable; only new input is held to the rule."""
    from lakecore.tables import Append, to_arrow
    from schemas import AnnotationSchema, AnnotationSet

    old = AnnotationSchema.model_validate(
        {
            "name": "pets\t",
            "task_type": "detection",
            "labels": [{"name": "cat\r"}],
            "allowed_kinds": ["bbox"],
        }
    )
    aset = AnnotationSet.model_validate(
        {
            "name": "gt\tv1",
            "schema_id": old.schema_id,
            "purpose": "ground_truth",
            "source_kind": "human",
        }
    )
    lake.commit(
        [
            Append("annotation_schemas", to_arrow([old], AnnotationSchema)),
            Append("annotation_sets", to_arrow([aset], AnnotationSet)),
        ]
    )
    assert lake.annotations.get_schema(old.schema_id).label_names() == ["cat\r"]
    assert lake.annotations.get_set(aset.set_id).name == "gt\tv1"
    aid = lake.assets.add(b"img", kind="blob").asset_id
    written = lake.annotations.add(aset.set_id, _box(aid, label=["cat\r"]))
    assert lake.annotations.get(written["annotation_id"][0].as_py()).label == "cat\r"
    with pytest.raises(ValidationError):  # new input: refused
        lake.annotations.create_set("gt\tv2")


def test_strings_in_any_arrow_layout_are_accepted(seeded):
    """polars gives string_view columns, pandas categoricals dictionary ones: both are text."""
    pl = pytest.importorskip("polars")
    lake, aid, _ = seeded
    ids = lake.datums.add_many([{"assets": {"image": aid}}] * 3)["datum_id"].to_pylist()
    view = pa.table(pl.DataFrame({"datum_id": ids}))["datum_id"]
    assert lake.datums.get_many(view)["datum_id"].to_pylist() == ids
    version = (
        lake.datasets.builder("c")
        .add(view)
        .remove(pa.array(ids[:1]).dictionary_encode())
        .commit("1")
    )
    assert sorted(version.to_arrow()["datum_id"].to_pylist()) == sorted(ids[1:])
    rows = pa.table(
        {
            "assets": pa.array([[("image", aid)]], MAP),
            "split": pa.array(["train"]).dictionary_encode(),
        }
    )
    assert lake.datums.add_many(rows)["split"].to_pylist() == ["train"]
    labels = _box(aid, label=pa.array(["cat"]).dictionary_encode())
    free = lake.annotations.create_set("free").set_id
    assert lake.annotations.add(free, labels)["label"].to_pylist() == ["cat"]


def test_numpy_ints_count_and_datum_authors_refuse_control_characters(seeded):
    np = pytest.importorskip("numpy")
    lake, aid, _ = seeded
    _refused(
        lake,
        lambda: lake.datums.add_many([{"assets": {"image": aid}, "created_by": "a\x00b"}]),
        "created_by",
    )
    datums = lake.datums.add_many([{"assets": {"image": aid}, "created_by": "José"}])
    version = lake.datasets.builder("c").add(datums["datum_id"]).commit("1")
    assert version.head(np.int64(1)).num_rows == 1
    assert version.page(limit=np.int32(5)).rows.num_rows == 1
