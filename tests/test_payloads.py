"""The payload store: put/get/open/head/exists/copy/register, dedup, streaming — local and S3."""

from __future__ import annotations

import hashlib
import io
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lakecore
from lakecore.errors import (
    ConfigError,
    MountNotFoundError,
    ObjectNotFoundError,
    PreconditionFailedError,
)
from schemas import StorageRef


def test_put_get_bytes_path_stream(lake, tmp_path):
    data = os.urandom(10_000)
    path = tmp_path / "x.bin"
    path.write_bytes(data)
    refs = [lake.objects.put(data), lake.objects.put(path), lake.objects.put(io.BytesIO(data))]
    assert refs[0] == refs[1] == refs[2]
    ref = refs[0]
    assert ref.sha256 == hashlib.sha256(data).hexdigest()
    assert ref.size == len(data) and ref.mount == "lake"
    assert lake.objects.get(ref) == data
    assert lake.objects.exists(ref)
    assert lake.objects.head(ref).size == len(data)


def test_same_bytes_stored_once(lake):
    data = [os.urandom(100) for _ in range(50)]
    first = lake.objects.put_many(data + data[:10])
    again = lake.objects.put_many(data)
    assert first[:50] == again and first[50:] == first[:10]
    assert lake.objects.mount("lake").dataset(refresh=True).count_rows() == 50
    assert lake.objects.get_many(again[::-1]) == data[::-1]


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=60),
    picks=st.lists(st.integers(0, 59), max_size=40),
)
def test_parallel_writers_store_each_digest_once(lake, monkeypatch, sizes, picks):
    """Payloads are split over several writer threads; duplicates inside one batch, across
    writers and against what is stored already are written once, and every byte reads back."""
    from lakecore.storage import payloads

    monkeypatch.setattr(payloads, "PART_BYTES", 1024)  # several writers even for small puts
    monkeypatch.setattr(payloads, "STREAM_BYTES", 4096)  # several batches per writer
    fresh = [os.urandom(size) for size in sizes]
    data = fresh + [fresh[i % len(fresh)] for i in picks]
    mount = lake.objects.mount("lake")
    stored = set(mount.dataset(refresh=True).to_table(columns=["sha256"])["sha256"].to_pylist())
    refs = lake.objects.put_many(data)
    assert [r.sha256 for r in refs] == [hashlib.sha256(d).hexdigest() for d in data]
    digests = mount.dataset(refresh=True).to_table(columns=["sha256"])["sha256"].to_pylist()
    assert len(set(digests)) == len(digests)  # no digest twice in the table
    assert set(digests) == stored | {r.sha256 for r in refs}  # the new ones, each once
    assert lake.objects.get_many(refs) == data


def test_empty_payload(lake):
    ref = lake.objects.put(b"")
    assert ref.size == 0 and lake.objects.get(ref) == b""


def test_open_is_seekable_without_full_read(lake):
    data = bytes(range(256)) * 400
    ref = lake.objects.put(data)
    with lake.objects.open(ref) as f:
        f.seek(1000)
        assert f.read(16) == data[1000:1016]
        f.seek(0)
        assert f.read() == data


def test_large_payload_streams_to_own_object(where):
    lake = where.connect(large_threshold=1 << 20)
    data = os.urandom(3 * (1 << 20) + 17)
    ref = lake.objects.put(io.BytesIO(data))
    assert ref.key.startswith("objects/") and ref.size == len(data)
    assert lake.objects.get(ref) == data
    with lake.objects.open(ref) as f:
        f.seek(2 << 20)
        assert f.read(10) == data[2 << 20 : (2 << 20) + 10]
    assert lake.objects.put(data) == ref  # dedup for large objects too


