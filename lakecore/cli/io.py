"""``lakecore import …`` and ``lakecore export …``: Pascal VOC 2012, COCO and YOLO.

Mounted by the main app as ``import`` and ``export`` (``import_app``, ``export_app``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
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
    fail,
    open_lake,
    plural,
    progress_bar,
    writing,
)

__all__ = ["export_app", "import_app"]

import_app = typer.Typer(
    help="Import a dataset (Pascal VOC 2012, COCO, YOLO) as a dataset version.",
    no_args_is_help=True,
)
export_app = typer.Typer(
    help="Export a dataset version as Pascal VOC, COCO or YOLO files.",
    no_args_is_help=True,
)

DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="Dataset name.")]
VersionOpt = Annotated[str, typer.Option("--version", "-v", help="Dataset version to commit.")]
ExportVersionOpt = Annotated[str, typer.Option("--version", "-v", help="Version or tag to export.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Folder to write into (created).")]

_STAGES = {
    "download": "downloading",
    "scan": "reading images",
    "parse": "parsing",
    "payloads": "storing payloads",
    "commit": "committing",
    "write": "writing files",
}


@contextmanager
def _bars(as_json: bool) -> Iterator[Callable[[str, int, int | None], None] | None]:
    """A ``progress(stage, done, total)`` callback drawing one rich bar per stage."""
    if as_json:
        yield None
        return
    bar = progress_bar()
    tasks: dict[str, Any] = {}

    def update(stage: str, done: int, total: int | None) -> None:
        if not tasks:  # started with the first stage: an early error prints nothing else
            bar.start()
        if stage not in tasks:
            tasks[stage] = bar.add_task(_STAGES.get(stage, stage), total=total)
        bar.update(tasks[stage], completed=done, total=total)

    try:
        yield update
    finally:
        if tasks:
            bar.stop()


def _kinds(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no records"


def _headline(result: Any) -> str:
    """The first line of an import summary or export result, counts pluralized."""
    r = result
    if hasattr(r, "datums"):  # ImportSummary
        return (
            f"imported {r.ref}: {plural(r.datums, 'datum')}, {plural(r.assets, 'asset')} "
            f"({plural(r.images, 'image')}, {plural(r.masks, 'mask')}), "
            f"{plural(r.records, 'record')} ({_kinds(r.counts)})"
        )
    if hasattr(r, "out_dir"):  # ExportResult
        return (
            f"exported {r.ref} as {r.format} to {r.out_dir}: {plural(r.images, 'image')}, "
            f"{plural(r.files, 'file')}, {_kinds(r.records)}"
        )
    return str(r).splitlines()[0]


def _render(result: Any) -> None:
    lines = str(result).splitlines()
    console.print(f"[bold green]{escape(_headline(result))}[/]", soft_wrap=True, highlight=False)
    for line in lines[1:]:
        style = "yellow" if line.startswith("warning") else "dim"
        console.print(f"[{style}]{escape(line)}[/]", soft_wrap=True, highlight=False)


def _out_dir(out: Path) -> None:
    """Refuse an ``--out`` that exists and is not a folder."""
    if out.exists() and not out.is_dir():
        fail(f"cannot write {out}: not a directory (--out names a folder to write into)")


# -- import ------------------------------------------------------------------------------------
@import_app.command("voc")
def import_voc(
    root_dir: Annotated[
        Path, typer.Option("--root-dir", help="Folder holding VOCdevkit/VOC2012 or VOC2012.")
    ],
    split: Annotated[str, typer.Option(help="ImageSets list to import.")] = "train",
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", "-d", help="Dataset name (default pascal-voc-2012-<split>)."),
    ] = None,
    version: VersionOpt = "1.0.0",
    download: Annotated[
        bool, typer.Option(help="Download the official trainval tarball when no tree exists.")
    ] = False,
    url: Annotated[str | None, typer.Option(hidden=True, help="Tarball URL.")] = None,
    lake: LakeOpt = DEFAULT_LAKE,
    option: OptionsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import one split of Pascal VOC 2012 (boxes, class and object masks)."""
    from lakecore.importers.voc import VOC2012_URL, import_pascal_voc

    opened = open_lake(lake, option, create=True)
    with _bars(as_json) as progress:
        summary = import_pascal_voc(
            opened,
            root_dir,
            split=split,
            dataset=dataset,
            version=version,
            download=download,
            progress=progress,
            url=url or VOC2012_URL,
        )
    emit(summary.to_dict(), as_json, lambda _: _render(summary))


