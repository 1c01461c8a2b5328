"""Training dataloaders: order, exactly-once sharding, resume, decoding, bytes, filters, HF."""

from __future__ import annotations

import io
import pickle
import random
import subprocess
import sys
import types
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import SHARED_DATA
from PIL import Image

torch = pytest.importorskip("torch")

import lakecore  # noqa: E402
from lakecore import demo  # noqa: E402
from lakecore.errors import ConfigError, NotInstalledError  # noqa: E402
from lakecore.loaders import _torch as loader_module  # noqa: E402
from lakecore.loaders import global_order, to_hf, to_torch  # noqa: E402
from lakecore.loaders._rle import decode_rle, decode_rle_numpy, rle_counts  # noqa: E402
from lakecore.loaders._torch import LakeDataLoader  # noqa: E402

N = 11  # uneven on purpose


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A local lake with the demo dataset (exact boxes, polygons, masks) of N datums."""
    lake = lakecore.connect(tmp_path_factory.mktemp("loaders") / "lake")
    demo.build(lake, N)
    return lake.datasets.get("shapes", "1.0.0")


def _ids(batches):
    out = []
    for b in batches:
        out.extend(b["datum_id"] if isinstance(b["datum_id"], list) else [b["datum_id"]])
    return out


def _round_robin(per_worker):
    """What a DataLoader with in_order=True returns: one item per worker in turn."""
    its = [iter(w) for w in per_worker]
    out, active = [], list(range(len(its)))
    while active:
        for w in list(active):
            try:
                out.append(next(its[w]))
            except StopIteration:
                active.remove(w)
    return out


def _as_worker(monkeypatch, worker, workers):
    info = types.SimpleNamespace(id=worker, num_workers=workers)
    monkeypatch.setattr(loader_module, "get_worker_info", lambda: info)


# -- order -----------------------------------------------------------------------------------
def test_order_is_a_pure_function_of_seed_and_epoch():
    a = global_order(1000, seed=7, epoch=3, shuffle=True)
    assert sorted(a.tolist()) == list(range(1000))
    assert a.tolist() == global_order(1000, seed=7, epoch=3, shuffle=True).tolist()
    assert a.tolist() != global_order(1000, seed=7, epoch=4, shuffle=True).tolist()
    assert a.tolist() != global_order(1000, seed=8, epoch=3, shuffle=True).tolist()
    assert global_order(5, seed=7, epoch=3, shuffle=False).tolist() == [0, 1, 2, 3, 4]
    # pinned: Philox4x64 keyed (seed, epoch) is the documented definition; this must never move
    assert global_order(8, seed=0, epoch=0, shuffle=True).tolist() == _philox_reference(8, 0, 0)


def _philox_reference(n, seed, epoch):
    keys = np.random.Philox(key=np.array([seed, epoch], dtype=np.uint64)).random_raw(n)
    return sorted(range(n), key=lambda i: (int(keys[i]), i))


def test_version_order_is_by_datum_id_then_seeded(shapes):
    ds = to_torch(shapes, decode=False, annotations=False, shuffle=False)
    assert ds.order() == sorted(shapes.members()["datum_id"].to_pylist())
    shuffled = to_torch(shapes, decode=False, annotations=False, seed=5)
    ids = sorted(ds.order())
    assert shuffled.order(2) == [ids[i] for i in global_order(N, seed=5, epoch=2, shuffle=True)]
    assert _ids(shuffled) == shuffled.order(0)
    shuffled.set_epoch(1)
    assert _ids(shuffled) == shuffled.order(1) != shuffled.order(0)


# -- sharding --------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [None, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_exactly_once_across_workers_and_ranks(shapes, monkeypatch, batch_size, drop_last):
    """Every (workers, ranks) pair: disjoint and complete, and what a DataLoader returns is the
    rank's order whatever the worker count (workers emulated in-process; spawn is tested below)."""
    for world in (1, 2, 3):
        seen = []
        counts = set()
        for rank in range(world):
            ds = to_torch(
                shapes,
                decode=False,
                annotations=False,
                seed=11,
                rank=rank,
                world_size=world,
                drop_last=drop_last,
                batch_size=batch_size,
            )
            expected = ds.order()
            for workers in (1, 2, 3, 4):
                per_worker = []
                for w in range(workers):
                    _as_worker(monkeypatch, w, workers)
                    per_worker.append(list(ds))
                got = _ids(_round_robin(per_worker))
                assert got == expected, (world, rank, workers)
            if batch_size is None:  # samples batched by the DataLoader: whole batches per worker
                ds._chunk = 3
                per_worker = []
                for w in range(3):
                    _as_worker(monkeypatch, w, 3)
                    items = list(ds)
                    per_worker.append([items[i : i + 3] for i in range(0, len(items), 3)])
                flat = [s for b in _round_robin(per_worker) for s in b]
                assert [s["datum_id"] for s in flat] == ds.order()
                ds._chunk = 1
            monkeypatch.setattr(loader_module, "get_worker_info", lambda: None)
            seen.extend(expected)
            counts.add(len(expected))
        assert len(seen) == len(set(seen))
        if drop_last:
            assert len(counts) == 1  # every rank the same count
            per = N // world - (N // world) % (batch_size or 1)
            assert counts == {per}
        else:
            assert sorted(seen) == sorted(shapes.members()["datum_id"].to_pylist())


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize(("workers", "world", "drop_last"), [(2, 3, False), (4, 1, True)])
def test_spawned_workers_exactly_once(shapes, workers, world, drop_last):
    seen = []
    for rank in range(world):
        ds = to_torch(
            shapes,
            decode=False,
            annotations=False,
            batch_size=2,
            seed=3,
            rank=rank,
            world_size=world,
            drop_last=drop_last,
        )
        got = _ids(ds.loader(num_workers=workers, persistent_workers=False))
        assert got == ds.order()  # the same order as in-process, whatever the worker count
        seen.extend(got)
    assert len(seen) == len(set(seen))
    if not drop_last:
        assert len(seen) == N
    else:
        assert len(seen) == N // 2 * 2


