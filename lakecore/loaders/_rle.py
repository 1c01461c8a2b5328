"""Decode COCO compressed RLE masks: pycocotools when installed, else a vectorized NumPy decoder.

COCO's compressed counts string packs each run length in groups of 5 bits per character
(offset 48, bit 0x20 = another character follows, bit 0x10 of the last character = negative),
and from the fourth run on a run is stored as the difference to the run two places before it.
Runs alternate 0, 1, 0, ... and fill the mask column by column (Fortran order).
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["decode_rle", "decode_rle_numpy", "rle_counts"]

try:  # pragma: no cover - depends on the environment
    from pycocotools import mask as _coco_mask
except ImportError:  # pragma: no cover
    _coco_mask = None


def rle_counts(counts: str | bytes) -> np.ndarray:
    """The run lengths (int64) of a COCO compressed counts string."""
    raw = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    if not raw:
        return np.zeros(0, dtype=np.int64)
    v = np.frombuffer(raw, dtype=np.uint8).astype(np.int64) - 48
    if v.min() < 0 or v.max() > 63:
        raise ValueError("not a COCO compressed RLE string (characters must be in '0'..'o')")
    last = (v & 0x20) == 0  # the last character of each group
    if not last[-1]:
        raise ValueError("truncated COCO compressed RLE string")
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    group = np.repeat(np.arange(len(starts)), ends - starts + 1)
    shift = 5 * (np.arange(len(v)) - starts[group])
    x = np.add.reduceat((v & 0x1F) << shift, starts)
    length = ends - starts + 1
    negative = (v[ends] & 0x10) != 0
    x = np.where(negative, x - (np.int64(1) << (5 * length)), x)
    out = x.copy()
    if len(x) > 3:  # run m >= 3 is stored relative to run m - 2
        out[1::2] = np.cumsum(x[1::2])
        out[2::2] = np.cumsum(x[2::2])
    return out


def decode_rle_numpy(height: int, width: int, counts: str | bytes) -> np.ndarray:
    """The ``(height, width)`` uint8 0/1 mask of a compressed RLE, without pycocotools."""
    runs = rle_counts(counts)
    if (runs < 0).any() or int(runs.sum()) != height * width:
        raise ValueError(f"RLE runs sum to {int(runs.sum())} pixels, the mask has {height}x{width}")
    values = (np.arange(len(runs)) % 2).astype(np.uint8)
    return np.repeat(values, runs).reshape(width, height).T


def decode_rle(height: int, width: int, counts: str | bytes) -> np.ndarray:
    """The ``(height, width)`` uint8 0/1 mask of a compressed RLE (pycocotools if installed)."""
    if _coco_mask is None:
        return decode_rle_numpy(height, width, counts)
    raw = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    with warnings.catch_warnings():  # pycocotools warns under numpy 2 on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        return np.asarray(_coco_mask.decode({"size": [height, width], "counts": raw}))
