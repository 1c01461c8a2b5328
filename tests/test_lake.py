"""connect(): creating and reopening lakes on local disk, S3 and memory://; bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import lakecore
from lakecore.errors import ConfigError, LakeNotFoundError, StorageError
from lakecore.lake import FORMAT_VERSION


def test_create_then_reopen(where):
    lake = where.connect()
    assert lake.info.lake_id.startswith("lake_")
    assert lake.info.format_version == FORMAT_VERSION
    ref = lake.objects.put(b"persisted")
    again = where.connect(create=False)
    assert again.info.lake_id == lake.info.lake_id
    assert again.objects.get(ref) == b"persisted"
    info = again.describe()
    assert set(info["tables"]) >= {"assets", "datums", "annotation_records", "aliases"}
    assert all(t["rows"] == 0 for t in info["tables"].values())


def test_missing_lake_without_create(where):
    with pytest.raises(LakeNotFoundError, match="no lake"):
        lakecore.connect(where.uri + "-absent", storage_options=where.options, create=False)


def test_memory_lake_is_private_and_ephemeral():
    a = lakecore.connect("memory://unit-a")
    ref = a.objects.put(b"in memory")
    assert lakecore.connect("memory://unit-a").objects.get(ref) == b"in memory"
    b = lakecore.connect("memory://unit-b")
    assert not b.objects.exists(ref)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("", "empty lake URI"),
        ("ftp://x/y", "unsupported URI scheme"),
        ("s3://", "expected s3://"),
        ("memory://", "bad memory URI"),
        ("memory://../x", "bad memory URI"),
    ],
)
def test_bad_uris(uri, message):
    with pytest.raises(ConfigError, match=message):
        lakecore.connect(uri)


def test_bad_storage_options(tmp_path):
    with pytest.raises(ConfigError, match="must be str -> str"):
        lakecore.connect(tmp_path / "l", storage_options={"allow_http": True})  # type: ignore[dict-item]


def test_newer_format_is_refused(tmp_path):
    lake = lakecore.connect(tmp_path / "l")
    path = tmp_path / "l" / "lake.json"
    doc = json.loads(path.read_text())
    doc["format_version"] = FORMAT_VERSION + 1
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="upgrade lakecore"):
        lakecore.connect(tmp_path / "l")
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=r"not a valid lake\.json"):
        lakecore.connect(tmp_path / "l")
    assert lake.info.format_version == FORMAT_VERSION


def test_unreachable_s3_is_a_storage_error():
    opts = {
        "endpoint": "http://127.0.0.1:9",
        "allow_http": "true",
        "aws_access_key_id": "x",
        "aws_secret_access_key": "x",
        "region": "us-east-1",
    }
    with pytest.raises(StorageError):
        lakecore.connect("s3://nobucket/lake", storage_options=opts)


def test_errors_pickle():
    import pickle

    from lakecore.errors import ValidationError

    err = pickle.loads(pickle.dumps(ValidationError("row 3: bad", row=3, field="bbox")))
    assert isinstance(err, ValueError) and err.details == {"row": 3, "field": "bbox"}
    assert str(err) == "row 3: bad"


def test_import_lakecore_stays_light():
    code = (
        "import sys, lakecore; heavy = [m for m in ('torch', 'fastapi', 'duckdb', 'boto3') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
