"""``lakecore summary | assets … | alias …``: the entity API from the shell."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lakecore.cli._common import (
    DEFAULT_LAKE,
    JsonOpt,
    LakeOpt,
    OptionsOpt,
    console,
    emit,
    open_lake,
    print_table,
    progress_bar,
    rows,
)

assets_app = typer.Typer(help="Assets: add files, list.", no_args_is_help=True)
alias_app = typer.Typer(help="Aliases: human names for assets.", no_args_is_help=True)


def summary(
    lake: LakeOpt = DEFAULT_LAKE, option: OptionsOpt = None, as_json: JsonOpt = False
) -> None:
    """Row counts of every table, payload count and bytes."""
    from lakecore.entities.summary import render_summary

    info = open_lake(lake, option).summary()
    emit(info, as_json, lambda d: console.print(render_summary(d)))


@assets_app.command("add")
def assets_add(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False)],
    kind: Annotated[str, typer.Option(help="Asset kind: image, mask, document, blob…")] = "image",
    lake: LakeOpt = DEFAULT_LAKE,
    option: OptionsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add files as assets (one commit; payloads stored once)."""
    opened = open_lake(lake, option)
    with progress_bar() as bar:
        task = bar.add_task("adding", total=len(files))
        added = opened.assets.add_many(
            files, kind=kind, progress=lambda done, _t: bar.update(task, completed=done)
        )
    table = added.select(["asset_id", "kind", "media_type", "size_bytes", "width", "height"])
    emit(rows(table), as_json, lambda _d: print_table(table))


@assets_app.command("ls")
def assets_ls(
    kind: Annotated[str | None, typer.Option(help="Only this kind.")] = None,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 50,
    lake: LakeOpt = DEFAULT_LAKE,
    option: OptionsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List assets (newest last)."""
    opened = open_lake(lake, option)
    flt = f"kind = '{kind}'" if kind and kind.isidentifier() else None
    table = opened.assets.table(
        columns=["asset_id", "kind", "media_type", "size_bytes", "width", "height", "created_at"],
        filter=flt,
    ).sort_by("created_at")
    emit(rows(table.slice(0, limit)), as_json, lambda _d: print_table(table, limit=limit))


@alias_app.command("set")
def alias_set(
    alias: str,
    asset_id: str,
    repoint: Annotated[
        bool, typer.Option(help="Move the alias if it names another asset.")
    ] = False,
    lake: LakeOpt = DEFAULT_LAKE,
    option: OptionsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Point an alias at an asset."""
    row = open_lake(lake, option).aliases.set(alias, asset_id, repoint=repoint)
    emit(
        row.model_dump(mode="json"),
        as_json,
        lambda d: console.print(f"{d['alias']} -> {d['asset_id']}"),
    )


@alias_app.command("get")
def alias_get(
    alias: str, lake: LakeOpt = DEFAULT_LAKE, option: OptionsOpt = None, as_json: JsonOpt = False
) -> None:
    """Print the asset an alias names."""
    asset_id = open_lake(lake, option).aliases.resolve(alias)
    emit({"alias": alias, "asset_id": asset_id}, as_json, lambda d: console.print(d["asset_id"]))


@alias_app.command("history")
def alias_history(
    alias: str, lake: LakeOpt = DEFAULT_LAKE, option: OptionsOpt = None, as_json: JsonOpt = False
) -> None:
    """Every set, repoint and removal of an alias, oldest first."""
    table = open_lake(lake, option).aliases.history(alias)
    emit(rows(table), as_json, lambda _d: print_table(table))
