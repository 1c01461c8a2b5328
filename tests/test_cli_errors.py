"""The command line as a new user meets it: one-line errors, refused bad values, whole ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import lakecore
from lakecore.cli import app
from lakecore.demo import build
from lakecore.demo import main as demo_main

runner = CliRunner()
HEX = "0123456789abcdef" * 4
ENTRY = "from lakecore.cli import main; main()"  # what the lakecore script runs


def invoke(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), env=env)


def no_traceback(result) -> None:  # type: ignore[no-untyped-def]
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception


def one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    """The stderr of a failed command: exactly one line ``error: …``, exit status 1."""
    assert result.exit_code == 1, result.output
    no_traceback(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return str(lines[0])


@pytest.fixture(scope="module")
def shared(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A demo lake with shapes@1.0.0 and 1.1.0 (one datum removed), 55 extra blob assets and
    a payload stored with put; plus its key."""
    root = tmp_path_factory.mktemp("cli")
    uri = str(root / "lake")
    lake = build(lakecore.connect(uri), 4)
    lake.datasets.builder("shapes", parent="latest").remove(
        lake.datasets.get("shapes").head(1)["datum_id"]
    ).commit("1.1.0")
    lake.assets.add_many([f"blob {i}".encode() for i in range(55)], kind="blob")
    data = root / "data.bin"
    data.write_bytes(b"some bytes")
    put = invoke("put", str(data), "--lake", uri, "--json")
    assert put.exit_code == 0, put.output
    return uri, json.loads(put.stdout)[0]["key"]