def test_fork_is_refused_clearly(shapes):
    ds = to_torch(shapes, decode=False, annotations=False, batch_size=4)
    with pytest.raises(ConfigError, match="spawn"):
        LakeDataLoader(ds, num_workers=1, multiprocessing_context="fork")
    # what a forked DataLoader worker does first: iterate its copy of the dataset
    import multiprocessing as mp
    import os

    def child(conn):
        try:
            next(iter(ds))
            conn.send("no error")
        except Exception as exc:
            conn.send(f"{type(exc).__name__}: {exc}")
        finally:
            os._exit(0)  # a forked child of a Lance process must not run its exit handlers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lance and Python warn about fork themselves
        ctx = mp.get_context("fork")
        parent, conn = ctx.Pipe()
        proc = ctx.Process(target=child, args=(conn,))
        proc.start()
        message = parent.recv()
        proc.join()
    assert message.startswith("ConfigError") and "spawn" in message


def test_datasets_pickle_and_reopen(shapes):
    ds = to_torch(shapes, roles=("image", "mask"), decode=False, batch_size=4, seed=2)
    ds.set_epoch(3)
    copy = pickle.loads(pickle.dumps(ds))
    assert _ids(copy) == _ids(ds) == ds.order(3)
    first = next(iter(copy))
    assert first["image"][0] == shapes.payloads([first["datum_id"][0]])[0]


# -- resume ----------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [None, 2])
def test_resume_continues_with_exactly_the_rest(shapes, batch_size):
    def make():
        return to_torch(shapes, decode=False, annotations=False, batch_size=batch_size, seed=9)

    full = make()
    full.set_epoch(4)
    everything = _ids(full)
    for k in (0, 1, 3):
        ds = make()
        ds.set_epoch(4)
        it = iter(ds)
        head = [next(it) for _ in range(k)]
        state = ds.state_dict()
        del it
        assert state["epoch"] == 4 and state["consumed"] == len(_ids(head))
        fresh = make()
        fresh.load_state_dict(state)
        fresh.set_epoch(4)  # same epoch: the resume point is kept
        assert _ids(head) + _ids(fresh) == everything
        assert fresh.state_dict()["epoch"] == 5 and fresh.state_dict()["consumed"] == 0
    with pytest.raises(ConfigError, match="seed"):
        to_torch(shapes, decode=False, annotations=False, seed=1).load_state_dict(state)


