"""Bad input to ``lake.datasets``, builders and version handles: a ValidationError (or a
NotFoundError) naming the field, and the lake left as it was — local disk and S3."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from lakecore.errors import LakecoreError, NotFoundError, ValidationError


def populate(lake):
    """Three datums (split train) in ``cams@1.0.0``; returns their ids."""
    assets = lake.assets.add_many([b"a", b"b", b"c"], kind="blob")
    rows = [{"assets": {"image": a}, "split": "train"} for a in assets["asset_id"].to_pylist()]
    dat = lake.datums.add_many(rows)["datum_id"].to_pylist()
    lake.datasets.builder("cams").add(dat).commit("1.0.0")
    return dat


def builder(lake, dat):
    return lake.datasets.builder("cams", parent="latest").add(dat[:1])


def refused(lake, call, error=ValidationError, field=None, match=None):
    """``call()`` raises ``error`` (naming ``field``) and leaves every table where it was."""
    pins = lake.snapshot().pins
    with pytest.raises(error, match=match) as err:
        call()
    assert isinstance(err.value, LakecoreError)
    if field is not None:
        assert err.value.details.get("field") == field, err.value
    assert "\n" not in str(err.value) and "http" not in str(err.value)  # short, no pydantic text
    assert lake.snapshot().pins == pins
    return err.value


def split_table(dat, splits, type_=None):
    return pa.table({"datum_id": dat, "split": pa.array(splits, type_)})


ACCEPTS = "a table with a datum_id column"
"""What the error of a wrong ``add`` input says it takes."""

BAD = {
    # 1. pydantic errors become ValidationError naming the field
    "builder-name-space": (lambda lake, dat: lake.datasets.builder("has space"), "dataset_name"),
    "builder-name-int": (lambda lake, dat: lake.datasets.builder(5), "name"),
    "commit-latest": (lambda lake, dat: builder(lake, dat).commit("latest"), "version"),
    "commit-empty": (lambda lake, dat: builder(lake, dat).commit(""), "version"),
    "commit-space": (lambda lake, dat: builder(lake, dat).commit("v 2"), "version"),
    "commit-int": (lambda lake, dat: builder(lake, dat).commit(5), "version"),
    "commit-author-int": (lambda lake, dat: builder(lake, dat).commit("2", author=5), "author"),
    "commit-metadata-nan": (
        lambda lake, dat: builder(lake, dat).commit("2", metadata={"a": float("nan")}),
        "metadata",
    ),
    "commit-metadata-list": (
        lambda lake, dat: builder(lake, dat).commit("2", metadata=[1]),
        "metadata",
    ),
    "commit-tag-space": (lambda lake, dat: builder(lake, dat).commit("2", tags=["a b"]), "tag"),
    "commit-tag-latest": (lambda lake, dat: builder(lake, dat).commit("2", tags="latest"), "tag"),
    "tag-latest": (lambda lake, dat: lake.datasets.tag("cams", "latest", "1.0.0"), "tag"),
    "tag-by-int": (lambda lake, dat: lake.datasets.tag("cams", "prod", "1.0.0", by=5), "by"),
    "untag-int": (lambda lake, dat: lake.datasets.untag("cams", 5), "tag"),
    # 2. a lone value where a list is expected
    "commit-tags-int": (lambda lake, dat: builder(lake, dat).commit("2", tags=5), "tags"),
    "add-int": (lambda lake, dat: lake.datasets.builder("cams").add(5), "datum_ids", ACCEPTS),
    "add-dict": (
        lambda lake, dat: lake.datasets.builder("cams").add({"datum_id": dat}),
        "datum_ids",
        ACCEPTS,
    ),
    "add-frame-without-datum-id": (
        lambda lake, dat: lake.datasets.builder("cams").add(pd.DataFrame({"id": dat})),
        "datum_id",
    ),
    "with-ops-not-ops": (
        lambda lake, dat: builder(lake, dat).commit("2", with_ops=["x"]),
        "with_ops",
    ),
    # 3. per-row splits are checked like datums' splits
    "add-split-bad": (
        lambda lake, dat: builder(lake, dat).add(split_table(dat, ["bad split!"] * 3)).commit("2"),
        "split",
    ),
    "add-split-long": (
        lambda lake, dat: builder(lake, dat).add(split_table(dat, ["a" * 500] * 3)).commit("2"),
        "split",
    ),
    "add-split-int": (
        lambda lake, dat: builder(lake, dat).add(split_table(dat, [5] * 3, pa.int64())).commit("2"),
        "split",
    ),
    "add-frame-split-bad": (
        lambda lake, dat: (
            builder(lake, dat)
            .add(pd.DataFrame({"datum_id": dat, "split": ["ok", "no way", None]}))
            .commit("2")
        ),
        "split",
    ),
    # 4. a tag may not be a version of the dataset
    "commit-tag-is-a-version": (
        lambda lake, dat: builder(lake, dat).commit("2", tags=["1.0.0"]),
        "tag",
    ),
    "commit-tag-is-this-version": (
        lambda lake, dat: builder(lake, dat).commit("2", tags=["prod", "2"]),
        "tag",
    ),
    # 5. ids of the wrong type
    "get-int": (lambda lake, dat: lake.datasets.get(5), "name"),
    "versions-int": (lambda lake, dat: lake.datasets.versions(5), "name"),
    "history-int": (lambda lake, dat: lake.datasets.history(5), "name"),
    "tags-int": (lambda lake, dat: lake.datasets.tags(5), "name"),
    "exists-int": (lambda lake, dat: lake.datasets.exists(5, "latest"), "name"),
    "get-version-int": (lambda lake, dat: lake.datasets.get("cams", 5), "version"),
    "diff-b-int": (lambda lake, dat: lake.datasets.diff("cams@1.0.0", 5), "b"),
    "diff-a-int": (lambda lake, dat: lake.datasets.diff(5, "cams@1.0.0"), "a"),
    "builder-parent-int": (lambda lake, dat: lake.datasets.builder("c", parent=5), "parent"),
    "to-batches-str": (lambda lake, dat: lake.datasets.get("cams").to_batches("a"), "batch_size"),
    "to-batches-zero": (lambda lake, dat: lake.datasets.get("cams").to_batches(0), "batch_size"),
    "to-batches-column": (
        lambda lake, dat: lake.datasets.get("cams").to_batches(columns=["nope"]),
        "columns",
    ),
    "head-str": (lambda lake, dat: lake.datasets.get("cams").head("a"), "n"),
    "head-negative": (lambda lake, dat: lake.datasets.get("cams").head(-1), "n"),
    "page-cursor-int": (lambda lake, dat: lake.datasets.get("cams").page(5), "cursor"),
    "page-limit-str": (lambda lake, dat: lake.datasets.get("cams").page(limit="a"), "limit"),
    "to-arrow-column": (
        lambda lake, dat: lake.datasets.get("cams").to_arrow(columns=["nope"]),
        "columns",
    ),
    "to-arrow-columns-int": (
        lambda lake, dat: lake.datasets.get("cams").to_arrow(columns=5),
        "columns",
    ),
    "annotations-column": (
        lambda lake, dat: lake.datasets.get("cams").annotations(columns=["nope"]),
        "columns",
    ),
    "payloads-role-int": (
        lambda lake, dat: lake.datasets.get("cams").payloads(dat, role=5),
        "role",
    ),
}


@pytest.fixture(scope="module")
def populated(module_where):
    """One populated lake per storage for the refused calls (each leaves it as it was)."""
    lake = module_where.connect()
    return lake, populate(lake)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_refused_naming_the_field(populated, case):
    lake, dat = populated
    call, field, *match = BAD[case]
    refused(lake, lambda: call(lake, dat), ValidationError, field, *match)
    assert lake.datasets.versions("cams")["version"].to_pylist() == ["1.0.0"]
    assert lake.datasets.tags("cams") == {}


def test_well_typed_unknown_names_are_not_found(lake):
    dat = populate(lake)
    refused(lake, lambda: lake.datasets.get("nope"), NotFoundError)
    refused(lake, lambda: lake.datasets.get("cams", "9.9"), NotFoundError)
    refused(lake, lambda: lake.datasets.builder("c", parent="nope@1"), NotFoundError)
    refused(lake, lambda: lake.datasets.get("cams").payloads(dat, role="depth"), NotFoundError)
    assert lake.datasets.exists("nope", "1") is False


def test_lone_strings_are_one_value(lake):
    dat = populate(lake)
    v2 = builder(lake, dat).commit("2", tags="prod")
    assert lake.datasets.tags("cams") == {"prod": "2"}
    assert v2.to_arrow(columns="datum_id").column_names == ["datum_id"]
    assert v2.annotations(columns="label").column_names == ["label"]
    assert v2.head(0).num_rows == 0


def test_add_takes_dataframes_with_a_datum_id_column(lake):
    dat = populate(lake)
    frame = pd.DataFrame({"datum_id": dat, "split": ["val", None, "test"]})
    v2 = lake.datasets.builder("cams").add(frame).commit("2")
    members = dict(zip(*v2.members().to_pydict().values(), strict=True))
    assert members == {dat[0]: "val", dat[1]: "train", dat[2]: "test"}  # None: the datum's own
    v3 = lake.datasets.builder("cams").add(pl.DataFrame({"datum_id": dat[:2]})).commit("3")
    assert sorted(v3.members()["datum_id"].to_pylist()) == sorted(dat[:2])
    cats = pa.table({"datum_id": dat, "split": pa.array(["a", "b", "a"]).dictionary_encode()})
    v4 = lake.datasets.builder("cams").add(cats).commit("4")
    assert sorted(v4.members()["split"].to_pylist()) == ["a", "a", "b"]
