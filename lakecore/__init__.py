"""lakecore: a columnar dataset engine for ML teams, on Lance, DuckDB and object storage.

>>> import lakecore
>>> lake = lakecore.connect("memory://readme")
>>> lake.objects.get(lake.objects.put(b"payload"))
b'payload'
"""

from lakecore.errors import LakecoreError
from lakecore.lake import Lake, connect

__version__ = "0.1.0"

__all__ = ["Lake", "LakecoreError", "__version__", "connect"]
