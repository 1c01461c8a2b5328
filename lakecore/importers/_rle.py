"""COCO run-length encoding through ``pycocotools.mask`` (never re-implemented here).

pycocotools' compiled module emits a numpy 2 ``DeprecationWarning`` on every call that builds
an array; the wrappers silence exactly that.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

__all__ = ["area", "compress", "decode", "encode", "polygons", "to_bbox"]


@contextmanager
def _quiet() -> Iterator[Any]:
    from pycocotools import mask as mask_utils

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        yield mask_utils


def _rle(height: int, width: int, counts: str) -> dict[str, Any]:
    return {"size": [height, width], "counts": counts.encode("ascii")}


def compress(counts: list[int], height: int, width: int) -> str:
    """Uncompressed counts (a list of run lengths) -> the compressed counts string."""
    with _quiet() as m:
        return str(
            m.frPyObjects({"size": [height, width], "counts": counts}, height, width)[
                "counts"
            ].decode("ascii")
        )


def decode(height: int, width: int, counts: str) -> np.ndarray:
    """The binary mask of a compressed RLE (raises ValueError when the RLE is invalid)."""
    with _quiet() as m:
        return np.asarray(m.decode(_rle(height, width, counts)))


def encode(mask: np.ndarray) -> str:
    """A binary mask -> the compressed counts string."""
    with _quiet() as m:
        rle = m.encode(np.asfortranarray(mask.astype(np.uint8)))
        return str(rle["counts"].decode("ascii"))


def area(height: int, width: int, counts: str) -> float:
    """Pixels set in a compressed RLE."""
    with _quiet() as m:
        return float(m.area(_rle(height, width, counts)))


def to_bbox(height: int, width: int, counts: str) -> list[float]:
    """The ``(x, y, w, h)`` box of a compressed RLE."""
    with _quiet() as m:
        return [float(v) for v in m.toBbox(_rle(height, width, counts)).tolist()]


def polygons(parts: list[list[float]], height: int, width: int) -> str:
    """Polygon parts rasterized and merged -> the compressed counts string."""
    with _quiet() as m:
        merged = m.merge(m.frPyObjects(parts, height, width))
        return str(merged["counts"].decode("ascii"))