def test_missing_payload_errors(lake):
    ghost = StorageRef(mount="lake", key="blob/" + "0" * 64, sha256="0" * 64, size=1)
    assert not lake.objects.exists(ghost)
    with pytest.raises(ObjectNotFoundError):
        lake.objects.get(ghost)
    with pytest.raises(FileNotFoundError):  # builtin-compatible
        lake.objects.head(ghost)
    with pytest.raises(MountNotFoundError, match="no mount named 'nope'"):
        lake.objects.get(ghost.model_copy(update={"mount": "nope"}))


def test_bad_put_inputs(lake, tmp_path):
    with pytest.raises(TypeError, match="pass bytes, a file path or a binary stream"):
        lake.objects.put(12345)  # type: ignore[arg-type]
    with pytest.raises(ObjectNotFoundError, match="no such file"):
        lake.objects.put(tmp_path / "missing.bin")
    with pytest.raises(ConfigError, match="folder mounts"):
        lake.objects.put(b"x", key="my/key")


def test_folder_mount_put_register_copy(where, tmp_path):
    mount_uri = where.child("raw-bucket").uri
    lake = where.connect(mounts={"raw": mount_uri})
    assert lake.objects.mounts["raw"].value == "folder"
    data = os.urandom(5000)
    ref = lake.objects.put(data, mount="raw", key="cams/a.bin")
    assert ref.key == "cams/a.bin" and lake.objects.get(ref) == data
    # the same key with other bytes is refused; with the same bytes it is idempotent
    assert lake.objects.put(data, mount="raw", key="cams/a.bin") == ref
    with pytest.raises(PreconditionFailedError, match="exists with other content"):
        lake.objects.put(b"other", mount="raw", key="cams/a.bin")
    # register in place: an object written by someone else becomes a reference, no copy
    fs = lake.objects.mount("raw").fs
    fs.pipe_file(f"{lake.objects.mount('raw').root.uri}/incoming/b.jpg", b"jpegbytes")
    reg = lake.objects.register("raw", "incoming/b.jpg")
    assert reg.sha256 == hashlib.sha256(b"jpegbytes").hexdigest() and reg.size == 9
    assert lake.objects.get(reg) == b"jpegbytes"
    # copy between mounts keeps the content identity
    copied = lake.objects.copy(reg, "lake")
    assert copied.mount == "lake" and copied.sha256 == reg.sha256
    back = lake.objects.copy(copied, "raw")
    assert back.key.startswith("by-sha256/") and lake.objects.get(back) == b"jpegbytes"
    with pytest.raises(ConfigError, match="use put"):
        lake.objects.register("lake", "x")
    with pytest.raises(ObjectNotFoundError):
        lake.objects.register("raw", "incoming/missing.jpg")
    with pytest.raises(ConfigError, match=r"without '\.\.'"):
        lake.objects.register("raw", "../escape")
    # mounts persist in lake.json
    again = where.connect()
    assert again.objects.get(ref) == data


def test_progress_callback(lake):
    seen = []
    lake.objects.put_many(
        [os.urandom(10) for _ in range(5)], progress=lambda d, t: seen.append((d, t))
    )
    assert seen[-1] == (5, 5)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.binary(max_size=2000), min_size=1, max_size=20))
def test_roundtrip_any_bytes(tmp_path_factory, blobs):
    lake = lakecore.connect(tmp_path_factory.mktemp("h") / "lake")
    refs = lake.objects.put_many(blobs)
    assert lake.objects.get_many(refs) == blobs  # byte-exact, trailing zeros included
    assert [r.size for r in refs] == [len(b) for b in blobs]


def test_reads_across_many_fragments(lake):
    """Row ids and row addresses differ after the first fragment: reads must use ids."""
    batches = [[os.urandom(64) for _ in range(5)] for _ in range(4)]
    refs = [lake.objects.put_many(b) for b in batches]
    fresh = lakecore.connect(lake.uri, storage_options=lake.storage_options or None)
    for got, want in ((fresh.objects.get_many(r), b) for r, b in zip(refs, batches)):
        assert got == want
    with fresh.objects.open(refs[3][2]) as f:
        assert f.read() == batches[3][2]