@import_app.command("coco")
def import_coco_cmd(
    images: Annotated[Path, typer.Option("--images", help="Image folder.")],
    dataset: DatasetOpt,
    annotations: Annotated[
        Path | None, typer.Option("--annotations", help="instances_*.json (boxes, polygons, RLE).")
    ] = None,
    keypoints: Annotated[
        Path | None, typer.Option("--keypoints", help="person_keypoints_*.json.")
    ] = None,
    captions: Annotated[Path | None, typer.Option("--captions", help="captions_*.json.")] = None,
    split: Annotated[
        str | None, typer.Option(help="Split of the datums (default: from the file name).")
    ] = None,
    version: VersionOpt = "1.0.0",
    lake: LakeOpt = DEFAULT_LAKE,
    option: OptionsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import COCO instances, keypoints and/or captions of one image folder."""
    from lakecore.importers.coco import import_coco

    opened = open_lake(lake, option, create=True)
    with _bars(as_json) as progress:
        summary = import_coco(
            opened,
            images,
            annotations,
            keypoints=keypoints,
            captions=captions,
            dataset=dataset,
            version=version,
            split=split,
            progress=progress,
        )
    summary.notes = [n.replace("pass split= to", "pass --split to") for n in summary.notes]
    emit(summary.to_dict(), as_json, lambda _: _render(summary))


@import_app.command("yolo")
def import_yolo_cmd(
    data: Annotated[Path, typer.Option("--data", help="The data yaml (names, train/val).")],
    dataset: DatasetOpt,
    split: Annotated[
        list[str] | None,
        typer.Option("--split", help="Yaml entries to import (repeatable; default all)."),
    ] = None,
    version: VersionOpt = "1.0.0",
    lake: LakeOpt = DEFAULT_LAKE,
    option: OptionsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import a YOLO (ultralytics) detection or segmentation dataset."""
    from lakecore.importers.yolo import import_yolo

    opened = open_lake(lake, option, create=True)
    with _bars(as_json) as progress:
        summary = import_yolo(
            opened, data, dataset=dataset, version=version, splits=split or None, progress=progress
        )
    emit(summary.to_dict(), as_json, lambda _: _render(summary))


# -- export ------------------------------------------------------------------------------------
@export_app.command("coco")
def export_coco_cmd(
    dataset: DatasetOpt,
    out: OutOpt,
    version: ExportVersionOpt = "latest",
    images: Annotated[bool, typer.Option(help="Also write the image files.")] = True,
    lake: LakeOpt = DEFAULT_LAKE,
    option: OptionsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export a dataset version as COCO JSON (instances, keypoints, captions) + images."""
    from lakecore.exporters.coco import export_coco

    _out_dir(out)
    opened = open_lake(lake, option)
    with _bars(as_json) as progress, writing(out):
        result = export_coco(opened, dataset, out, version, copy_images=images, progress=progress)
    emit(result.to_dict(), as_json, lambda _: _render(result))


@export_app.command("voc")
def export_voc_cmd(
    dataset: DatasetOpt,
    out: OutOpt,
    version: ExportVersionOpt = "latest",
    lake: LakeOpt = DEFAULT_LAKE,
    option: OptionsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export a dataset version as a Pascal VOC tree (XML, PNG masks, image lists)."""
    from lakecore.exporters.voc import export_pascal_voc

    _out_dir(out)
    opened = open_lake(lake, option)
    with _bars(as_json) as progress, writing(out):
        result = export_pascal_voc(opened, dataset, out, version, progress=progress)
    emit(result.to_dict(), as_json, lambda _: _render(result))


@export_app.command("yolo")
def export_yolo_cmd(
    dataset: DatasetOpt,
    out: OutOpt,
    version: ExportVersionOpt = "latest",
    task: Annotated[str, typer.Option(help="detect (boxes) or segment (polygons).")] = "detect",
    lake: LakeOpt = DEFAULT_LAKE,
    option: OptionsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export a dataset version as a YOLO dataset (data.yaml, images, labels)."""
    from lakecore.exporters.yolo import export_yolo

    if task not in ("detect", "segment"):
        raise typer.BadParameter("--task must be detect or segment")
    _out_dir(out)
    opened = open_lake(lake, option)
    with _bars(as_json) as progress, writing(out):
        result = export_yolo(
            opened,
            dataset,
            out,
            version,
            task=task,  # type: ignore[arg-type]
            progress=progress,
        )
    emit(result.to_dict(), as_json, lambda _: _render(result))