def test_resume_with_spawned_workers_and_map_style(shapes):
    ds = to_torch(shapes, decode=False, annotations=False, batch_size=2, seed=4)
    loader = ds.loader(num_workers=2)
    it = iter(loader)
    head = [next(it) for _ in range(2)]
    state = loader.state_dict()
    del it
    assert state["consumed"] == 4
    again = to_torch(shapes, decode=False, annotations=False, batch_size=2, seed=4)
    rest_loader = again.loader(num_workers=2, persistent_workers=True)
    rest_loader.load_state_dict(state)
    assert _ids(head) + _ids(rest_loader) == ds.order(0)
    rest_loader.set_epoch(1)  # reaches the persistent workers (shared memory)
    assert _ids(rest_loader) == ds.order(1)

    mapped = to_torch(shapes, decode=False, annotations=False, map_style=True)
    assert len(mapped) == N and mapped.datum_ids == sorted(mapped.datum_ids)
    ml = mapped.loader(batch_size=3, sampler=mapped.sampler(seed=4))
    assert _ids(ml) == ds.order(0)  # the same order as the iterable dataset
    it = iter(ml)
    head = next(it)
    state = ml.state_dict()
    del it
    ml2 = mapped.loader(batch_size=3, sampler=mapped.sampler(seed=4))
    ml2.load_state_dict(state)
    assert _ids([head]) + _ids(ml2) == ds.order(0)
    pair = mapped.__getitems__([0, 3])
    assert [s["datum_id"] for s in pair] == [mapped.datum_ids[0], mapped.datum_ids[3]]
    assert mapped[-1]["datum_id"] == mapped.datum_ids[-1]


# -- decoding --------------------------------------------------------------------------------
def test_boxes_polygons_masks_match_the_demo_ground_truth(shapes):
    rng = random.Random(0)  # demo.build(lake, n, seed=0) draws the samples in this order
    truth = [demo.draw_sample(rng) for _ in range(N)]
    by_png = {png: (mask, drawn) for png, mask, drawn in truth}
    ds = to_torch(
        shapes, roles=("image", "mask"), decode={"image": False, "mask": False}, shuffle=False
    )
    assert ds.classes == demo.LABELS
    seen = 0
    for sample in ds:
        mask_png, drawn = by_png[sample["image"]]
        assert sample["mask"] == mask_png
        ann = sample["annotations"]
        labels = [demo.LABELS.index(s["label"]) for s in drawn]
        assert ann["boxes"].dtype == torch.float32 and ann["boxes"].shape == (len(drawn), 4)
        assert ann["boxes"].flatten().tolist() == pytest.approx(
            [v for s in drawn for v in s["bbox"]]
        )
        assert ann["labels"].tolist() == labels
        assert torch.isnan(ann["scores"]).all()
        assert len(ann["polygons"]) == len(drawn)
        for parts, s in zip(ann["polygons"], drawn, strict=True):
            assert len(parts) == 1 and parts[0].shape[1] == 2
            assert parts[0].flatten().tolist() == pytest.approx(s["polygon"], abs=1e-4)
        assert ann["polygon_labels"].tolist() == labels
        instance_map = np.asarray(Image.open(io.BytesIO(mask_png)))
        expected = np.stack([(instance_map == s["instance"]) for s in drawn]).astype(np.uint8)
        assert ann["masks"].dtype == torch.uint8
        assert np.array_equal(ann["masks"].numpy(), expected)
        assert ann["mask_labels"].tolist() == labels
        seen += 1
    assert seen == N
    batch = next(iter(to_torch(shapes, decode="tensor", batch_size=4, roles="image")))
    assert batch["image"].shape == (4, 3, demo.SIZE, demo.SIZE)
    assert batch["image"].dtype == torch.uint8
    assert len(batch["annotations"]) == 4 and batch["annotations"][0]["boxes"].shape[1] == 4
    pil = next(iter(to_torch(shapes, decode=True)))["image"]
    assert pil.size == (demo.SIZE, demo.SIZE)


def _random_masks(rng, n):
    masks = []
    for t in range(n):
        h, w = rng.integers(1, 60, 2)
        if t % 3 == 0:
            m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        elif t % 3 == 1:
            m = np.zeros((h, w), np.uint8)
            m[rng.integers(0, h) :, rng.integers(0, w) :] = 1
        else:
            m = np.full((h, w), t % 2, np.uint8)
        masks.append(m)
    return masks


