"""lakecore benchmarks: ``python -m bench <scenario> --size N`` (side by side, ratios, JSON)."""
