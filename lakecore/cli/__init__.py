"""The ``lakecore`` command line."""

from lakecore.cli.main import app, main

__all__ = ["app", "main"]