def test_rle_decoder():
    # a hand-made 2x3 mask: column-major runs 1 zero, 2 ones, 3 zeros -> counts "123"
    assert rle_counts("123").tolist() == [1, 2, 3]
    assert decode_rle_numpy(2, 3, "123").tolist() == [[0, 1, 0], [1, 0, 0]]
    with pytest.raises(ValueError, match="pixels"):
        decode_rle_numpy(2, 2, "123")
    coco = pytest.importorskip("pycocotools.mask", reason="pycocotools not installed")
    rng = np.random.default_rng(0)
    for m in _random_masks(rng, 150):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            counts = coco.encode(np.asfortranarray(m))["counts"].decode()
        assert np.array_equal(decode_rle_numpy(*m.shape, counts), m)
        assert np.array_equal(decode_rle(*m.shape, counts), m)


def test_rle_masks_and_classification_in_the_loader(tmp_path):
    coco = pytest.importorskip("pycocotools.mask", reason="pycocotools not installed")
    lake = lakecore.connect(tmp_path / "lake")
    rng = np.random.default_rng(1)
    masks = _random_masks(rng, 6)
    assets = lake.assets.add_many([f"img{i}".encode() for i in range(6)], kind="image")
    datums = lake.datums.add_many(
        [{"assets": {"image": a}} for a in assets["asset_id"].to_pylist()]
    )
    schema = lake.annotations.create_schema(
        "m",
        task_type="instance_segmentation",
        labels=["a", "b"],
        allowed_kinds=["mask", "classification"],
    )
    gt = lake.annotations.create_set("gt", schema_id=schema.schema_id)
    rles = []
    for m in masks:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            rles.append(
                {
                    "height": m.shape[0],
                    "width": m.shape[1],
                    "counts": coco.encode(np.asfortranarray(m))["counts"].decode(),
                }
            )
    ids = datums["datum_id"].to_pylist()
    lake.annotations.add(
        gt.set_id,
        pa.table(
            {
                "datum_id": ids + ids,
                "kind": ["mask"] * 6 + ["classification"] * 6,
                "label": ["a", "b"] * 3 + ["b", "a"] * 3,
                "mask_rle": rles + [None] * 6,
            }
        ),
    )
    version = lake.datasets.builder("rle").add(datums["datum_id"]).commit("1")
    by_id = dict(zip(ids, masks, strict=True))
    labels = dict(zip(ids, [1, 0] * 3, strict=True))
    for sample in to_torch(version, decode=False):
        got = sample["annotations"]["masks"]
        assert np.array_equal(got.numpy()[0], by_id[sample["datum_id"]])
        assert sample["label"] == labels[sample["datum_id"]]
    batch = next(iter(to_torch(version, decode=False, batch_size=6, shuffle=False)))
    assert batch["label"].tolist() == [labels[i] for i in batch["datum_id"]]


COCO = SHARED_DATA / "coco-sample"


def test_coco_sample_masks_match_pycocotools(tmp_path):
    if not COCO.exists():
        pytest.skip(f"the COCO sample is not at {COCO}")
    importers = pytest.importorskip("lakecore.importers", reason="lakecore.importers missing")
    coco = pytest.importorskip("pycocotools.mask", reason="pycocotools not installed")
    import json

    lake = lakecore.connect(tmp_path / "lake")
    importers.import_coco(
        lake, COCO / "val2017", COCO / "annotations" / "instances_val2017.json", dataset="coco"
    )
    raw = json.loads((COCO / "annotations" / "instances_val2017.json").read_text())
    sizes = {im["id"]: (im["height"], im["width"]) for im in raw["images"]}
    crowd: dict[int, list[np.ndarray]] = {}
    polys: dict[int, int] = {}
    for a in raw["annotations"]:
        h, w = sizes[a["image_id"]]
        if a["iscrowd"]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                rle = coco.frPyObjects(a["segmentation"], h, w)
                crowd.setdefault(a["image_id"], []).append(np.asarray(coco.decode(rle)))
        else:
            polys[a["image_id"]] = polys.get(a["image_id"], 0) + 1
    version = lake.datasets.get("coco", "1.0.0")
    checked = 0
    for sample in to_torch(version, decode=False, annotations=["mask", "polygon", "bbox"]):
        image_id = sample["metadata"]["coco"]["id"]  # the importer keeps the COCO image entry
        ann = sample["annotations"]
        expected = crowd.get(image_id, [])
        got = ann["masks"]
        assert len(got) == len(expected)
        for g, e in zip(
            sorted(got, key=lambda m: int(m.sum())),
            sorted(expected, key=lambda m: int(m.sum())),
            strict=True,
        ):
            assert np.array_equal(np.asarray(g), e)
            checked += 1
        assert len(ann["polygons"]) == polys.get(image_id, 0)
    assert checked == sum(len(v) for v in crowd.values()) > 0


