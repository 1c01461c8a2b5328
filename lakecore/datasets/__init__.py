"""Immutable dataset versions: DatasetBuilder, resolve, diff, reads."""

from lakecore.datasets.builder import DatasetBuilder
from lakecore.datasets.manager import DatasetDiff, Datasets
from lakecore.datasets.version import DatasetVersionHandle, Page

__all__ = ["DatasetBuilder", "DatasetDiff", "DatasetVersionHandle", "Datasets", "Page"]
