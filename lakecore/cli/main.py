"""The ``lakecore`` command line (typer + rich): an adapter over :class:`lakecore.Lake`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from lakecore.cli._common import (
    DEFAULT_LAKE,
    JsonOpt,
    LakecoreGroup,
    LakeOpt,
    OptionsOpt,
    console,
    emit,
    error_message,
    open_lake,
    print_error,
    progress_bar,
    writing,
)
from lakecore.cli.datasets import datasets_app
from lakecore.cli.datasets import gc as gc_command
from lakecore.cli.entities import alias_app, assets_app
from lakecore.cli.entities import summary as summary_command
from lakecore.cli.io import export_app, import_app
from lakecore.cli.sql import sql as sql_command
from lakecore.errors import LakecoreError

app = typer.Typer(
    help="lakecore: payloads, assets, annotations and dataset versions on Lance.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=LakecoreGroup,
)


@app.command()
def init(lake: LakeOpt = DEFAULT_LAKE, option: OptionsOpt = None, as_json: JsonOpt = False) -> None:
    """Create a lake (or open an existing one) and print its id."""
    opened = open_lake(lake, option, create=True)
    emit(
        {"uri": opened.uri, "lake_id": opened.info.lake_id},
        as_json,
        lambda d: console.print(f"lake [bold]{d['lake_id']}[/] at {d['uri']}"),
    )


@app.command()
def info(lake: LakeOpt = DEFAULT_LAKE, option: OptionsOpt = None, as_json: JsonOpt = False) -> None:
    """Show the lake's id, mounts and tables (rows and pinned versions)."""
    described = open_lake(lake, option).describe()

    def render(d: dict[str, Any]) -> None:
        console.print(
            f"lake [bold]{d['lake_id']}[/] at {d['uri']} (format {d['format_version']}, "
            f"catalog v{d['catalog_version']})"
        )
        for name, m in d["mounts"].items():
            where = f" {m['uri']}" if m["uri"] else " (payloads in the lake's own blob table)"
            console.print(f"  mount {name}: {m['kind']}{where}")
        table = Table("table", "rows", "version")
        for name, t in d["tables"].items():
            table.add_row(name, str(t["rows"]), str(t["version"]))
        console.print(table)

    emit(described, as_json, render)


@app.command()
def put(
    files: Annotated[
        list[Path], typer.Argument(help="Files to store.", exists=True, dir_okay=False)
    ],
    lake: LakeOpt = DEFAULT_LAKE,
    option: OptionsOpt = None,
    mount: Annotated[
        str | None, typer.Option(help="Target mount (default mount if unset).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Store files as payloads (content-addressed) and print their references.

    A payload is kept only while an asset references it: lakecore gc removes
    unreferenced payloads once they are older than its grace period.
    To keep files, add them as assets: lakecore assets add FILE…
    """
    opened = open_lake(lake, option)
    with progress_bar() as bar:
        task = bar.add_task("putting", total=len(files))
        refs = opened.objects.put_many(
            files, mount=mount, progress=lambda done, _total: bar.update(task, completed=done)
        )
    rows = [{"file": str(f), **r.model_dump()} for f, r in zip(files, refs, strict=True)]

    def render(rs: list[dict[str, Any]]) -> None:
        for r in rs:  # one line each, never wrapped: the key is what lakecore get takes
            console.print(
                f"{escape(r['file'])}: {r['key']} (mount {r['mount']}, {r['size']} bytes)",
                soft_wrap=True,
                highlight=False,
            )
        console.print(
            "[dim]no asset references these payloads: gc removes them once older than its"
            " grace period (lakecore assets add FILE… stores files as assets to keep them)[/]",
            soft_wrap=True,
        )

    emit(rows, as_json, render)


@app.command()
def get(
    key: Annotated[str, typer.Argument(help="Payload key, e.g. blob/<sha256>.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the bytes.")],
    lake: LakeOpt = DEFAULT_LAKE,
    option: OptionsOpt = None,
    mount: Annotated[str | None, typer.Option(help="Mount of the payload.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a payload's bytes to a file (streamed)."""
    from schemas import StorageRef

    opened = open_lake(lake, option)
    sha = key.rsplit("/", 1)[-1]
    if len(sha) != 64:
        raise typer.BadParameter(f"{key!r} is not a content-addressed key (…/<sha256>)")
    ref = StorageRef(mount=mount or opened.info.default_mount, key=key, sha256=sha, size=0)
    size = 0
    with opened.objects.open(ref) as src, writing(out), out.open("wb") as dst:
        while chunk := src.read(8 << 20):
            size += dst.write(chunk)
    emit(
        {"key": key, "mount": ref.mount, "out": str(out), "size": size},
        as_json,
        lambda d: console.print(f"wrote {d['out']} ({d['size']} bytes)", soft_wrap=True),
    )


app.command("summary")(summary_command)
app.command("gc")(gc_command)
app.command("sql")(sql_command)
app.add_typer(assets_app, name="assets")
app.add_typer(alias_app, name="alias")
app.add_typer(datasets_app, name="datasets")
app.add_typer(import_app, name="import")
app.add_typer(export_app, name="export")


def main() -> None:
    """Entry point: run the app, turning lakecore errors into one clear line and exit code 1.

    (The root group already does this for every command; this catches the rest, e.g. errors
    raised while parsing options.)
    """
    try:
        app()
    except BrokenPipeError:
        raise
    except LakecoreError as exc:
        print_error(error_message(exc))
        raise SystemExit(1) from None
    except OSError as exc:
        if exc.filename is None:  # not about a path the user gave: keep the traceback
            raise
        print_error(error_message(exc))
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
