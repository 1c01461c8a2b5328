"""PyTorch datasets over a dataset version: iterable (streaming) and map-style, a sampler, a
DataLoader that keeps resumable state. See ``docs/loaders.md``.

Processes: Lance is not fork-safe, so workers must be started with ``spawn`` (or
``forkserver``). A dataset pickles to its plan (Arrow and NumPy) plus where the lake is (uri,
storage options, lake.json) and reopens the payload store in the worker; a dataset used in a
forked child raises :class:`~lakecore.errors.ConfigError` before touching Lance.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import pickle
import tempfile
import weakref
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.context import get_spawning_popen
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, get_worker_info

from lakecore.errors import ConfigError, ValidationError
from lakecore.loaders._build import SampleBuilder, collate, resolve_decoders
from lakecore.loaders._order import global_order, rank_stream, worker_share
from lakecore.loaders._plan import Plan, Source
from lakecore.loaders._read import Reader, byte_units, ordered_prefetch, unit_sizes

__all__ = ["LakeDataLoader", "LakeIterableDataset", "LakeMapDataset", "LakeSampler", "collate"]

UNIT_ITEMS = 16384
"""Most samples per read unit (one sorted pass of ranged reads per role, see ``_read``; when
payloads fall back to Lance's ``read_blobs``, its cost per blob falls with larger sorted
batches: about 20 us per 4 KiB blob at 1,024, 13 us at 8,192)."""
UNIT_BYTES = 32 << 20
"""Payload bytes per read unit; ``prefetch + 1`` units at most are in memory per process."""

_FORK_MESSAGE = (
    "a lakecore loader was used in a forked process: Lance is not fork-safe. Start DataLoader "
    "workers with multiprocessing_context='spawn' (ds.loader(...) does), or use num_workers=0"
)


def _distributed(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        pass
    elif torch.distributed.is_available() and torch.distributed.is_initialized():
        rank = torch.distributed.get_rank() if rank is None else rank
        world_size = torch.distributed.get_world_size() if world_size is None else world_size
    else:
        rank = 0 if rank is None else rank
        world_size = 1 if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValidationError(f"rank {rank} is not within 0..{world_size - 1}", field="rank")
    return rank, world_size


class _Progress:
    """Epoch, resume start and consumed count of one rank, shared with spawned workers.

    Lives in shared memory while a DataLoader spawns its workers, so ``set_epoch`` and
    ``load_state_dict`` reach persistent workers too; any other pickle carries plain values.
    """

    def __init__(self, values: Sequence[int] = (0, 0, 0)) -> None:
        self._arr: Any = mp.get_context("spawn").RawArray("q", 3)
        self._arr[:] = list(values)

    def __getstate__(self) -> dict[str, Any]:
        if get_spawning_popen() is not None:
            return {"arr": self._arr}
        return {"values": list(self._arr)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._arr = state["arr"] if "arr" in state else list(state["values"])

    epoch = property(lambda self: int(self._arr[0]))
    start = property(lambda self: int(self._arr[1]))
    consumed = property(lambda self: int(self._arr[2]))

    def set(
        self, epoch: int | None = None, start: int | None = None, consumed: int | None = None
    ) -> None:
        if epoch is not None:
            self._arr[0] = epoch
        if start is not None:
            self._arr[1] = start
        if consumed is not None:
            self._arr[2] = consumed


class _Resumable:
    """Order, sharding and resume shared by the iterable dataset and the sampler."""

    _n: int
    shuffle: bool
    seed: int
    rank: int
    world_size: int
    drop_last: bool
    _progress: _Progress
    _chunk: int
    _version_id: str

    def _multiple(self) -> int:
        return self._chunk

    def rank_total(self) -> int:
        """Samples this rank visits in a full epoch."""
        n, world = self._n, self.world_size
        if self.drop_last:
            per = n // world
            return per - per % max(self._multiple(), 1)
        return len(range(self.rank, n, world))

    def rank_positions(self, epoch: int | None = None) -> np.ndarray:
        """Base positions this rank visits in epoch ``epoch`` (default: the current), in order."""
        epoch = self._progress.epoch if epoch is None else epoch
        order = global_order(self._n, seed=self.seed, epoch=epoch, shuffle=self.shuffle)
        return rank_stream(
            order,
            rank=self.rank,
            world=self.world_size,
            drop_last=self.drop_last,
            multiple=self._multiple(),
        )

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next iteration follows (a pending resume point of
        the same epoch is kept)."""
        if epoch < 0:
            raise ValidationError("epoch must be >= 0", field="epoch")
        if epoch != self._progress.epoch:
            self._progress.set(epoch=epoch, start=0, consumed=0)

    def state_dict(self, consumed: int | None = None) -> dict[str, Any]:
        """Where this rank is: ``{"epoch", "consumed", ...}``; after a complete epoch, the start
        of the next one. ``consumed`` overrides the count (a loop counting samples itself)."""
        prog = self._progress
        done = prog.consumed if consumed is None else int(consumed)
        epoch = prog.epoch
        if done >= self.rank_total():
            epoch, done = epoch + 1, 0
        return {
            "version_id": self._version_id,
            "epoch": epoch,
            "consumed": done,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "rank": self.rank,
            "world_size": self.world_size,
            "samples": self._n,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``: the next iteration yields exactly the samples not yet seen."""
        expected = {
            "version_id": self._version_id,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "world_size": self.world_size,
            "samples": self._n,
        }
        for key, value in expected.items():
            if key in state and state[key] != value:
                raise ConfigError(
                    f"cannot resume: the state has {key}={state[key]!r}, this loader {value!r}",
                    field=key,
                )
        consumed = int(state.get("consumed", 0))
        if not 0 <= consumed <= self.rank_total():
            raise ConfigError(f"cannot resume: consumed={consumed} is out of range")
        self._progress.set(epoch=int(state["epoch"]), start=consumed, consumed=consumed)

    # hooks for whoever delivers items to the training loop (the dataset itself in-process, or
    # LakeDataLoader when workers produce them)
    def _begin(self) -> None:
        self._progress.set(consumed=self._progress.start)

    def _advance(self, items: int, per_item: int) -> None:
        total = self.rank_total()
        self._progress.set(consumed=min(self._progress.consumed + items * per_item, total))

    def _finish(self) -> None:
        self._progress.set(start=0, consumed=self.rank_total())


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


class _Owned:
    """What both datasets share: the plan, its per-process reader, pickling for worker
    processes, and refusal of forked copies.

    A spawned worker receives its pickled dataset through a pipe that the parent writes while
    the child is still importing: a pickle larger than the pipe buffer (64 KiB) makes the
    parent wait for each worker in turn, so workers would start one after another. When
    spawning, the plan therefore travels through a temporary file written once (removed with
    the dataset); any other pickle carries the plan itself.
    """

    _pid: int
    plan: Plan
    source: Source
    decoders: Any
    _reader: SampleBuilder | None
    _plan_file: str | None = None

    @property
    def classes(self) -> list[str]:
        """Class names; annotation ``labels`` index this list."""
        return self.plan.classes

    @property
    def datum_ids(self) -> list[str]:
        """Every selected datum id, sorted (map-style indices follow this order)."""
        return self.plan.ids.to_pylist()  # type: ignore[no-any-return]

    def _builder(self) -> SampleBuilder:
        if self._reader is None:  # per process: the plan's arrays and the reader, built once
            self._reader = SampleBuilder(self.plan, Reader(self.source), self.decoders)
        return self._reader

    def _check_process(self) -> None:
        if os.getpid() != self._pid:
            raise ConfigError(_FORK_MESSAGE)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_reader"] = None
        if get_spawning_popen() is not None:
            if self._plan_file is None:
                fd, path = tempfile.mkstemp(prefix="lakecore-plan-", suffix=".pickle")
                with os.fdopen(fd, "wb") as f:
                    pickle.dump(self.plan, f, protocol=pickle.HIGHEST_PROTOCOL)
                self._plan_file = path
                weakref.finalize(self, _remove, path)
            state["plan"] = None
            state["_plan_file"] = self._plan_file
        else:
            state.pop("_plan_file", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state.get("plan") is None and state.get("_plan_file"):
            with open(state["_plan_file"], "rb") as f:
                state["plan"] = pickle.load(f)
        self.__dict__.update(state)
        self._pid = os.getpid()


class LakeIterableDataset(_Resumable, _Owned, IterableDataset):  # type: ignore[type-arg]
    """A dataset version streamed as samples (or batches), in a seeded order, sharded across
    ranks and DataLoader workers, resumable mid-epoch. Made by ``to_torch``."""

    def __init__(
        self,
        plan: Plan,
        source: Source,
        *,
        decode: Any = True,
        transform: Callable[[dict[str, Any]], Any] | None = None,
        batch_size: int | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
        prefetch: int = 2,
    ) -> None:
        if batch_size is not None and batch_size < 1:
            raise ValidationError("batch_size must be >= 1", field="batch_size")
        if seed < 0:
            raise ValidationError("seed must be >= 0", field="seed")
        self.plan = plan
        self.source = source
        self.decoders = resolve_decoders(decode, plan.roles)
        self.transform = transform
        self.batch_size = batch_size
        self.collate_fn = collate_fn or collate
        self.shuffle = shuffle
        self.seed = int(seed)
        self.rank, self.world_size = _distributed(rank, world_size)
        self.drop_last = drop_last
        self.prefetch = max(int(prefetch), 0)
        self._n = len(plan)
        self._chunk = batch_size or 1
        self._version_id = plan.version_id
        self._progress = _Progress()
        self._pid = os.getpid()
        self._reader: SampleBuilder | None = None

    def __repr__(self) -> str:
        mode = f"batch_size={self.batch_size}" if self.batch_size else "samples"
        return (
            f"LakeIterableDataset({self.plan.ref!r}, {self._n} datums, {mode}, "
            f"rank {self.rank}/{self.world_size}, epoch {self._progress.epoch})"
        )

    def order(self, epoch: int | None = None) -> list[str]:
        """The datum ids this rank yields in ``epoch`` (default: the current epoch), in order."""
        return self.plan.ids.take(self.rank_positions(epoch)).to_pylist()  # type: ignore[no-any-return]

    def __len__(self) -> int:
        total = self.rank_total()
        return math.ceil(total / self.batch_size) if self.batch_size else total

    def loader(self, **kwargs: Any) -> LakeDataLoader:
        """A :class:`LakeDataLoader` over this dataset (spawn workers, resumable state)."""
        return LakeDataLoader(self, **kwargs)

    # -- iteration -----------------------------------------------------------------------------
    def _units(self, worker: int, workers: int) -> tuple[list[np.ndarray], int]:
        remaining = self.rank_positions()[self._progress.start :]
        mine = worker_share(remaining, worker=worker, workers=workers, chunk=self._chunk)
        step = self.batch_size or 1
        units = byte_units(
            mine,
            unit_sizes(self.plan.locations, mine),
            step=step,
            max_items=max(UNIT_ITEMS, step),
            max_bytes=UNIT_BYTES,
        )
        if units and len(units[0]) > step:  # a small first unit: the first batch comes fast
            units = [units[0][:step], units[0][step:], *units[1:]]
        return units, step

    def __iter__(self) -> Iterator[Any]:
        self._check_process()
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        in_process = info is None
        units, step = self._units(worker, workers)
        builder = self._builder()
        columnar = (
            self.batch_size is not None and self.transform is None and (self.collate_fn is collate)
        )

        def work(unit: np.ndarray) -> list[Any]:
            if columnar:
                return builder.batches(unit, step)
            return builder.samples(unit)

        if in_process:
            self._begin()
        for items in ordered_prefetch(units, work, prefetch=self.prefetch):
            if not columnar and self.transform is not None:
                items = [self.transform(s) for s in items]
            if not columnar and self.batch_size is not None:
                items = [
                    self.collate_fn(items[lo : lo + step]) for lo in range(0, len(items), step)
                ]
            for item in items:
                if in_process:
                    self._advance(1, step)
                yield item
        if in_process:
            self._finish()


class LakeMapDataset(_Owned, Dataset):  # type: ignore[type-arg]
    """Random access to a dataset version's samples: index ``i`` is the ``i``-th datum in
    base order (sorted by id). ``__getitems__`` reads a whole batch with one read per role.
    Pair it with :meth:`sampler` for the seeded, sharded, resumable order."""

    def __init__(
        self,
        plan: Plan,
        source: Source,
        *,
        decode: Any = True,
        transform: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self.plan = plan
        self.source = source
        self.decoders = resolve_decoders(decode, plan.roles)
        self.transform = transform
        self._pid = os.getpid()
        self._reader: SampleBuilder | None = None

    def __repr__(self) -> str:
        return f"LakeMapDataset({self.plan.ref!r}, {len(self.plan)} datums)"

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, index: int) -> Any:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        self._check_process()
        n = len(self.plan)
        unit = np.asarray(indices, dtype=np.int64).reshape(-1)
        unit = np.where(unit < 0, unit + n, unit)
        if len(unit) and (unit.min() < 0 or unit.max() >= n):
            raise IndexError(f"index out of range for {n} datums")
        samples = self._builder().samples(unit)
        if self.transform is not None:
            samples = [self.transform(s) for s in samples]
        return samples

    def sampler(
        self,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
        batch_size: int = 1,
    ) -> LakeSampler:
        """The same order, sharding and resume as the iterable dataset, as indices."""
        return LakeSampler(
            len(self.plan),
            version_id=self.plan.version_id,
            shuffle=shuffle,
            seed=seed,
            rank=rank,
            world_size=world_size,
            drop_last=drop_last,
            batch_size=batch_size,
        )

    def loader(self, **kwargs: Any) -> LakeDataLoader:
        """A :class:`LakeDataLoader` over this dataset with a :meth:`sampler`."""
        return LakeDataLoader(self, **kwargs)


class LakeSampler(_Resumable, Sampler[int]):
    """Indices of a :class:`LakeMapDataset` in the seeded order, for one rank; resumable."""

    def __init__(
        self,
        n: int,
        *,
        version_id: str = "",
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
        batch_size: int = 1,
    ) -> None:
        if seed < 0:
            raise ValidationError("seed must be >= 0", field="seed")
        self._n = n
        self._version_id = version_id
        self.shuffle = shuffle
        self.seed = int(seed)
        self.rank, self.world_size = _distributed(rank, world_size)
        self.drop_last = drop_last
        self._chunk = max(int(batch_size), 1)
        self._progress = _Progress()

    def __len__(self) -> int:
        return int(self.rank_total() - self._progress.start)

    def __iter__(self) -> Iterator[int]:
        yield from self.rank_positions()[self._progress.start :].tolist()


def _passthrough(item: Any) -> Any:
    return item


SHIP_MAX_BYTES = 64 << 10
"""Tensors up to this size leave a worker as plain bytes (see :class:`_Shipped`)."""


def _unship(data: bytearray, shape: tuple[int, ...], dtype: str) -> torch.Tensor:
    flat = np.frombuffer(data, dtype=np.dtype(dtype))
    return torch.from_numpy(flat).reshape(shape)


class _Shipped:
    """A tensor that pickles as its bytes and unpickles as a tensor.

    torch moves every tensor a worker returns into a new shared-memory segment and passes its
    file descriptor (about 1 ms per tensor whatever its size, paid in the worker); a small
    tensor (labels, small payloads) is cheaper as bytes through the worker's pipe. Larger
    tensors keep torch's shared memory, which spares the main process a copy.
    """

    __slots__ = ("tensor",)

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor

    def __reduce__(self) -> tuple[Any, ...]:
        arr = self.tensor.detach().contiguous().numpy()
        return (_unship, (bytearray(arr.data), tuple(arr.shape), arr.dtype.str))


def _ship(item: Any) -> Any:
    """Wrap the tensors of a batch (top-level values, or a list of tensors) for shipping."""
    if isinstance(item, torch.Tensor):
        ok = item.device.type == "cpu" and not item.requires_grad and item.dtype != torch.bfloat16
        return _Shipped(item) if ok and item.nbytes <= SHIP_MAX_BYTES else item
    if isinstance(item, dict):
        return {k: _ship(v) if isinstance(v, (torch.Tensor, list)) else v for k, v in item.items()}
    if type(item) is list and item and isinstance(item[0], torch.Tensor):
        return [_ship(v) for v in item]
    return item


class _ShippingCollate:
    """Collate, then (in a worker) wrap tensors so they leave as bytes."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def __call__(self, batch: Any) -> Any:
        out = self.fn(batch)
        return _ship(out) if get_worker_info() is not None else out


def _start_method(ctx: Any) -> str:
    if ctx is None:
        return "spawn"
    if isinstance(ctx, str):
        return ctx
    return str(ctx.get_start_method())


class LakeDataLoader(DataLoader):  # type: ignore[type-arg]
    """A DataLoader for lakecore datasets: spawn workers, batches in the exact order of the
    dataset's rank stream whatever ``num_workers``, and ``state_dict``/``load_state_dict``
    that count the samples delivered to the training loop.

    With a :class:`LakeIterableDataset` made with ``batch_size``, the dataset batches
    (``batch_size`` here stays None); made without, ``batch_size`` here batches samples and
    the dataset hands each worker whole batches. With a :class:`LakeMapDataset`, a
    :class:`LakeSampler` is used unless one is given.
    """

    def __init__(self, dataset: Any, batch_size: int | None = None, **kwargs: Any) -> None:
        num_workers = int(kwargs.get("num_workers", 0))
        if num_workers > 0:
            method = _start_method(kwargs.get("multiprocessing_context"))
            if method == "fork":
                raise ConfigError(_FORK_MESSAGE)
            kwargs["multiprocessing_context"] = kwargs.get("multiprocessing_context") or "spawn"
        if kwargs.get("in_order", True) is False:
            raise ConfigError("LakeDataLoader needs in_order=True (exact order and resume)")
        if kwargs.get("drop_last"):
            raise ConfigError("pass drop_last to to_torch(), where it applies across ranks")
        if isinstance(dataset, LakeIterableDataset):
            if dataset.batch_size is not None:
                if batch_size is not None:
                    raise ConfigError(
                        "the dataset batches already (to_torch(batch_size=...)): leave "
                        "batch_size of the loader at None"
                    )
                kwargs.setdefault("collate_fn", _passthrough)
            else:
                dataset._chunk = batch_size or 1
                kwargs.setdefault("collate_fn", collate if batch_size else _passthrough)
            self._progress_owner: _Resumable = dataset
            self._per_item = dataset._chunk
        elif isinstance(dataset, LakeMapDataset):
            sampler = kwargs.pop("sampler", None)
            if sampler is None:
                sampler = dataset.sampler(batch_size=batch_size or 1)
            if not isinstance(sampler, LakeSampler):
                raise ConfigError("LakeDataLoader over a LakeMapDataset needs a LakeSampler")
            sampler._chunk = batch_size or 1
            kwargs["sampler"] = sampler
            kwargs.setdefault("collate_fn", collate if batch_size else _passthrough)
            self._progress_owner = sampler
            self._per_item = batch_size or 1
        else:
            raise ConfigError(
                "LakeDataLoader takes a lakecore LakeIterableDataset or "
                "LakeMapDataset (to_torch(...))"
            )
        if num_workers > 0:
            kwargs["collate_fn"] = _ShippingCollate(kwargs["collate_fn"])
        super().__init__(dataset, batch_size=batch_size, **kwargs)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        owner = self._progress_owner
        counting = self.num_workers > 0 or isinstance(owner, LakeSampler)
        if counting:
            owner._begin()
        for item in super().__iter__():
            if counting:
                owner._advance(1, self._per_item)
            yield item
        if counting:
            owner._finish()

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch of the dataset (or sampler) this loader reads."""
        self._progress_owner.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        """Resumable state: epoch and samples delivered so far (see ``load_state_dict``)."""
        return self._progress_owner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` with exactly the samples not yet delivered, in order."""
        self._progress_owner.load_state_dict(state)
