"""Translate fsspec / OS / botocore exceptions into lakecore's storage errors (one place)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from lakecore.errors import (
    LakecoreError,
    ObjectNotFoundError,
    PreconditionFailedError,
    StorageError,
    StoragePermissionError,
)

__all__ = ["storage_errors"]


@contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Re-raise foreign storage exceptions as lakecore errors, naming ``what`` failed."""
    try:
        yield
    except LakecoreError:
        raise
    except FileNotFoundError as exc:
        raise ObjectNotFoundError(f"{what}: not found ({exc})") from exc
    except FileExistsError as exc:
        raise PreconditionFailedError(f"{what}: already exists ({exc})") from exc
    except PermissionError as exc:
        raise StoragePermissionError(f"{what}: permission denied ({exc})") from exc
    except OSError as exc:
        raise StorageError(f"{what}: {exc}") from exc
    except Exception as exc:
        if type(exc).__module__.split(".")[0] in _CLIENT_LIBRARIES:
            raise StorageError(f"{what}: {exc}") from exc
        raise


_CLIENT_LIBRARIES = frozenset({"botocore", "aiobotocore", "aiohttp", "s3fs", "gcsfs", "adlfs"})
