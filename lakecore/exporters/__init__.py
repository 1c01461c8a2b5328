"""Exporters: a committed dataset version -> Pascal VOC, COCO or YOLO files in a local folder.

Each returns an :class:`ExportResult` whose warnings count what the target format cannot hold
(nothing is dropped silently).
"""

from lakecore.exporters._common import ExportProgress, ExportResult
from lakecore.exporters.coco import export_coco
from lakecore.exporters.voc import export_pascal_voc
from lakecore.exporters.yolo import export_yolo

__all__ = ["ExportProgress", "ExportResult", "export_coco", "export_pascal_voc", "export_yolo"]
