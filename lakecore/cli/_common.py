"""Shared pieces of the command line: lake options, output, progress bars."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from lakecore.lake import Lake, connect

console = Console()
err_console = Console(stderr=True)

DEFAULT_LAKE = "./lakecore-lake"

LakeOpt = Annotated[
    str,
    typer.Option(
        "--lake",
        "-l",
        envvar="LAKECORE_LAKE",
        help="Lake URI: a folder, s3://bucket/prefix or memory://name.",
    ),
]
OptionsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        "-o",
        help="Storage option KEY=VALUE (repeatable); also "
        "LAKECORE_STORAGE_OPTIONS as a JSON object.",
    ),
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
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    )


def print_table(table: Any, *, title: str | None = None, limit: int = 50) -> None:
    """Render (the first ``limit`` rows of) an Arrow table with rich."""
    from rich.table import Table

    shown = table.slice(0, limit)
    out = Table(*shown.column_names, title=title)
    for row in shown.to_pylist():
        out.add_row(*("" if v is None else str(v) for v in row.values()))
    console.print(out)
    if table.num_rows > limit:
        console.print(f"… {table.num_rows - limit} more rows (use --limit or --json)")


def rows(table: Any) -> list[dict[str, Any]]:
    """An Arrow table as JSON-ready rows."""
    return table.to_pylist()  # type: ignore[no-any-return]
