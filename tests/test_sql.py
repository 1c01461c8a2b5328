"""SQL over the whole lake: every view against the Python API, snapshots, dataset versions,
macros, params, the cache, polars, the user connection and the CLI — local disk and S3."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import typer
from _sql_lake import populate, rows_by
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lakecore.errors import QueryError
from lakecore.query import QueryEngine, parse_size
from lakecore.tables import Append, Delete
from lakecore.tables.arrow import layout
from lakecore.tables.spec import entity_specs
from lakecore.tables.write import Reindex
from schemas import AnnotationRecord


@pytest.fixture
def small(lake):
    return populate(lake)


@pytest.fixture
def engine(lake):
    eng = QueryEngine(lake, background=False)
    yield eng
    eng.close()


# -- every view against the Python API ---------------------------------------------------------
def test_every_table_is_a_view_equal_to_the_python_api(lake, small, engine):
    specs = entity_specs()
    snap = lake.snapshot()
    assert sorted(snap.pins) == sorted(specs)
    for name in sorted(snap.pins):
        got = engine.sql(f"SELECT * FROM {name}")
        want = lake.table(name, snapshot=snap)
        assert got.column_names == want.column_names, name
        key = specs[name].key
        assert rows_by(got, key) == rows_by(want, key), name
    assert engine.sql("SELECT count(*) AS n FROM datums")["n"][0].as_py() == 8


def test_types_come_back_as_stored(lake, small, engine):
    recs = engine.sql("SELECT bbox, created_at, attributes FROM annotation_records LIMIT 1")
    assert recs.schema.field("bbox").type == pa.list_(pa.float32(), 4)
    assert recs.schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    datums = engine.sql("SELECT assets FROM datums LIMIT 1")
    assert pa.types.is_map(datums.schema.field("assets").type)


def test_boxes_view_flattens_bbox(lake, small, engine):
    recs = lake.table("annotation_records")
    boxes = recs.filter(pc.equal(recs["kind"], "bbox"))
    got = rows_by(engine.sql("SELECT * FROM boxes"), "annotation_id")
    assert len(got) == boxes.num_rows == 32
    for row in boxes.to_pylist():
        x, y, w, h = row["bbox"]
        g = got[row["annotation_id"]]
        assert (g["x"], g["y"], g["w"], g["h"]) == (
            round(x, 4),
            round(y, 4),
            round(w, 4),
            round(h, 4),
        )
        assert g["area"] == round(w * h, 4)
        for col in ("label", "score", "source_kind", "set_id", "asset_id", "datum_id"):
            assert g[col] == (round(row[col], 4) if isinstance(row[col], float) else row[col])


def test_annotations_view_and_json_attributes(lake, small, engine):
    by_set = engine.sql(
        "SELECT set_name, purpose, count(*) AS n, count(x) AS boxes FROM annotations "
        "GROUP BY ALL ORDER BY set_name"
    ).to_pylist()
    assert by_set == [
        {"set_name": "gt", "purpose": "ground_truth", "n": 17, "boxes": 16},
        {"set_name": "yolo", "purpose": "prediction", "n": 16, "boxes": 16},
    ]
    occluded = engine.sql(
        "SELECT count(*) AS n FROM boxes WHERE (attributes->>'$.occluded')::BOOLEAN"
    )["n"][0].as_py()
    recs = lake.table("annotation_records").to_pylist()
    assert occluded == sum(
        1 for r in recs if r["bbox"] is not None and json.loads(r["attributes"]).get("occluded")
    )
    camera = engine.sql(
        "SELECT json_extract_string(metadata, '$.camera') AS cam, count(*) AS n "
        "FROM datums GROUP BY cam ORDER BY cam"
    ).to_pylist()
    assert camera == [{"cam": "back", "n": 4}, {"cam": "front", "n": 4}]


def test_datum_assets_view_joins_datums_to_assets(lake, small, engine):
    got = engine.sql(
        "SELECT da.datum_id, a.asset_id, a.size_bytes FROM datum_assets da "
        "JOIN assets a USING (asset_id) WHERE da.role = 'image'"
    )
    assert sorted(got["asset_id"].to_pylist()) == sorted(small.assets)
    assert set(got["datum_id"].to_pylist()) == set(small.datums)


def test_macros(engine):
    row = engine.sql(
        "SELECT iou(0, 0, 10, 10, 0, 0, 10, 10) AS same, iou(0, 0, 10, 10, 20, 20, 5, 5) AS apart,"
        " iou(0, 0, 10, 10, 5, 0, 10, 10) AS third, iou(0, 0, 0, 0, 0, 0, 0, 0) AS empty,"
        " iou([0, 0, 10, 10]::FLOAT[4], [5, 0, 10, 10]::FLOAT[4]) AS arrays,"
        " box_area(3, 4) AS area, box_area([1, 1, 3, 4]::FLOAT[4]) AS area2,"
        " box_intersection(0, 0, 10, 10, 5, 5, 10, 10) AS inter"
    ).to_pylist()[0]
    assert row["same"] == 1.0 and row["apart"] == 0.0 and row["empty"] == 0.0
    assert row["third"] == pytest.approx(50 / 150) and row["arrays"] == pytest.approx(50 / 150)
    assert row["area"] == 12 and row["area2"] == 12 and row["inter"] == 25


def test_prediction_vs_ground_truth_iou_join(lake, small, engine):
    matched = engine.sql(
        """
        SELECT g.annotation_id AS gt, p.annotation_id AS pred, iou(g.x, g.y, g.w, g.h,
               p.x, p.y, p.w, p.h) AS iou
        FROM boxes g JOIN boxes p
          ON p.datum_id = g.datum_id AND p.label = g.label AND p.set_id = $pred
        WHERE g.set_id = $gt
        QUALIFY row_number() OVER (PARTITION BY g.annotation_id ORDER BY iou DESC) = 1
        """,
        {"gt": small.gt, "pred": small.pred},
    )
    assert matched.num_rows == 16
    recs = {r["annotation_id"]: r for r in lake.table("annotation_records").to_pylist()}
    for row in matched.to_pylist():
        (gx, gy, gw, gh), (px, py, pw, ph) = recs[row["gt"]]["bbox"], recs[row["pred"]]["bbox"]
        inter = max(0, min(gx + gw, px + pw) - max(gx, px)) * max(
            0, min(gy + gh, py + ph) - max(gy, py)
        )
        assert row["iou"] == pytest.approx(inter / (gw * gh + pw * ph - inter), rel=1e-5)


# -- snapshots -----------------------------------------------------------------------------------
class CountingCore:
    """A lake whose snapshot() calls are counted (and can be frozen)."""

    def __init__(self, lake: Any) -> None:
        self.lake = lake
        self.calls = 0
        self.frozen = None

    def snapshot(self):
        self.calls += 1
        return self.frozen or self.lake.snapshot()


def test_one_snapshot_per_query_and_new_queries_see_new_writes(lake, small):
    core = CountingCore(lake)
    engine = QueryEngine(core, background=False)
    query = (
        "SELECT (SELECT count(*) FROM datums) AS d, (SELECT count(*) FROM annotation_records) AS r,"
        " (SELECT count(*) FROM boxes) AS b, (SELECT count(*) FROM assets) AS a"
    )
    assert engine.sql(query).to_pylist() == [{"d": 8, "r": 33, "b": 32, "a": 8}]
    assert core.calls == 1
    old = lake.snapshot()
    more = populate_more(lake, small)
    assert engine.sql(query).to_pylist() == [{"d": 9, "r": 34, "b": 33, "a": 9}]
    assert core.calls == 2
    core.frozen = old  # a query at an older snapshot reads every table as of that snapshot
    assert engine.sql(query).to_pylist() == [{"d": 8, "r": 33, "b": 32, "a": 8}]
    core.frozen = None
    lake.datums.delete([more])
    assert engine.sql("SELECT count(*) AS n FROM datums")["n"][0].as_py() == 8
    engine.close()


def populate_more(lake: Any, small: Any) -> str:
    aid = lake.assets.add_many([b"one more"], kind="blob")["asset_id"][0].as_py()
    did = lake.datums.add_many([{"assets": {"image": aid}, "split": "test"}])["datum_id"][0].as_py()
    lake.annotations.add(
        small.gt,
        pa.table(
            {"asset_id": [aid], "kind": ["bbox"], "label": ["dog"], "bbox": [[1.0, 2.0, 3.0, 4.0]]}
        ),
    )
    return did


def test_a_streaming_reader_keeps_its_snapshot(lake, small, engine):
    reader = engine.sql_reader("SELECT datum_id FROM datums ORDER BY datum_id", batch_size=2)
    populate_more(lake, small)
    got = reader.read_all()
    assert got.num_rows == 8
    assert engine.sql("SELECT count(*) AS n FROM datums")["n"][0].as_py() == 9


def test_concurrent_queries_in_threads(lake, small):
    engine = QueryEngine(lake, background=False)
    want = engine.sql("SELECT label, count(*) AS n FROM boxes GROUP BY label ORDER BY label")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                got = engine.sql(
                    "SELECT label, count(*) AS n FROM boxes GROUP BY label ORDER BY label"
                )
                assert got.equals(want)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    engine.close()


# -- hypothesis: SQL aggregates equal pyarrow's --------------------------------------------------
@st.composite
def record_batches(draw: Any) -> dict[str, list[Any]]:
    n = draw(st.integers(1, 40))
    return {
        "label": draw(
            st.lists(st.sampled_from(["cat", "dog", "bird", "car"]), min_size=n, max_size=n)
        ),
        "score": draw(
            st.lists(st.one_of(st.none(), st.floats(0, 1, width=32)), min_size=n, max_size=n)
        ),
        "box": draw(
            st.lists(
                st.tuples(*[st.floats(0, 500, width=32)] * 2, *[st.floats(0.5, 100, width=32)] * 2),
                min_size=n,
                max_size=n,
            )
        ),
        "source_kind": draw(st.lists(st.sampled_from(["human", "model"]), min_size=n, max_size=n)),
        "datum": draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)),
    }


def _records(data: dict[str, list[Any]], set_id: str) -> pa.Table:
    n = len(data["label"])
    schema = layout(AnnotationRecord).schema
    cols: dict[str, Any] = {}
    for f in schema:
        cols[f.name] = (
            pa.array([None] * n, f.type) if pa.types.is_struct(f.type) else pa.nulls(n, f.type)
        )
    cols.update(
        annotation_id=pa.array([f"ann_{set_id}_{i}" for i in range(n)]),
        set_id=pa.array([set_id] * n),
        datum_id=pa.array([f"datum_h{d}" for d in data["datum"]]),
        kind=pa.array(["bbox"] * n),
        label=pa.array(data["label"]),
        score=pa.array(data["score"], pa.float32()),
        bbox=pa.array([list(b) for b in data["box"]], pa.list_(pa.float32(), 4)),
        source_kind=pa.array(data["source_kind"]),
        source_name=pa.array(["gen"] * n),
        attributes=pa.array(["{}"] * n),
        metadata=pa.array(["{}"] * n),
        created_at=pa.array(np.zeros(n, "int64"), pa.timestamp("us", tz="UTC")),
    )
    return pa.table(cols, schema=schema)


def _expected(records: pa.Table) -> list[dict[str, Any]]:
    bbox = records["bbox"].combine_chunks()
    flat = bbox.flatten().to_numpy().reshape(-1, 4).astype("float64")
    w, h = flat[:, 2].astype("float32"), flat[:, 3].astype("float32")
    area = pa.array((w * h).astype("float64"))
    table = pa.table(
        {
            "label": records["label"],
            "source_kind": records["source_kind"],
            "score": records["score"],
            "area": area,
        }
    )
    grouped = table.group_by(["label", "source_kind"]).aggregate(
        [("label", "count"), ("score", "mean"), ("area", "sum"), ("score", "count")]
    )
    out = []
    for r in grouped.to_pylist():
        out.append(
            {
                "label": r["label"],
                "source_kind": r["source_kind"],
                "n": r["label_count"],
                "scored": r["score_count"],
                "mean_score": None if r["score_mean"] is None else pytest.approx(r["score_mean"]),
                "area": pytest.approx(r["area_sum"], rel=1e-6),
            }
        )
    return sorted(out, key=lambda r: (r["label"], r["source_kind"]))


_AGG = """
SELECT label, source_kind, count(*) AS n, count(score) AS scored,
       avg(score) AS mean_score, sum(area::DOUBLE) AS area
