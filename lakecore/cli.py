"""The ``lakecore`` command line (typer + rich): an adapter over :class:`lakecore.Lake`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from lakecore.errors import LakecoreError
from lakecore.lake import Lake, connect

app = typer.Typer(
    help="lakecore: payloads, assets, annotations and dataset versions on Lance.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

DEFAULT_LAKE = "./lakecore-lake"

LakeOpt = Annotated[
    str,
    typer.Option("--lake", "-l", envvar="LAKECORE_LAKE",
                 help="Lake URI: a folder, s3://bucket/prefix or memory://name."),
]
OptionsOpt = Annotated[
    list[str] | None,
    typer.Option("--option", "-o", help="Storage option KEY=VALUE (repeatable); also "
                 "LAKECORE_STORAGE_OPTIONS as a JSON object."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _options(pairs: list[str] | None) -> dict[str, str]:
    opts: dict[str, str] = {}
    env = os.environ.get("LAKECORE_STORAGE_OPTIONS")
    if env:
        opts.update(json.loads(env))
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"--option {pair!r}: expected KEY=VALUE")
        opts[key] = value
    return opts


def open_lake(uri: str, options: list[str] | None, *, create: bool = False) -> Lake:
    """Open the lake named on the command line."""
    return connect(uri, storage_options=_options(options) or None, create=create)


def emit(data: Any, as_json: bool, render: Any = None) -> None:
    """Print ``data`` as JSON or through ``render`` (rich)."""
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    elif render is not None:
        render(data)
    else:
        console.print(data)


def progress_bar() -> Progress:
    """A rich progress bar for long work."""
    return Progress("[progress.description]{task.description}", BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=err_console)


@app.command()
def init(lake: LakeOpt = DEFAULT_LAKE, option: OptionsOpt = None, as_json: JsonOpt = False) -> None:
    """Create a lake (or open an existing one) and print its id."""
    opened = open_lake(lake, option, create=True)
    emit({"uri": opened.uri, "lake_id": opened.info.lake_id}, as_json,
         lambda d: console.print(f"lake [bold]{d['lake_id']}[/] at {d['uri']}"))


@app.command()
def info(lake: LakeOpt = DEFAULT_LAKE, option: OptionsOpt = None, as_json: JsonOpt = False) -> None:
    """Show the lake's id, mounts and tables (rows and pinned versions)."""
    described = open_lake(lake, option).describe()

    def render(d: dict[str, Any]) -> None:
        console.print(f"lake [bold]{d['lake_id']}[/] at {d['uri']} (format {d['format_version']}, "
                      f"catalog v{d['catalog_version']})")
        for name, m in d["mounts"].items():
            console.print(f"  mount {name}: {m['kind']} {m['uri'] or ''}")
        table = Table("table", "rows", "version")
        for name, t in d["tables"].items():
            table.add_row(name, str(t["rows"]), str(t["version"]))
        console.print(table)

    emit(described, as_json, render)


@app.command()
def put(
    files: Annotated[list[Path], typer.Argument(help="Files to store.", exists=True, dir_okay=False)],
    lake: LakeOpt = DEFAULT_LAKE,
    option: OptionsOpt = None,
    mount: Annotated[str | None, typer.Option(help="Target mount (default mount if unset).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Store files as payloads (content-addressed) and print their references."""
    opened = open_lake(lake, option)
    with progress_bar() as bar:
        task = bar.add_task("putting", total=len(files))
        refs = opened.objects.put_many(
            files, mount=mount, progress=lambda done, _total: bar.update(task, completed=done)
        )
    rows = [{"file": str(f), **r.model_dump()} for f, r in zip(files, refs, strict=True)]

    def render(rs: list[dict[str, Any]]) -> None:
        table = Table("file", "mount", "key", "size")
        for r in rs:
            table.add_row(r["file"], r["mount"], r["key"], str(r["size"]))
        console.print(table)

    emit(rows, as_json, render)


@app.command()
def get(
    key: Annotated[str, typer.Argument(help="Payload key, e.g. blob/<sha256>.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the bytes.")],
    lake: LakeOpt = DEFAULT_LAKE,
    option: OptionsOpt = None,
    mount: Annotated[str | None, typer.Option(help="Mount of the payload.")] = None,
) -> None:
    """Write a payload's bytes to a file (streamed)."""
    from schemas import StorageRef

    opened = open_lake(lake, option)
    sha = key.rsplit("/", 1)[-1]
    if len(sha) != 64:
        raise typer.BadParameter(f"{key!r} is not a content-addressed key (…/<sha256>)")
    ref = StorageRef(mount=mount or opened.info.default_mount, key=key, sha256=sha, size=0)
    with opened.objects.open(ref) as src, out.open("wb") as dst:
        while chunk := src.read(8 << 20):
            dst.write(chunk)
    console.print(f"wrote {out}")


def main() -> None:
    """Entry point: run the app, turning lakecore errors into one clear line and exit code 1."""
    try:
        app()
    except LakecoreError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
