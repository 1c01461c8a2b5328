"""Shared fixtures: an S3-compatible server (moto) on 127.0.0.1; lakes on local disk and S3."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class S3Server:
    """A moto S3 server in its own process; each test gets its own bucket."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        log = open(os.devnull, "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        self.proc.kill()
        raise RuntimeError("moto S3 server did not start within 30 s")

    @property
    def options(self) -> dict[str, str]:
        return {
            "endpoint": self.endpoint,
            "allow_http": "true",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "region": "us-east-1",
        }

    def bucket(self) -> str:
        import boto3

        name = f"t-{uuid.uuid4().hex[:16]}"
        boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _isolate_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Keep the developer's AWS/lakecore settings (and SQL disk cache) out of the tests; let a
    test's background index refreshes land before its lakes (and S3 buckets) go away."""
    for key in list(os.environ):
        if key.startswith(("AWS_", "LAKECORE_")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("LAKECORE_SQL_DISK_CACHE", str(tmp_path / "sql-disk-cache"))
    yield
    from lakecore.catalog.background import wait_all

    assert wait_all(timeout=120), "a background index refresh did not end"


class Where:
    """Where a test lake lives: a URI plus the storage options to reach it."""

    def __init__(self, kind: str, uri: str, options: dict[str, str] | None) -> None:
        self.kind = kind
        self.uri = uri
        self.options = options

    def child(self, name: str) -> Where:
        return Where(self.kind, f"{self.uri.rstrip('/')}/{name}", self.options)

    def connect(self, **kwargs: object):  # type: ignore[no-untyped-def]
        import lakecore

        return lakecore.connect(self.uri, storage_options=self.options, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(params=["local", "s3"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Where:
    """A fresh place for a lake: a local folder, then an S3 bucket on the moto server."""
    if request.param == "local":
        return Where("local", str(tmp_path / "lake"), None)
    server: S3Server = request.getfixturevalue("s3_server")
    return Where("s3", f"s3://{server.bucket()}/lake", server.options)


@pytest.fixture
def lake(where: Where):  # type: ignore[no-untyped-def]
    return where.connect()


@pytest.fixture(scope="module", params=["local", "s3"])
def module_where(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Where:
    """A place for one lake shared by a module's tests, for calls that must change nothing
    (each test checks that its call left the lake as it was): a lake on the S3 server costs
    seconds to set up."""
    if request.param == "local":
        return Where("local", str(tmp_path_factory.mktemp("shared") / "lake"), None)
    server: S3Server = request.getfixturevalue("s3_server")
    return Where("s3", f"s3://{server.bucket()}/lake", server.options)
