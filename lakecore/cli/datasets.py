"""``lakecore datasets … | gc``: dataset versions from the shell."""

from __future__ import annotations

from datetime import timedelta
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
    rows,
)

datasets_app = typer.Typer(help="Immutable dataset versions.", no_args_is_help=True)


def _split_ref(ref: str) -> tuple[str, str]:
    name, sep, version = ref.partition("@")
    return name, version if sep else "latest"


@datasets_app.command("ls")
def ls(lake: LakeOpt = DEFAULT_LAKE, option: OptionsOpt = None, as_json: JsonOpt = False) -> None:
    """Every dataset with its number of versions and latest version."""
    table = open_lake(lake, option).datasets.list()
    emit(rows(table), as_json, lambda _d: print_table(table))


@datasets_app.command("versions")
def versions(
    name: str, lake: LakeOpt = DEFAULT_LAKE, option: OptionsOpt = None, as_json: JsonOpt = False
) -> None:
    """The versions of a dataset, oldest first."""
    table = open_lake(lake, option).datasets.versions(name)
    emit(rows(table), as_json, lambda _d: print_table(table))


@datasets_app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="name, name@version or name@tag")],
    lake: LakeOpt = DEFAULT_LAKE,
    option: OptionsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A version's record, counts per split and label, and its first datums."""
    opened = open_lake(lake, option)
    handle = opened.datasets.get(*_split_ref(ref))
    info = {"record": handle.record.model_dump(mode="json"), "stats": handle.stats()}

    def render(d: dict) -> None:  # type: ignore[type-arg]
        rec = d["record"]
        console.print(
            f"[bold]{handle.ref}[/] ({rec['version_id']}) — {rec['datum_count']} datums,"
            f" parent {rec['parent_version_id']}, by {rec['author']}: {rec['message']}"
        )
        console.print(f"splits: {d['stats']['splits']}")
        console.print(f"labels: {d['stats']['labels']}")
        print_table(handle.head(10).select(["datum_id", "split", "assets"]), title="first datums")

    emit(info, as_json, render)


@datasets_app.command("diff")
def diff(
    a: str,
    b: str,
    lake: LakeOpt = DEFAULT_LAKE,
    option: OptionsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Datums added, removed and changed from A to B (name@version each), labels compared."""
    result = open_lake(lake, option).datasets.diff(a, b).summary()
    emit(result, as_json, lambda d: console.print(d))


@datasets_app.command("tag")
def tag(
    name: str,
    tag_name: Annotated[str, typer.Argument(metavar="TAG")],
    version: str,
    lake: LakeOpt = DEFAULT_LAKE,
    option: OptionsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Point TAG (e.g. prod) at VERSION; the tag's history is kept."""
    event = open_lake(lake, option).datasets.tag(name, tag_name, version)
    emit(
        event.model_dump(mode="json"),
        as_json,
        lambda _d: console.print(f"{name}:{tag_name} -> {version}"),
    )


def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run/--apply", help="Only report (default) or really remove.")
    ] = True,
    grace_hours: Annotated[float, typer.Option(help="Keep anything younger than this.")] = 1.0,
    lake: LakeOpt = DEFAULT_LAKE,
    option: OptionsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Reclaim table versions and payloads nothing can read (dry run unless --apply)."""
    report = open_lake(lake, option).gc(dry_run=dry_run, grace=timedelta(hours=grace_hours))
    emit(report.as_dict(), as_json, lambda d: console.print(d))
