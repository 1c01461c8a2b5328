"""The order a loader visits a version's datums in, and how it is split across ranks and workers.

Everything here is a pure function of integers (no torch, no I/O), so the same arguments give
the same positions on any machine:

1. **Base order**: the selected datums sorted by ``datum_id`` (byte-wise). Positions below are
   indices into it.
2. **Global order of an epoch**: with ``shuffle``, the base positions stably sorted by 64-bit keys
   ``Philox4x64-10(key=(seed, epoch)).random_raw(n)`` (NumPy's counter-based bit generator,
   whose raw stream NumPy keeps stable across versions); without, the base order.
3. **Rank stream**: rank ``r`` of ``world`` takes ``global[r::world]``. With ``drop_last`` every
   rank takes the same count, ``n // world`` rounded down to a multiple of the batch size.
4. **Resume**: a rank that consumed ``k`` samples continues with ``stream[k:]``.
5. **Workers**: the remaining stream is cut into chunks of ``chunk`` samples (the batch size);
   worker ``w`` of ``K`` takes chunks ``w, w + K, w + 2K, ...``. A DataLoader asks its workers
   round-robin and returns their batches in order, so what reaches the training loop is exactly
   the rank stream, whatever the number of workers.
"""

from __future__ import annotations

import numpy as np

__all__ = ["global_order", "rank_stream", "worker_share"]

_MAX_U64 = (1 << 64) - 1


def global_order(n: int, *, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """Base positions in the order of epoch ``epoch`` (a permutation of ``range(n)``)."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    if not (0 <= seed <= _MAX_U64 and 0 <= epoch <= _MAX_U64):
        raise ValueError("seed and epoch must be integers in 0..2**64-1")
    keys = np.random.Philox(key=np.array([seed, epoch], dtype=np.uint64)).random_raw(n)
    return np.argsort(np.asarray(keys, dtype=np.uint64), kind="stable").astype(np.int64)


def rank_stream(
    order: np.ndarray, *, rank: int, world: int, drop_last: bool, multiple: int = 1
) -> np.ndarray:
    """The part of a global order that rank ``rank`` of ``world`` visits, in order."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not within 0..{world - 1}")
    mine = order[rank::world]
    if drop_last:
        per = len(order) // world
        per -= per % max(multiple, 1)
        mine = mine[:per]
    return mine


def worker_share(stream: np.ndarray, *, worker: int, workers: int, chunk: int) -> np.ndarray:
    """The positions worker ``worker`` of ``workers`` reads: every ``workers``-th chunk."""
    if workers <= 1:
        return stream
    chunk = max(chunk, 1)
    chunk_of = np.arange(len(stream), dtype=np.int64) // chunk
    share: np.ndarray = stream[chunk_of % workers == worker]
    return share
