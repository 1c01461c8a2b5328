"""Shared pieces of the command line: lake options, output, errors, progress bars."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from typer.core import TyperGroup

from lakecore.errors import ConfigError, LakecoreError
from lakecore.lake import Lake, connect

console = Console()
err_console = Console(stderr=True)


# -- errors: one line on stderr, exit status 1 ---------------------------------------------------
def print_error(message: str) -> None:
    """``error: message`` on stderr as one line (never wrapped at the terminal width)."""
    err_console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)


def fail(message: str) -> NoReturn:
    """Print ``error: message`` and exit with status 1."""
    print_error(message)
    raise typer.Exit(1)


def error_message(exc: BaseException) -> str:
    """The one line printed for a lakecore error or an ``OSError`` of the user's own files."""
    if isinstance(exc, LakecoreError) or not isinstance(exc, OSError):
        return str(exc)
    if exc.filename is None:
        return exc.strerror or str(exc)
    return f"cannot access {exc.filename}: {exc.strerror or exc}"


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an ``OSError`` while writing the user's ``path`` into ``cannot write PATH: why``."""
    try:
        yield
    except LakecoreError:
        raise
    except BrokenPipeError:
        raise
    except OSError as exc:
        named = exc.filename
        if named is None and str(path) in str(exc):  # pyarrow names the file in its message
            named = str(path)
        if named is None or not _within(os.fsdecode(named), path):
            raise  # not about the user's output (e.g. reading the lake)
        fail(f"cannot write {named}: {exc.strerror or exc}")


def _within(filename: str, path: Path) -> bool:
    """``filename`` is ``path`` or inside it."""
    file, root = Path(os.path.abspath(filename)), Path(os.path.abspath(path))
    return file == root or root in file.parents


class LakecoreGroup(TyperGroup):
    """The root command group: lakecore errors, and ``OSError`` s about a named file (the
    user's paths), become one line and status 1.

    Anything else (a bug, an I/O error inside a library) keeps its traceback. A broken pipe
    (``lakecore sql … | head``) is left to click, which exits quietly.
    """

    def invoke(self, ctx: Any) -> Any:  # (click's Context: typer may vendor click)
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise
        except LakecoreError as exc:
            print_error(error_message(exc))
            raise typer.Exit(1) from None
        except OSError as exc:
            if exc.filename is None:  # not about a path the user gave: keep the traceback
                raise
            print_error(error_message(exc))
            raise typer.Exit(1) from None


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 datum``, ``2 datums`` (``words`` for irregular plurals)."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


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
        try:
            given = json.loads(env)
        except ValueError as exc:
            raise ConfigError(f"LAKECORE_STORAGE_OPTIONS is not JSON ({exc})") from None
        if not isinstance(given, dict):
            raise ConfigError(
                'LAKECORE_STORAGE_OPTIONS must be a JSON object, e.g. {"region": "us-east-1"}'
            )
        opts.update(given)
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


ID_COLUMNS = frozenset({"key", "id", "alias", "ref", "sha256", "file", "uri"})
"""Columns users copy into the next command (besides ``*_id``): never shortened."""


def _is_id(name: str) -> bool:
    return name in ID_COLUMNS or name.endswith("_id")


def _cell(value: Any) -> str:
    """A value as table text: timestamps to the second, maps one ``key: value`` a line."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        offset = value.utcoffset()
        zone = "" if offset is None else " UTC" if not offset else f"{value:%z}"
        return f"{value:%Y-%m-%d %H:%M:%S}{zone}"
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, tuple) and len(v) == 2 for v in value)
    ):  # an Arrow map
        return "\n".join(f"{k}: {_cell(v)}" for k, v in value)
    return str(value)


GAP = 2
"""Spaces between table columns."""
FOLD_MIN = 10
"""Width another column keeps (at most its longest word) before id columns give up a line."""


def render_rows(
    columns: Sequence[str],
    data: Sequence[Sequence[Any]],
    *,
    title: str | None = None,
    caption: str | None = None,
) -> None:
    """Print rows as a table without ever cutting a cell or header short.

    Id and key columns (``*_id``, ``key``…) stay whole on one line when the terminal leaves the
    other columns room for their longest word (up to ``FOLD_MIN``): those wrap instead.
    Otherwise every column folds onto more lines. Nothing is ellipsized, and no vertical rules
    get in the way of copying an id.
    """
    from rich import box
    from rich.cells import cell_len
    from rich.table import Table

    cells = [[_cell(v) for v in row] for row in data]
    ids = [_is_id(c) for c in columns]

    def widest(i: int, words: bool) -> int:
        texts = [columns[i], *(r[i] for r in cells)]
        parts = [w for t in texts for w in t.split()] if words else texts
        return max((cell_len(t) for t in parts), default=1)

    need = sum(
        widest(i, False) if is_id else min(widest(i, True), FOLD_MIN) for i, is_id in enumerate(ids)
    ) + GAP * len(columns)
    keep_ids = any(ids) and need <= console.width
    out = Table(
        title=title,
        caption=caption,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, GAP - 1, 0, 0),
    )
    for name, is_id in zip(columns, ids, strict=True):
        out.add_column(name, overflow="fold", no_wrap=keep_ids and is_id)
    for row in cells:
        out.add_row(*row)
    console.print(out)


def print_table(
    table: Any,
    *,
    title: str | None = None,
    limit: int = 50,
    caption: str | None = None,
    more: str = "use --json for all rows",
) -> None:
    """Render (the first ``limit`` rows of) an Arrow table with rich; ``more`` says how to see
    the rest."""
    shown = table.slice(0, limit)
    columns = [c.to_pylist() for c in shown.columns]
    render_rows(shown.column_names, list(zip(*columns, strict=True)), title=title, caption=caption)
    if table.num_rows > limit:
        console.print(f"… {table.num_rows - limit} more rows ({more})")


def rows(table: Any) -> list[dict[str, Any]]:
    """An Arrow table as JSON-ready rows."""
    return table.to_pylist()  # type: ignore[no-any-return]
