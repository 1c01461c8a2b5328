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

    @classmethod
    def of(cls, col: Column) -> Codes:
        arr = combined(col)
        if len(arr) and arr.null_count == 0 and pc.all(pc.equal(arr, arr[0])).as_py():
            # one value (a batch of boxes, a defaulted source): a compare, no hashing
            return cls(arr.slice(0, 1), np.zeros(len(arr), dtype=np.int32))
        encoded = pc.dictionary_encode(arr)
        index = np.asarray(pc.fill_null(encoded.indices, -1).to_numpy(), dtype=np.int32)
        return cls(encoded.dictionary, index)

    def rows(self, per_value: Column | np.ndarray, *, null: bool = False) -> np.ndarray:
        """Spread a per-distinct-value mask to the rows; null rows get ``null``."""
        spread: np.ndarray = np.append(column_mask(per_value), null)[self.index]
        return spread
