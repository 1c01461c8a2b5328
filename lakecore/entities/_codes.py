"""A batch's columns as Arrow and numpy see them: masks, contiguous arrays, distinct values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["Codes", "Column", "column_mask", "combined"]

Column: TypeAlias = pa.Array | pa.ChunkedArray


def combined(col: Column) -> pa.Array:
    """A chunked column as one contiguous array."""
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def column_mask(mask: Column | np.ndarray) -> np.ndarray:
    """A boolean Arrow (or numpy) mask as a numpy bool array; nulls count as False."""
    if isinstance(mask, np.ndarray):
        return mask.astype(bool, copy=False)
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


@dataclass(frozen=True)
class Codes:
    """A column's distinct values, and per row the position of its value (-1: null).

    Checks of a string column run on its distinct values and are spread to the rows by one
    gather: batches repeat a few kinds, labels and sources, so this replaces a hash lookup per
    row and check by one per row in all.
    """

    values: pa.Array
    index: np.ndarray
    nulls: bool = False
    """Whether some row is null (its index is -1)."""

    @classmethod
    def of(cls, col: Column) -> Codes:
        n = len(col)
        if col.null_count == n:  # an absent column: nothing to encode
            return cls(pa.array([], col.type), np.full(n, -1, dtype=np.int32), n > 0)
        # one chunk as is (combining copies it: 1M ids, 36 MB, 7-60 ms); both tests and the
        # encoding read a slice's offset
        arr = (
            col.chunk(0)
            if isinstance(col, pa.ChunkedArray) and col.num_chunks == 1
            else combined(col)
        )
        if arr.null_count == 0 and _one_value(arr):
            # one value (a batch of boxes, a defaulted source): a compare, no hashing
            return cls(arr.slice(0, 1), np.zeros(n, dtype=np.int32))
        encoded = pc.dictionary_encode(arr)
        index = np.asarray(pc.fill_null(encoded.indices, -1).to_numpy(), dtype=np.int32)
        return cls(encoded.dictionary, index, arr.null_count > 0)

    def rows(self, per_value: Column | np.ndarray, *, null: bool = False) -> np.ndarray:
        """Spread a per-distinct-value mask to the rows; null rows get ``null``."""
        mask = column_mask(per_value)
        if not mask.any() and not (null and self.nulls):  # no row can be true: no gather
            return np.zeros(len(self.index), dtype=bool)
        spread: np.ndarray = np.append(mask, null)[self.index]
        return spread


_PROBES = 17


def _one_value(arr: pa.Array) -> bool:
    """True when every value of a non-empty array without nulls equals the first.

    A few evenly spaced probes rule out most columns at once (a compare of 1M strings costs
    ~12 ms, like encoding them); plain string and binary columns are then compared as bytes.
    """
    n, first = len(arr), arr[0]
    if any(arr[int(i)] != first for i in np.linspace(0, n - 1, _PROBES)):
        return False
    if not (pa.types.is_string(arr.type) or pa.types.is_binary(arr.type)):
        return bool(pc.all(pc.equal(arr, first)).as_py())
    offsets = np.frombuffer(arr.buffers()[1], np.int32, count=n + 1, offset=arr.offset * 4)
    width = int(offsets[1] - offsets[0])
    if not np.all(np.diff(offsets) == width):
        return False
    if width == 0:
        return True
    data = np.frombuffer(arr.buffers()[2], np.uint8)[offsets[0] : offsets[n]]
    # same lengths, and every byte equals the one a value earlier: every value is the first
    return bool(np.array_equal(data[width:], data[:-width]))
