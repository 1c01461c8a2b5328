"""Importers: Pascal VOC 2012, COCO and YOLO trees -> assets, datums, records, a dataset version.

Every importer parses and checks its whole input before writing, then writes the payloads,
commits assets, datums, the annotation schema, set and records in one commit, and commits the
dataset version last (see :mod:`lakecore.importers._common`).
"""

from lakecore.importers._common import ImportProgress, ImportSummary, Issue
from lakecore.importers.coco import import_coco
from lakecore.importers.voc import VOC2012_URL, VOC_CLASSES, import_pascal_voc
from lakecore.importers.yolo import import_yolo

__all__ = [
    "VOC2012_URL",
    "VOC_CLASSES",
    "ImportProgress",
    "ImportSummary",
    "Issue",
    "import_coco",
    "import_pascal_voc",
    "import_yolo",
]