# -- bytes, storage, filters -----------------------------------------------------------------
def test_binary_payloads_are_byte_exact(where):
    lake = where.connect(large_threshold=100)  # the 200-byte one is stored as its own object
    blobs = [b"\x00", b"abc\x00\x00\x00", bytes(64), b"\x01" + bytes(199), b"\xff\x00" * 5, b"z"]
    assets = lake.assets.add_many(blobs, kind="blob")
    datums = lake.datums.add_many([{"assets": {"data": a}} for a in assets["asset_id"].to_pylist()])
    version = lake.datasets.builder("bytes").add(datums["datum_id"]).commit("1")
    expected = dict(zip(datums["datum_id"].to_pylist(), blobs, strict=True))
    got = {s["datum_id"]: s["data"] for s in to_torch(version, roles="data", decode=False)}
    assert got == expected
    for s in to_torch(version, roles="data", decode="uint8", annotations=False):
        assert bytes(s["data"].numpy()) == expected[s["datum_id"]]
    batch = next(iter(to_torch(version, roles="data", decode=False, batch_size=6)))
    assert [expected[i] for i in batch["datum_id"]] == batch["data"]
    if where.kind == "local":
        pytest.importorskip("datasets", reason="Hugging Face datasets not installed")
        hf = to_hf(version, roles="data", cache_dir=str(where.uri) + "-hf")
        assert {r["datum_id"]: r["data"] for r in hf} == expected


def test_filters_stream_a_subset(shapes):
    members = shapes.members()
    val = set(members.filter(pc.equal(members["split"], "val"))["datum_id"].to_pylist())
    assert set(to_torch(shapes, decode=False, split="val").order()) == val
    records = shapes.annotations(columns=["datum_id", "asset_id", "label"])
    circles = set(records.filter(pc.equal(records["label"], "circle"))["datum_id"].to_pylist())
    assert set(to_torch(shapes, decode=False, labels=["circle"]).order()) == circles
    assert set(to_torch(shapes, decode=False, filter="split = 'val'").order()) == val
    assert set(to_torch(shapes, decode=False, filter=pc.field("split") == "val").order()) == val
    some = sorted(members["datum_id"].to_pylist())[:3]
    picked = to_torch(
        shapes, decode=False, filter=lambda t: pc.is_in(t["datum_id"], pa.array(some))
    )
    assert sorted(picked.order()) == some
    assert len(to_torch(shapes, decode=False, split="nope").order()) == 0


def test_hf_dataset(shapes, tmp_path, monkeypatch):
    pytest.importorskip("datasets", reason="Hugging Face datasets not installed")
    hf = to_hf(shapes, roles=("image", "mask"), cache_dir=tmp_path)
    assert hf.num_rows == N and hf["datum_id"] == sorted(hf["datum_id"])
    row = hf[0]
    assert row["image"] == shapes.payloads([row["datum_id"]])[0]
    kinds = {a["kind"] for a in row["annotations"]}
    assert kinds == {"bbox", "polygon", "mask"}
    assert len(list(tmp_path.iterdir())) == 1
    to_hf(shapes, roles=("image", "mask"), cache_dir=tmp_path)  # reused, not rewritten
    assert len(list(tmp_path.iterdir())) == 1
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(NotInstalledError, match=r"lakecore\[hf\]"):
        to_hf(shapes, cache_dir=tmp_path)


def test_import_lakecore_and_loaders_stay_torch_free():
    code = "import sys, lakecore, lakecore.loaders; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
