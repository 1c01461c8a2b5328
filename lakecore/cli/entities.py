"""``lakecore summary | assets … | alias …``: the entity API from the shell."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pyarrow as pa
import typer

from lakecore.cli._common import (
    DEFAULT_LAKE,
    JsonOpt,
    LakeOpt,
    OptionsOpt,
    console,
    emit,
    fail,
    open_lake,
    plural,
    progress_bar,
    render_rows,
    rows,
)
from lakecore.errors import AliasAlreadyExistsError, AliasNotFoundError
from schemas import AssetKind

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
    kind: Annotated[AssetKind, typer.Option(help="Asset kind.")] = AssetKind.IMAGE,
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
    emit(rows(table), as_json, lambda _d: _asset_table(table))


LS_LIMIT = 50
"""Rows ``assets ls`` shows when ``--limit`` is not given (``--json`` then prints them all)."""


def _asset_table(t: pa.Table) -> None:
    """Assets as a table narrow enough to keep ids whole (--json has every field)."""
    d = t.to_pydict()
    columns = {
        "asset_id": d["asset_id"],
        "kind": d["kind"],
        "bytes": d["size_bytes"],
        "size": [
            "" if w is None or h is None else f"{w}x{h}"
            for w, h in zip(d["width"], d["height"], strict=True)
        ],
    }
    if "created_at" in d:
        columns["created"] = d["created_at"]
    render_rows(list(columns), list(zip(*columns.values(), strict=True)))


def _render_assets(shown: pa.Table, total: int) -> None:
    _asset_table(shown)
    hidden = total - shown.num_rows
    more = (
        f"; {hidden} older not shown (--limit N for more, --limit 0 or --json for all)"
        if hidden
        else ""
    )
    console.print(f"[dim]{plural(total, 'asset')}, newest first{more}[/]", soft_wrap=True)


@assets_app.command("ls")
def assets_ls(
    kind: Annotated[AssetKind | None, typer.Option(help="Only this kind.")] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            min=0,
            show_default=False,
            help=f"At most this many rows (0: all). Default: {LS_LIMIT} in the table, all with"
            " --json.",
        ),
    ] = None,
    lake: LakeOpt = DEFAULT_LAKE,
    option: OptionsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List assets, newest first (--json: every field, media_type included)."""
    opened = open_lake(lake, option)
    table = opened.assets.table(
        columns=["asset_id", "kind", "media_type", "size_bytes", "width", "height", "created_at"],
        filter=f"kind = '{kind.value}'" if kind is not None else None,
    ).sort_by([("created_at", "descending")])
    if limit is None:
        limit = table.num_rows if as_json else LS_LIMIT
    shown = table if limit == 0 else table.slice(0, limit)
    emit(rows(shown), as_json, lambda _d: _render_assets(shown, table.num_rows))


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
    """Point an alias at an asset (--repoint to move an alias that names another asset)."""
    opened = open_lake(lake, option)
    try:
        row = opened.aliases.set(alias, asset_id, repoint=repoint)
    except AliasAlreadyExistsError:
        try:
            current = opened.aliases.resolve(alias)
        except AliasNotFoundError:  # removed meanwhile: let the retry tell
            current = "another asset"
        fail(f"alias {alias!r} already points at {current}; pass --repoint to move it")
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
    if table.num_rows == 0:  # every alias that ever existed has at least its "set" event
        raise AliasNotFoundError(f"no alias named {alias!r}", alias=alias)
    d = table.to_pydict()
    shown = list(zip(d["at"], d["action"], d["asset_id"], d["by"], strict=True))
    emit(
        rows(table),
        as_json,
        lambda _d: render_rows(["at", "action", "asset_id", "by"], shown),
    )
