"""Read-only SQL over the whole lake (DuckDB), polars frames, and dataset versions by name.

``QueryEngine(lake)`` gives ``sql``, ``sql_reader``, ``duckdb`` and ``polars``; the lake wires
them as ``lake.sql`` etc. DuckDB and polars are imported only when a query runs, so
``import lakecore`` stays light.
"""

from lakecore.query.engine import DEFAULT_MEMORY_BUDGET, QueryCore, QueryEngine, parse_size

__all__ = ["DEFAULT_MEMORY_BUDGET", "QueryCore", "QueryEngine", "parse_size"]
