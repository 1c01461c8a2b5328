"""The README demo and the command line, end to end."""

from __future__ import annotations

import json
import random

import pyarrow.compute as pc
from typer.testing import CliRunner

import lakecore
from lakecore.cli import app
from lakecore.demo import build, draw_sample, main

runner = CliRunner()


def test_demo_runs_and_is_exact(tmp_path, capsys):
    assert main(["--lake", str(tmp_path / "demo"), "--images", "12"]) == 0
    out = capsys.readouterr().out
    assert "dataset shapes@1.0.0 (tag prod): 12 datums" in out and "PNG: True" in out
    assert main(["--lake", str(tmp_path / "demo"), "--images", "12"]) == 0  # re-run is safe
    lake = lakecore.connect(tmp_path / "demo")
    version = lake.datasets.get("shapes", "prod")
    records = version.annotations()
    rng = random.Random(0)
    drawn = [draw_sample(rng)[2] for _ in range(12)]
    boxes = records.filter(pc.equal(records["kind"], "bbox"))
    assert boxes.num_rows == sum(len(s) for s in drawn)
    want = sorted(tuple(round(v, 3) for v in s["bbox"]) for shapes in drawn for s in shapes)
    got = sorted(tuple(round(v, 3) for v in b) for b in boxes["bbox"].to_pylist())
    assert got == want


def test_demo_on_s3(where):
    lake = build(where.connect(), 3)
    assert lake.datasets.get("shapes").record.datum_count == 3


def invoke(*args: str):  # type: ignore[no-untyped-def]
    result = runner.invoke(app, list(args))
    return result


def test_cli_end_to_end(tmp_path):
    uri = str(tmp_path / "lake")
    assert invoke("init", "--lake", uri, "--json").exit_code == 0
    f = tmp_path / "a.png"
    f.write_bytes(b"\x89PNG not really")
    added = invoke("assets", "add", str(f), "--kind", "blob", "--lake", uri, "--json")
    assert added.exit_code == 0, added.output
    asset_id = json.loads(added.stdout)[0]["asset_id"]
    listed = json.loads(invoke("assets", "ls", "--lake", uri, "--json").stdout)
    assert [r["asset_id"] for r in listed] == [asset_id]
    assert invoke("alias", "set", "cam/latest", asset_id, "--lake", uri).exit_code == 0
    got = json.loads(invoke("alias", "get", "cam/latest", "--lake", uri, "--json").stdout)
    assert got["asset_id"] == asset_id
    summary = json.loads(invoke("summary", "--lake", uri, "--json").stdout)
    assert summary["tables"]["assets"] == 1 and summary["payloads"]["count"] == 1
    info = json.loads(invoke("info", "--lake", uri, "--json").stdout)
    assert info["tables"]["aliases"]["rows"] == 1
    put = json.loads(invoke("put", str(f), "--lake", uri, "--json").stdout)
    out = tmp_path / "back.bin"
    assert invoke("get", put[0]["key"], "--out", str(out), "--lake", uri).exit_code == 0
    assert out.read_bytes() == f.read_bytes()


def test_cli_datasets_and_gc(tmp_path):
    uri = str(tmp_path / "lake")
    build(lakecore.connect(uri), 4)
    assert "shapes" in invoke("datasets", "ls", "--lake", uri).stdout
    shown = json.loads(invoke("datasets", "show", "shapes@prod", "--lake", uri, "--json").stdout)
    assert shown["stats"]["datums"] == 4
    lake = lakecore.connect(uri)
    lake.datasets.builder("shapes", parent="latest").remove(
        lake.datasets.get("shapes").head(1)["datum_id"]
    ).commit("1.1.0")
    diff = json.loads(
        invoke("datasets", "diff", "shapes@1.0.0", "shapes@1.1.0", "--lake", uri, "--json").stdout
    )
    assert diff["removed"] == 1
    assert invoke("datasets", "tag", "shapes", "prod", "1.1.0", "--lake", uri).exit_code == 0
    versions = json.loads(invoke("datasets", "versions", "shapes", "--lake", uri, "--json").stdout)
    assert [v["version"] for v in versions] == ["1.0.0", "1.1.0"]
    report = json.loads(invoke("gc", "--lake", uri, "--json").stdout)
    assert report["dry_run"] is True


def test_cli_errors_are_one_line(tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "lakecore.cli.main", "info", "--lake", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert "error: no lake at" in out.stderr and "Traceback" not in out.stderr
    bad = invoke("alias", "get", "nope", "--lake", str(tmp_path / "missing"))
    assert bad.exit_code != 0