FROM boxes {where} GROUP BY label, source_kind ORDER BY label, source_kind
"""


@given(data=record_batches())
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_sql_aggregates_equal_pyarrow(lake, engine, data):
    set_id = f"set_{uuid.uuid4().hex[:8]}"
    records = _records(data, set_id)
    lake.commit([Append("annotation_records", records)])
    got = engine.sql(_AGG.format(where="WHERE set_id = $1"), [set_id]).to_pylist()
    assert got == _expected(records)
    everything = lake.table("annotation_records")
    assert engine.sql(_AGG.format(where="")).to_pylist() == _expected(everything)


# -- dataset versions ----------------------------------------------------------------------------
def test_dataset_version_views_are_frozen(lake, small, engine):
    v1 = lake.datasets.builder("shapes").add(small.datums[:5]).commit("1.0.0", tags=["prod"])
    datums_v1 = engine.sql('SELECT * FROM "shapes@1.0.0"')
    assert rows_by(datums_v1, "datum_id") == rows_by(v1.to_arrow(), "datum_id")
    ann_v1 = engine.sql('SELECT * FROM "shapes@1.0.0/annotations"')
    assert rows_by(ann_v1, "annotation_id") == rows_by(v1.annotations(), "annotation_id")
    # later writes: a new record on a member datum, a member's split changed, a new version
    lake.annotations.add(
        small.gt,
        pa.table(
            {
                "datum_id": [small.datums[0]],
                "asset_id": [small.assets[0]],
                "kind": ["bbox"],
                "label": ["dog"],
                "bbox": [[1.0, 1.0, 1.0, 1.0]],
            }
        ),
    )
    from lakecore.tables import Upsert

    datums = lake.table("datums")
    lake.commit([Upsert("datums", datums.set_column(2, "split", pa.array(["test"] * 8)))])
    lake.datasets.builder("shapes", parent="latest").add(small.datums[5:]).remove(
        small.datums[:1]
    ).commit("1.1.0")
    assert rows_by(engine.sql('SELECT * FROM "shapes@1.0.0"'), "datum_id") == rows_by(
        datums_v1, "datum_id"
    )
    assert rows_by(engine.sql('SELECT * FROM "shapes@prod/annotations"'), "annotation_id") == (
        rows_by(ann_v1, "annotation_id")
    )
    v2 = lake.datasets.get("shapes", "1.1.0")
    assert rows_by(engine.sql('SELECT * FROM "shapes@latest"'), "datum_id") == rows_by(
        v2.to_arrow(), "datum_id"
    )
    # boxes of a version, members, assets
    boxes = engine.sql('SELECT count(*) AS n FROM "shapes@1.0.0/boxes"')["n"][0].as_py()
    assert boxes == sum(1 for r in v1.annotations().to_pylist() if r["bbox"] is not None)
    members = engine.sql('SELECT * FROM "shapes@1.1.0/members"')
    assert rows_by(members, "datum_id") == rows_by(v2.members(), "datum_id")
    assets = engine.sql('SELECT asset_id FROM "shapes@1.0.0/assets"')["asset_id"].to_pylist()
    assert sorted(assets) == sorted(v1.assets()["asset_id"].to_pylist())


def test_joins_across_versions(lake, small, engine):
    lake.datasets.builder("shapes").add(small.datums[:5]).commit("1.0.0", tags=["prod"])
    lake.datasets.builder("shapes", parent="prod").add(small.datums[5:]).remove(
        small.datums[:2]
    ).commit("2.0.0", tags=["candidate"])
    diff = lake.datasets.diff("shapes@prod", "shapes@candidate")
    added = engine.sql(
        'SELECT datum_id FROM "shapes@candidate" ANTI JOIN "shapes@prod" USING (datum_id)'
    )["datum_id"].to_pylist()
    removed = engine.sql(
        'SELECT datum_id FROM "shapes@prod" ANTI JOIN "shapes@candidate" USING (datum_id)'
    )["datum_id"].to_pylist()
    assert sorted(added) == sorted(diff.added) and sorted(removed) == sorted(diff.removed)
    per_label = engine.sql(
        """
        SELECT label, count(*) FILTER (WHERE v = 'prod') AS prod,
               count(*) FILTER (WHERE v = 'candidate') AS candidate
        FROM (SELECT label, 'prod' AS v FROM "shapes@prod/annotations"
              UNION ALL SELECT label, 'candidate' FROM "shapes@candidate/annotations")
        GROUP BY label ORDER BY label
        """
    ).to_pylist()
    labels = diff.summary()["labels"]
    for row in per_label:
        assert (row["prod"], row["candidate"]) == (
            labels[row["label"]]["a"],
            labels[row["label"]]["b"],
        )


def test_unknown_dataset_versions_are_query_errors(lake, small, engine):
    lake.datasets.builder("shapes").add(small.datums[:2]).commit("1.0.0")
    for text, needle in (('"shapes@9.9"', "9.9"), ('"nope@1"', "nope")):
        with pytest.raises(QueryError) as err:
            engine.sql(f"SELECT * FROM {text}")
        assert needle in str(err.value) and err.value.details["sql"] == f"SELECT * FROM {text}"


# -- params, errors, readers ---------------------------------------------------------------------
def test_params_are_bound_never_interpolated(lake, small, engine):
    did = small.datums[3]
    assert engine.sql("SELECT datum_id FROM datums WHERE datum_id = ?", [did]).num_rows == 1
    assert engine.sql("SELECT datum_id FROM datums WHERE datum_id = $1", [did]).num_rows == 1
    assert engine.sql("SELECT datum_id FROM datums WHERE datum_id = $id", {"id": did}).num_rows == 1
    sneaky = "x' OR '1'='1"
    assert engine.sql("SELECT * FROM datums WHERE datum_id = ?", [sneaky]).num_rows == 0
    assert engine.sql("SELECT ? AS v", ["'; DROP TABLE datums; --"])["v"][0].as_py() == (
        "'; DROP TABLE datums; --"
    )
    with pytest.raises(QueryError):
        engine.sql("SELECT * FROM datums WHERE datum_id = ?")  # value missing
    assert engine.sql("SELECT count(*) AS n FROM datums")["n"][0].as_py() == 8


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("SELEC 1", "syntax"),
        ("SELECT * FROM no_such_table", "no_such_table"),
        ("SELECT no_such_column FROM datums", "no_such_column"),
        ("SELECT 1 +", "syntax"),
    ],
)
def test_bad_sql_is_a_query_error_with_the_sql(lake, engine, query, needle):
    with pytest.raises(QueryError) as err:
        engine.sql(query)
    assert err.value.details["sql"] == query
    assert needle in str(err.value).lower()


def test_sql_reader_streams_batches(lake, small, engine):
    reader = engine.sql_reader(
        "SELECT * FROM annotation_records ORDER BY annotation_id", batch_size=5
    )
    assert isinstance(reader, pa.RecordBatchReader)
    batches = list(reader)
    assert sum(b.num_rows for b in batches) == 33 and len(batches) > 1
    with pytest.raises(QueryError):
        engine.sql_reader("SELECT * FROM nowhere")


# -- the cache -----------------------------------------------------------------------------------
def test_cache_reuses_versions_and_drops_superseded_ones(lake, small):
    engine = QueryEngine(lake, background=False)
    engine.sql("SELECT count(*) FROM datums")
    keys = [e["key"] for e in engine.cache.info()["entries"]]
    assert [k[1] for k in keys] == ["datums"]
    # a commit that only rebuilds indices keeps the content: the cached table is reused
    lake.commit([Reindex("datums")])
    engine.sql("SELECT count(*) FROM datums")
    assert [e["key"] for e in engine.cache.info()["entries"]] == keys
    populate_more(lake, small)
    assert engine.sql("SELECT count(*) AS n FROM datums")["n"][0].as_py() == 9
    entries = [e["key"] for e in engine.cache.info()["entries"] if e["key"][1] == "datums"]
    assert len(entries) == 1 and entries != keys  # the old version was dropped
    engine.close()


def test_appends_extend_the_cached_table_deletes_rebuild_it(lake, small):
    engine = QueryEngine(lake, background=False)
    query = "SELECT label, count(*) AS n FROM annotation_records GROUP BY label ORDER BY label"

    def cached() -> list[tuple[Any, str]]:
        return [
            (e["key"], e["table"])
            for e in engine.cache.info()["entries"]
            if e["key"][1] == "annotation_records"
        ]

    def expected() -> list[dict[str, Any]]:
        labels = lake.table("annotation_records")["label"].to_pylist()
        return [{"label": k, "n": labels.count(k)} for k in sorted(set(labels))]

    assert engine.sql(query).to_pylist() == expected()
    [(first_key, table)] = cached()
    populate_more(lake, small)  # appends one record: the cached table is extended in place
    assert engine.sql(query).to_pylist() == expected()
    [(key, same_table)] = cached()
    assert key != first_key and same_table == table
    assert engine.sql("SELECT count(*) AS n FROM annotation_records")["n"][0].as_py() == 34
    lake.annotations.delete(
        lake.table("annotation_records", filter="label = 'dog'")["annotation_id"].to_pylist()
    )
    assert engine.sql(query).to_pylist() == expected()  # deletions: rebuilt
    [(_, rebuilt)] = cached()
    assert rebuilt != table
    engine.close()


def test_kept_cursors_read_each_query_s_own_versions(lake, small):
    """Cached lake tables are found through a cursor's search path, not a view over them, and
    cursors are kept for the next queries: each query must still read its own snapshot's
    versions (after appends, listings and direct scans through the same cursors, and a rebuild),
    and a dropped version leaves nothing behind."""
    engine = QueryEngine(lake, background=False)
    queries = {
        "records": "SELECT count(*) AS n FROM annotation_records",
        "boxes": "SELECT count(*) AS n FROM boxes",
        "joined": "SELECT count(*) AS n FROM annotation_records JOIN datums USING (datum_id)",
    }

    def check() -> None:
        records = lake.table("annotation_records")
        datums = set(lake.table("datums")["datum_id"].to_pylist())
        truth = {
            "records": records.num_rows,
            "boxes": pc.sum(pc.is_valid(records["bbox"])).as_py(),
            "joined": sum(d in datums for d in records["datum_id"].to_pylist()),
        }
        for _ in range(2):  # the second time through kept cursors
            got = {k: engine.sql(q)["n"][0].as_py() for k, q in queries.items()}
            assert got == truth

    check()
    populate_more(lake, small)  # appends: the cached tables are extended in place
    check()
    assert "annotation_records" in set(engine.sql("SHOW TABLES")["name"].to_pylist())
    for _ in range(2):  # scans Lance directly; the second time through a kept cursor
        engine.sql("DESCRIBE annotation_records")
    check()
    before = lake.table("annotation_records").num_rows
    held = engine.sql_reader("SELECT * FROM annotation_records")  # keeps its version alive
    lake.annotations.delete(
        lake.table("annotation_records", filter="label = 'dog'")["annotation_id"].to_pylist()
    )
    check()  # deletions: rebuilt in a new schema, while the old one is still in use
    assert held.read_all().num_rows == before
    cursor = engine._database().cursor()

    def schemas() -> set[str]:
        rows = cursor.execute(
            "SELECT schema_name FROM duckdb_schemas() WHERE database_name = 'lc_cache' "
            "AND schema_name <> 'main'"
        ).fetchall()
        return {f'lc_cache."{s}"' for (s,) in rows}

    memory = [e["table"] for e in engine.cache.info()["entries"] if e["source"] == "memory"]
    assert any(t.endswith('."annotation_records"') for t in memory)
    assert {t.rsplit(".", 1)[0] for t in memory} <= schemas()
    del held  # its stream kept a transaction open
    engine.cache.clear()  # every idle version is dropped, and its schema with it
    assert schemas() == set()
    engine.close()


def test_an_open_result_stream_does_not_hold_up_background_builds(lake, small):
    """A result stream keeps its DuckDB transaction open, so the cache cannot compress
    meanwhile: background builds still land at once (compressed later), and the compression
    runs once the stream is done."""
    import time

    engine = QueryEngine(lake, background=True, sync_rows=0)
    engine.sql("SELECT count(*) FROM datums")
    engine.cache.wait()
    held = engine.sql_reader("SELECT * FROM datums")  # open until read to the end or dropped
    started = time.monotonic()
    for table in ("annotation_records", "assets"):  # two builds, one after the other
        engine.sql(f"SELECT count(*) FROM {table}")
        while not any(e["key"][1] == table for e in engine.cache.info()["entries"]):
            assert time.monotonic() - started < 20, f"{table} was not cached within 20 s"
            time.sleep(0.02)
    assert engine.cache._uncompressed  # nothing could compress yet
    assert held.read_all().num_rows == lake.table("datums").num_rows
    del held
    engine.cache.wait(timeout=60)
    assert not engine.cache._uncompressed  # compressed once the stream was done
    engine.close()


def test_a_kept_cursor_moves_from_a_direct_scan_to_the_cached_table(lake, small):
    """A first query scans Lance (the table is cached in the background); the same query
    afterwards, on the same kept cursor, reads the cached table, with the same rows."""
    engine = QueryEngine(lake, background=True, sync_rows=0)
    query = "SELECT label, count(*) AS n FROM annotation_records GROUP BY label ORDER BY label"
    first = engine.sql(query)
    assert not engine.cache.info()["entries"]
    engine.cache.wait()
    assert [e["key"][1] for e in engine.cache.info()["entries"]] == ["annotation_records"]
    assert engine.sql(query).equals(first)
    boxes = pc.sum(pc.is_valid(lake.table("annotation_records")["bbox"])).as_py()
    assert engine.sql("SELECT count(*) AS n FROM boxes")["n"][0].as_py() == boxes
    engine.close()


def test_without_cache_and_when_too_big_tables_are_scanned_directly(lake, small):
    for budget in (0, "1KB"):
        engine = QueryEngine(lake, memory_budget=budget, background=False, disk_cache=False)
        got = engine.sql("SELECT label, count(*) AS n FROM boxes GROUP BY label ORDER BY label")
        cached = QueryEngine(lake, background=False)
        assert got.equals(
            cached.sql("SELECT label, count(*) AS n FROM boxes GROUP BY label ORDER BY label")
        )
        # filters on fixed-size-list and struct columns (Lance cannot take them) still work
        assert (
            engine.sql("SELECT count(*) AS n FROM annotation_records WHERE bbox IS NOT NULL")["n"][
                0
            ].as_py()
            == 32
        )
        assert (
            engine.sql("SELECT count(*) AS n FROM assets WHERE storage.mount = 'lake'")["n"][
                0
            ].as_py()
            == 8
        )
        assert engine.sql("SELECT count(*) AS n FROM boxes WHERE bbox IS NULL")["n"][0].as_py() == 0
        info = engine.cache.info()
        assert info["bytes"] == 0 and not info["entries"]
        engine.close()
        cached.close()


def test_background_builds_then_native_tables(lake, small):
    engine = QueryEngine(lake, sync_rows=0)  # every table is built in the background
    first = engine.sql("SELECT count(*) AS n FROM annotation_records")  # scans Lance
    assert first["n"][0].as_py() == 33
    engine.cache.wait()
    assert [e["key"][1] for e in engine.cache.info()["entries"]] == ["annotation_records"]
    assert engine.sql("SELECT count(*) AS n FROM annotation_records").equals(first)
    explain = engine.sql("EXPLAIN SELECT label FROM annotation_records WHERE score > 0.5")
    plan = " ".join(explain["explain_value"].to_pylist())
    assert "Seq Scan" in plan and "Arrow" not in plan and "lc_cache" in plan  # native table
    engine.close()


def test_warm_and_clear(lake, small):
    engine = QueryEngine(lake, sync_rows=0)
    engine.warm(["datums", "assets"])
    assert sorted(e["key"][1] for e in engine.cache.info()["entries"]) == ["assets", "datums"]
    engine.cache.clear()
    assert engine.cache.info()["entries"] == []
    engine.close()


def test_parse_size():
    assert parse_size("4GiB") == 4 << 30 and parse_size("512MB") == 512 * 10**6
    assert parse_size(123) == 123 and parse_size("0") == 0
    with pytest.raises(ValueError):
        parse_size("lots")


def test_point_lookup_after_a_delete(lake, small, engine):
    did = small.datums[2]
    assert engine.sql("SELECT * FROM datums WHERE datum_id = ?", [did]).num_rows == 1
    lake.commit([Delete("annotation_records", f"datum_id = '{did}'")])
    lake.datums.delete([did])
    assert engine.sql("SELECT * FROM datums WHERE datum_id = ?", [did]).num_rows == 0


# -- other front ends ----------------------------------------------------------------------------
def test_polars(lake, small, engine):
    import polars as pl

    lf = engine.polars("annotation_records")
    assert isinstance(lf, pl.LazyFrame)
    cats = lf.filter(pl.col("label") == "cat").select("annotation_id").collect()
    want = lake.table("annotation_records", filter="label = 'cat'")
    assert sorted(cats["annotation_id"].to_list()) == sorted(want["annotation_id"].to_pylist())
    boxes = engine.polars("boxes").group_by("label").agg(pl.len()).collect()
    assert boxes["len"].sum() == 32
    lake.datasets.builder("shapes").add(small.datums[:3]).commit("1")
    assert engine.polars("shapes@1").collect().height == 3


def test_user_duckdb_connection(lake, small, engine, tmp_path):
    lake.datasets.builder("shapes").add(small.datums[:3]).commit("1")
    con = engine.duckdb(refs=["shapes@1", "shapes@1/boxes"])
    assert con.sql("SELECT count(*) FROM datums").fetchall() == [(8,)]
    assert con.sql("SELECT count(*) FROM boxes WHERE bbox IS NOT NULL").fetchall() == [(32,)]
    assert con.sql('SELECT count(*) FROM "shapes@1"').fetchall() == [(3,)]
    assert con.sql('SELECT count(*) FROM "shapes@1/boxes"').fetchall()[0][0] > 0
    assert con.sql("SELECT iou(0, 0, 2, 2, 0, 0, 2, 2)").fetchall() == [(1.0,)]
    out = tmp_path / "boxes.parquet"  # the connection is the user's: files are allowed
    con.execute(f"COPY (SELECT label, area FROM boxes) TO '{out}' (FORMAT parquet)")
    assert pq.read_table(out).num_rows == 32
    con.close()


def test_lake_is_wired(lake, small):
    assert lake.sql("SELECT count(*) AS n FROM datums")["n"][0].as_py() == 8
    assert lake.sql_reader("SELECT 1 AS one").read_all()["one"][0].as_py() == 1
    assert lake.duckdb().sql("SELECT count(*) FROM assets").fetchall() == [(8,)]
    assert lake.polars("datums").collect().height == 8


# -- the command line ----------------------------------------------------------------------------
def _cli() -> typer.Typer:
    from lakecore.cli.main import app

    return app


def _args(where: Any) -> list[str]:
    """The options of ``lakecore sql`` (the query goes first, before them)."""
    args = ["--lake", where.uri]
    for k, v in (where.options or {}).items():
        args += ["--option", f"{k}={v}"]
    return args


def test_cli_formats(where, lake, small, tmp_path):
    runner = CliRunner()
    q = "SELECT label, count(*) AS n FROM boxes GROUP BY label ORDER BY label"
    res = runner.invoke(_cli(), ["sql", q, *_args(where)])
    assert res.exit_code == 0, res.output
    assert "person" in res.output and "20" in res.output
    res = runner.invoke(_cli(), ["sql", q, *_args(where), "--format", "csv"])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0] == '"label","n"' and '"person",20' in res.output
    res = runner.invoke(_cli(), ["sql", q, *_args(where), "--format", "json"])
    assert json.loads(res.output)[3] == {"label": "person", "n": 20}
    out = tmp_path / "boxes.parquet"
    res = runner.invoke(
        _cli(),
        ["sql", "SELECT * FROM boxes", *_args(where), "--format", "parquet", "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    assert pq.read_table(out).num_rows == 32
    csv_out = tmp_path / "datums.csv"  # nested columns (map) become JSON text in CSV
    res = runner.invoke(
        _cli(),
        ["sql", "SELECT * FROM datums", *_args(where), "--format", "csv", "--out", str(csv_out)],
    )
    assert res.exit_code == 0, res.output
    assert '"image"' in csv_out.read_text()
    res = runner.invoke(
        _cli(),
        [
            "sql",
            "SELECT * FROM datums WHERE split = ?",
            *_args(where),
            "--param",
            "val",
            "-f",
            "json",
        ],
    )
    assert len(json.loads(res.output)) == 3


def test_cli_errors_and_shell(where, lake, small):
    runner = CliRunner()
    res = runner.invoke(_cli(), ["sql", "DROP TABLE datums", *_args(where)])
    assert res.exit_code == 1 and "read-only" in res.output  # one line, no traceback
    assert "Traceback" not in res.output
    shell_input = ".tables\nSELECT count(*) AS n\n  FROM datums;\nSELEC broken;\n.quit\n"
    res = runner.invoke(_cli(), ["sql", *_args(where)], input=shell_input)
    assert res.exit_code == 0, res.output
    assert "annotation_records" in res.output and "8" in res.output
    assert "error" in res.output.lower()