# -- 1, 2: errors about the user's own paths are one line, never wrapped -------------------------
@pytest.mark.parametrize("where", ["missing-dir", "a-directory"])
def test_get_to_an_unwritable_path_is_one_line(shared, tmp_path, where):
    uri, key = shared
    out = tmp_path / "nope" / "x.bin" if where == "missing-dir" else tmp_path
    line = one_error_line(invoke("get", key, "--out", str(out), "--lake", uri))
    why = "No such file or directory" if where == "missing-dir" else "Is a directory"
    assert line == f"error: cannot write {out}: {why}"


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_sql_out_to_a_missing_folder_is_one_line(shared, tmp_path, fmt):
    uri, _ = shared
    out = tmp_path / "nope" / f"x.{fmt}"
    result = invoke("sql", "SELECT 1", "--format", fmt, "--out", str(out), "--lake", uri)
    assert one_error_line(result).startswith(f"error: cannot write {out}: ")
    assert "No such file or directory" in result.stderr


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo"])
def test_export_into_a_file_is_one_line(shared, tmp_path, fmt):
    uri, _ = shared
    file = tmp_path / "file.jpg"
    file.write_bytes(b"not a folder")
    result = invoke("export", fmt, "--dataset", "shapes", "--out", str(file), "--lake", uri)
    assert one_error_line(result).startswith(f"error: cannot write {file}: not a directory")
    assert file.read_bytes() == b"not a folder"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``lakecore`` script in a 40-column terminal."""
    return subprocess.run(
        [sys.executable, "-c", ENTRY, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "40"},
    )


def test_entry_point_prints_one_unwrapped_line(shared, tmp_path):
    uri, key = shared
    out = tmp_path / "nope" / "x"
    done = run_cli("get", key, "--out", str(out), "--lake", uri)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr == f"error: cannot write {out}: No such file or directory\n"
    missing = run_cli("get", f"blob/{HEX}", "--out", str(tmp_path / "x"), "--lake", uri)
    assert missing.returncode == 1
    assert missing.stderr == f"error: payload lake/blob/{HEX} is not in the lake\n"


def test_long_errors_are_not_wrapped(shared, monkeypatch):
    uri, _ = shared
    monkeypatch.setenv("COLUMNS", "40")
    result = invoke("get", f"blob/{HEX}", "--out", "x.bin", "--lake", uri)
    assert HEX in one_error_line(result)
    assert not Path("x.bin").exists()


# -- 3: the demo refuses --images < 1 before touching the lake ----------------------------------
@pytest.mark.parametrize("n", ["0", "-3", "many"])
def test_demo_refuses_fewer_than_one_image(tmp_path, capsys, n):
    with pytest.raises(SystemExit) as exit_info:
        demo_main(["--lake", str(tmp_path / "d0"), "--images", n])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--images" in err and "Traceback" not in err
    assert not (tmp_path / "d0").exists()


def test_demo_says_how_to_look_at_the_lake(tmp_path, capsys):
    assert demo_main(["--lake", str(tmp_path / "demo"), "--images", "2"]) == 0
    assert f"lakecore info --lake {tmp_path / 'demo'}" in capsys.readouterr().out
    info = invoke("info", "--lake", str(tmp_path / "demo"))
    assert info.exit_code == 0, info.output


# -- 4: a reader's finalizer at interpreter exit -------------------------------------------------
def test_reader_del_survives_module_teardown(tmp_path, monkeypatch):
    from lakecore.loaders import _read

    file = tmp_path / "f"
    file.write_bytes(b"x")
    reader = _read.Reader(None)  # type: ignore[arg-type]  # (the store opens lazily)
    fd, owned = reader._open(str(file))
    assert not owned
    # what interpreter shutdown does to a module's globals before the last readers go
    monkeypatch.setattr(_read, "os", None)
    monkeypatch.setattr(_read, "contextlib", None)
    reader.__del__()  # must neither raise nor leak the descriptor
    monkeypatch.undo()
    with pytest.raises(OSError):
        os.fstat(fd)
    reader.close()  # still fine afterwards


# -- 5: assets ls ---------------------------------------------------------------------------------
def test_assets_ls_json_returns_every_row_unless_limited(shared):
    uri, _ = shared
    every = json.loads(invoke("assets", "ls", "--lake", uri, "--json").stdout)
    assert len(every) == 8 + 55  # the demo's 4 images and 4 masks, and the blobs
    created = [r["created_at"] for r in every]
    assert created == sorted(created, reverse=True)  # newest first
    two = json.loads(invoke("assets", "ls", "--limit", "2", "--lake", uri, "--json").stdout)
    assert two == every[:2]
    zero = json.loads(invoke("assets", "ls", "--limit", "0", "--lake", uri, "--json").stdout)
    assert len(zero) == len(every)
    masks = json.loads(invoke("assets", "ls", "--kind", "mask", "--lake", uri, "--json").stdout)
    assert len(masks) == 4 and {r["kind"] for r in masks} == {"mask"}


def test_assets_ls_table_says_what_it_left_out(shared):
    uri, _ = shared
    result = invoke("assets", "ls", "--lake", uri)
    assert result.exit_code == 0, result.output
    assert "63 assets, newest first; 13 older not shown" in result.stdout
    assert "--limit 0 or --json for all" in result.stdout
    every = invoke("assets", "ls", "--limit", "0", "--lake", uri)
    assert "63 assets, newest first" in every.stdout and "not shown" not in every.stdout


@pytest.mark.parametrize("args", [["--limit", "-1"], ["--kind", "bogus"], ["--kind", "my-kind"]])
def test_assets_ls_refuses_bad_values(shared, args):
    uri, _ = shared
    result = invoke("assets", "ls", *args, "--lake", uri)
    assert result.exit_code == 2, result.output
    no_traceback(result)
    if args[0] == "--kind":
        assert args[1] in result.stderr
        for kind in ("image", "mask", "document", "blob"):
            assert f"'{kind}'" in result.stderr


# -- 6: ids are never shortened -------------------------------------------------------------------
def test_ids_and_keys_are_whole_at_80_columns(shared, tmp_path, monkeypatch):
    uri, key = shared
    monkeypatch.setenv("COLUMNS", "80")
    listed = json.loads(invoke("assets", "ls", "--limit", "3", "--lake", uri, "--json").stdout)
    table = invoke("assets", "ls", "--limit", "3", "--lake", uri).stdout
    assert "…" not in table.split("\n63 assets")[0]
    for row in listed:
        assert row["asset_id"] in table
    data = tmp_path / "other.bin"
    data.write_bytes(b"other bytes")
    put = invoke("put", str(data), "--lake", uri)
    assert put.exit_code == 0, put.output
    assert any(line.split(": ", 1)[-1].startswith("blob/") for line in put.stdout.splitlines())
    assert len(next(w for w in put.stdout.split() if w.startswith("blob/"))) == len(key)
    sql = invoke(
        "sql", "SELECT asset_id, sha256, media_type, size_bytes FROM assets", "--lake", uri
    )
    assert sql.exit_code == 0, sql.output
    assert "…" not in sql.stdout.split("\n… ")[0].replace("first 100 rows", "")


# -- 7: datasets diff and gc ----------------------------------------------------------------------
def test_diff_json_lists_the_datum_ids(shared):
    uri, _ = shared
    lake = lakecore.connect(uri)
    want = lake.datasets.diff("shapes@1.0.0", "shapes@1.1.0")
    result = invoke("datasets", "diff", "shapes@1.0.0", "shapes@1.1.0", "--lake", uri, "--json")
    diff = json.loads(result.stdout)
    assert diff["removed"] == 1 and diff["removed_ids"] == want.removed
    assert diff["added_ids"] == [] and diff["changed_ids"] == want.changed
    latest = json.loads(
        invoke("datasets", "diff", "shapes@1.0.0", "shapes", "--lake", uri, "--json").stdout
    )
    assert latest["b"] == "shapes@1.1.0" and latest["removed_ids"] == want.removed


def test_diff_and_gc_print_lines_not_dicts(shared):
    uri, _ = shared
    diff = invoke("datasets", "diff", "shapes@1.0.0", "shapes@1.1.0", "--lake", uri)
    assert diff.exit_code == 0, diff.output
    assert "{" not in diff.stdout and "'" not in diff.stdout
    removed = lakecore.connect(uri).datasets.diff("shapes@1.0.0", "shapes@1.1.0").removed
    assert "0 datums added, 1 removed, 0 changed" in diff.stdout and removed[0] in diff.stdout
    gc = invoke("gc", "--lake", uri)
    assert gc.exit_code == 0, gc.output
    assert "{" not in gc.stdout and gc.stdout.startswith("dry run: nothing was removed")
    assert "lake size now:" in gc.stdout and "after" not in gc.stdout
    report = json.loads(invoke("gc", "--lake", uri, "--json").stdout)
    assert report["dry_run"] is True and "bytes_after" not in report and report["bytes_before"] > 0


def test_gc_refuses_a_negative_grace(shared):
    uri, _ = shared
    result = invoke("gc", "--grace-hours", "-5", "--lake", uri)
    assert result.exit_code == 2, result.output
    no_traceback(result)
    assert "--grace-hours" in result.stderr


# -- 8: unknown names -----------------------------------------------------------------------------
def test_versions_of_an_unknown_dataset_is_an_error(shared):
    uri, _ = shared
    line = one_error_line(invoke("datasets", "versions", "nope", "--lake", uri))
    assert line == "error: no dataset named 'nope'"
    assert invoke("datasets", "versions", "shapes", "--lake", uri).exit_code == 0


def test_history_of_an_unknown_alias_is_an_error(shared):
    uri, _ = shared
    line = one_error_line(invoke("alias", "history", "nope", "--lake", uri))
    assert line == "error: no alias named 'nope'"


# -- 10: hints name the flags, not Python arguments -----------------------------------------------
def test_alias_set_says_repoint_flag(shared):
    uri, _ = shared
    a, b = (
        r["asset_id"]
        for r in json.loads(invoke("assets", "ls", "--lake", uri, "--json").stdout)[:2]
    )
    assert invoke("alias", "set", "hero", a, "--lake", uri).exit_code == 0
    line = one_error_line(invoke("alias", "set", "hero", b, "--lake", uri))
    assert line == f"error: alias 'hero' already points at {a}; pass --repoint to move it"
    assert invoke("alias", "set", "hero", b, "--repoint", "--lake", uri).exit_code == 0
    history = invoke("alias", "history", "hero", "--lake", uri)
    assert history.exit_code == 0 and a in history.stdout and b in history.stdout


def test_import_coco_notes_name_the_split_flag_and_pluralize(tmp_path):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (20, 10)).save(images / "a.png")
    ann = tmp_path / "instances_val2017.json"
    ann.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.png", "width": 20, "height": 10}],
                "categories": [{"id": 1, "name": "cat"}],
                "annotations": [
                    {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
                ],
            }
        )
    )
    uri = str(tmp_path / "lake")
    args = ["import", "coco", "--images", str(images), "--annotations", str(ann)]
    result = invoke(*args, "--dataset", "one", "--lake", uri)
    assert result.exit_code == 0, result.output
    assert "imported one@1.0.0: 1 datum, 1 asset (1 image, 0 masks), 1 record" in result.stdout
    assert "pass --split to choose" in result.stdout and "split=" not in result.stdout


# -- 9, 12, 13: smaller things --------------------------------------------------------------------
def test_get_json_and_put_says_payloads_need_an_asset(shared, tmp_path):
    uri, key = shared
    out = tmp_path / "back.bin"
    got = json.loads(invoke("get", key, "--out", str(out), "--lake", uri, "--json").stdout)
    assert got == {"key": key, "mount": "lake", "out": str(out), "size": 10}
    assert out.read_bytes() == b"some bytes"
    data = tmp_path / "p.bin"
    data.write_bytes(b"p")
    put = invoke("put", str(data), "--lake", uri)
    assert "lakecore assets add" in put.stdout and "gc" in put.stdout
    assert "lakecore assets add" in invoke("put", "--help").stdout


def test_info_and_export_help_have_no_loose_ends(shared):
    uri, _ = shared
    info = invoke("info", "--lake", uri)
    assert info.exit_code == 0, info.output
    assert not any(line.endswith(" ") for line in info.stdout.splitlines() if "mount" in line)
    help_text = invoke("export", "coco", "--help").stdout
    assert help_text.count("latest") == 1


@pytest.mark.parametrize("value", ["{bad", "[1]"])
def test_bad_storage_options_in_the_environment_are_one_line(tmp_path, value):
    result = invoke("info", "--lake", str(tmp_path / "x"), env={"LAKECORE_STORAGE_OPTIONS": value})
    assert "LAKECORE_STORAGE_OPTIONS" in one_error_line(result)


def test_a_lake_json_without_a_catalog_is_one_plain_line(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "lake.json").write_text("{}")
    line = one_error_line(invoke("info", "--lake", str(tmp_path / "half")))
    assert "complete lake" in line and ".rs:" not in line
