"""``lakecore datasets … | gc``: dataset versions from the shell."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.markup import escape

from lakecore.cli._common import (
    DEFAULT_LAKE,
    JsonOpt,
    LakeOpt,
    OptionsOpt,
    console,
    emit,
    err_console,
    open_lake,
    plural,
    print_table,
    render_rows,
    rows,
)
from lakecore.entities.summary import human_bytes
from lakecore.errors import VersionNotFoundError

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
    if table.num_rows == 0:  # a dataset exists once its first version is committed
        raise VersionNotFoundError(f"no dataset named {name!r}", name=name)

    def render(_d: object) -> None:  # what one types next is name@version: no internal ids
        d = table.to_pydict()
        by_id = dict(zip(d["version_id"], d["version"], strict=True))
        render_rows(
            ["version", "parent", "datums", "created", "author", "message"],
            list(
                zip(
                    d["version"],
                    [by_id.get(p, p) for p in d["parent_version_id"]],
                    d["datum_count"],
                    d["created_at"],
                    d["author"],
                    d["message"],
                    strict=True,
                )
            ),
        )

    emit(rows(table), as_json, render)


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

    def counts(c: dict[str, int]) -> str:
        return ", ".join(f"{k} {n}" for k, n in c.items()) or "none"

    def render(d: dict[str, Any]) -> None:
        rec = d["record"]
        by = f" by {rec['author']}" if rec["author"] else ""
        message = f": {rec['message']}" if rec["message"] else ""
        console.print(
            f"[bold]{escape(handle.ref)}[/] ({rec['version_id']}):"
            f" {plural(rec['datum_count'], 'datum')}{by}{escape(message)}",
            soft_wrap=True,
            highlight=False,
        )
        console.print(f"parent: {rec['parent_version_id'] or 'none'}", highlight=False)
        console.print(f"splits: {escape(counts(d['stats']['splits']))}", highlight=False)
        console.print(f"labels: {escape(counts(d['stats']['labels']))}", highlight=False)
        print_table(handle.head(10).select(["datum_id", "split", "assets"]), title="first datums")

    emit(info, as_json, render)


SHOWN_IDS = 20
"""Datum ids ``datasets diff`` lists per change in its human output (``--json``: all)."""


def _render_diff(d: dict[str, Any]) -> None:
    console.print(
        f"[bold]{d['a']}[/] -> [bold]{d['b']}[/]: {plural(d['added'], 'datum')} added, "
        f"{d['removed']} removed, {d['changed']} changed",
        soft_wrap=True,
        highlight=False,
    )
    for what in ("added", "removed", "changed"):
        ids = d[f"{what}_ids"]
        if not ids:
            continue
        console.print(f"{what}:", highlight=False)
        for datum_id in ids[:SHOWN_IDS]:
            console.print(f"  {datum_id}", soft_wrap=True, highlight=False)
        if len(ids) > SHOWN_IDS:
            console.print(f"  … {len(ids) - SHOWN_IDS} more (--json lists all)", highlight=False)
    labels = d["labels"]
    if labels:
        render_rows(
            ["label", d["a"], d["b"], "delta"],
            [(k, v["a"], v["b"], f"{v['delta']:+d}") for k, v in labels.items()],
            title="annotation records per label",
        )


@datasets_app.command("diff")
def diff(
    a: Annotated[str, typer.Argument(help="name@version or name@tag (name alone: latest)")],
    b: Annotated[str, typer.Argument(help="name@version or name@tag (name alone: latest)")],
    lake: LakeOpt = DEFAULT_LAKE,
    option: OptionsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Datums added, removed and changed from A to B, and labels compared.

    --json gives the counts (added, removed, changed)
    and the datum ids (added_ids, removed_ids, changed_ids).
    """
    result = open_lake(lake, option).datasets.diff("@".join(_split_ref(a)), "@".join(_split_ref(b)))
    data = {
        **result.summary(),
        "added_ids": list(result.added),
        "removed_ids": list(result.removed),
        "changed_ids": list(result.changed),
    }
    emit(data, as_json, _render_diff)


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


def _render_gc(d: dict[str, Any]) -> None:
    dry = d["dry_run"]
    removed = {k: v for k, v in d["versions_removed"].items() if v}
    kept = sum(d["versions_kept"].values())
    per_table = f" ({', '.join(f'{k} {v}' for k, v in removed.items())})" if removed else ""
    verb = "removable" if dry else "removed"
    if dry:
        console.print("dry run: nothing was removed (gc --apply removes what is listed)")
    lines = [
        f"table versions: {sum(removed.values())} {verb}{per_table}, {kept} kept",
        f"payloads: {d['payloads_dead']} unreferenced {verb}"
        f" ({human_bytes(d['payload_bytes_dead'])}),"
        f" {d['payloads_live']} live ({human_bytes(d['payload_bytes_live'])})",
    ]
    if d["compacted"]:
        lines.append(f"compacted: {', '.join(d['compacted'])}")
    if dry:
        lines.append(f"lake size now: {human_bytes(d['bytes_before'])}")
    else:
        lines.append(
            f"lake size: {human_bytes(d['bytes_before'])} before,"
            f" {human_bytes(d['bytes_after'])} after"
        )
    lines.append(f"took {d['seconds']:.1f} s")
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False)


def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run/--apply", help="Only report (default) or really remove.")
    ] = True,
    grace_hours: Annotated[
        float, typer.Option(min=0, help="Keep anything younger than this many hours.")
    ] = 1.0,
    lake: LakeOpt = DEFAULT_LAKE,
    option: OptionsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Reclaim table versions and payloads nothing can read (dry run unless --apply).

    Payloads no asset references (e.g. stored by lakecore put) are garbage:
    they are removed once older than the grace period.
    A dry run's JSON has no bytes_after (bytes_before is the size now).
    """
    opened = open_lake(lake, option)
    status = (
        contextlib.nullcontext()
        if as_json
        else err_console.status("gc: looking for unreachable versions and payloads…")
    )
    with status:
        report = opened.gc(dry_run=dry_run, grace=timedelta(hours=grace_hours))
    data = report.as_dict()
    if dry_run:
        del data["bytes_after"]  # (it would only repeat bytes_before: nothing was removed)
    emit(data, as_json, _render_gc)
