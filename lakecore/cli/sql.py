"""``lakecore sql``: read-only SQL over the lake (table, CSV, JSON, Parquet); no query: a shell."""

from __future__ import annotations

import contextlib
import enum
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated, Any

import pyarrow as pa
import typer

from lakecore.cli._common import (
    DEFAULT_LAKE,
    LakeOpt,
    OptionsOpt,
    console,
    err_console,
    open_lake,
    print_error,
    print_table,
    writing,
)
from lakecore.errors import LakecoreError
from lakecore.lake import Lake

__all__ = ["Format", "shell", "sql"]


class Format(enum.StrEnum):
    """Output formats of ``lakecore sql``."""

    TABLE = "table"
    CSV = "csv"
    JSON = "json"
    PARQUET = "parquet"


def _param(text: str) -> Any:
    """A ``--param`` value: JSON when it parses (``3``, ``0.5``, ``true``, ``"x"``), else text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _flat(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Nested columns (lists, maps, structs) as JSON strings, for CSV."""
    nested = [
        i
        for i, f in enumerate(batch.schema)
        if pa.types.is_nested(f.type) or pa.types.is_map(f.type)
    ]
    if not nested:
        return batch
    columns = list(batch.columns)
    for i in nested:
        columns[i] = pa.array(
            [None if v is None else json.dumps(v, default=str) for v in columns[i].to_pylist()],
            pa.string(),
        )
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _json_rows(reader: pa.RecordBatchReader) -> Iterator[str]:
    for batch in reader:
        for row in batch.to_pylist():
            yield json.dumps(row, default=str)


def _write(reader: pa.RecordBatchReader, fmt: Format, out: Path | None, limit: int) -> None:
    if fmt is Format.TABLE:
        batches, seen = [], 0
        for batch in reader:
            batches.append(batch)
            seen += batch.num_rows
            if seen > limit:
                break
        table = pa.Table.from_batches(batches, schema=reader.schema)
        print_table(table.slice(0, limit), limit=limit)
        if seen <= limit:
            console.print(f"[dim]{seen} row{'s' if seen != 1 else ''}[/]")
        else:
            console.print(
                f"[dim]first {limit} rows shown (--limit N for more, --format csv|json for all)[/]"
            )
        reader.close()
        return
    if fmt is Format.PARQUET:
        if out is None:
            raise typer.BadParameter("--format parquet needs --out FILE")
        import pyarrow.parquet as pq

        with writing(out), pq.ParquetWriter(out, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
        err_console.print(f"wrote {out}", soft_wrap=True, highlight=False)
        return
    if out is None:
        _stream(reader, fmt, sys.stdout.buffer)
        return
    with writing(out), out.open("wb") as stream:
        _stream(reader, fmt, stream)
    err_console.print(f"wrote {out}", soft_wrap=True, highlight=False)


def _stream(reader: pa.RecordBatchReader, fmt: Format, stream: IO[Any]) -> None:
    """Write the rows as CSV or a JSON array to ``stream``."""
    if fmt is Format.CSV:
        import pyarrow.csv as pcsv

        writer = None
        for batch in reader:
            flat = _flat(batch)
            if writer is None:
                writer = pcsv.CSVWriter(stream, flat.schema)
            writer.write_batch(flat)
        if writer is None:
            stream.write((",".join(reader.schema.names) + "\n").encode())
        else:
            writer.close()
    else:
        stream.write(b"[")
        for i, line in enumerate(_json_rows(reader)):
            stream.write(("\n" if i == 0 else ",\n").encode() + line.encode())
        stream.write(b"\n]\n")
    stream.flush()


def sql(
    query: Annotated[
        str | None,
        typer.Argument(help="One read-only statement; omit it for an interactive shell."),
    ] = None,
    lake: LakeOpt = DEFAULT_LAKE,
    option: OptionsOpt = None,
    fmt: Annotated[
        Format, typer.Option("--format", "-f", help="table (default), csv, json or parquet.")
    ] = Format.TABLE,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the result to FILE instead of stdout.")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", help="A value for ?/$1… in order (repeatable; JSON or text)."
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="Rows shown by --format table.")
    ] = 100,
) -> None:
    """Query the lake with DuckDB SQL (read-only; tables, views and "name@version" datasets).

    Examples:

      lakecore sql "SELECT label, count(*) FROM boxes GROUP BY label ORDER BY 2 DESC"

      lakecore sql "SELECT * FROM \\"voc@1.0/annotations\\"" --format parquet --out voc.parquet
    """
    opened = open_lake(lake, option)
    if query is None:
        shell(opened, limit=limit)
        return
    params = [_param(p) for p in param] if param else None
    _write(opened.sql_reader(query, params), fmt, out, limit)


_HELP = """\
End a statement with ';' (it may span lines). Commands:
  .tables   list the tables and views      .help   this text
  .quit     leave (also Ctrl-D)
Views: every lake table, boxes, annotations, datum_assets, and "name@version[/part]" with
part datums (default), annotations, boxes, assets, members, datum_assets."""


def shell(lake: Lake, *, limit: int = 100) -> None:
    """A prompt loop: read statements ending in ';', print each result as a table."""
    with contextlib.suppress(ImportError):  # history and line editing where available
        import readline  # noqa: F401
    console.print(f"lakecore SQL on [bold]{lake.uri}[/] — end statements with ';', .help, .quit")
    buffer: list[str] = []
    while True:
        try:
            line = input("sql> " if not buffer else " ...> ")
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        command = line.strip()
        if not buffer and command.startswith("."):
            if command in (".quit", ".exit", ".q"):
                return
            if command == ".tables":
                _run(lake, "SHOW TABLES", limit=1000)
            else:
                console.print(_HELP)
            continue
        if not command and not buffer:
            continue
        buffer.append(line)
        if command.endswith(";"):
            text = "\n".join(buffer)
            buffer = []
            _run(lake, text, limit=limit)


def _run(lake: Lake, text: str, *, limit: int) -> None:
    try:
        _write(lake.sql_reader(text), Format.TABLE, None, limit)
    except LakecoreError as exc:
        print_error(str(exc))
