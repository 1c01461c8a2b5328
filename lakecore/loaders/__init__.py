"""Training dataloaders: stream a dataset version into PyTorch or Hugging Face ``datasets``.

``to_torch(version, ...)`` returns a ``torch.utils.data.IterableDataset`` (or, with
``map_style=True``, a map-style ``Dataset``) whose order is a pure function of the version,
the selection, ``seed`` and the epoch; it is sharded exactly once across ranks and DataLoader
workers and resumes mid-epoch. ``to_hf(version, ...)`` returns a ``datasets.Dataset`` with
byte-exact payloads. torch and datasets are imported only when these are called (extras
``lakecore[torch]`` and ``lakecore[hf]``). See ``docs/loaders.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from lakecore.errors import NotInstalledError
from lakecore.loaders._order import global_order, rank_stream, worker_share
from lakecore.loaders._plan import Filter, Plan, Source, build_plan

if TYPE_CHECKING:
    import datasets

    from lakecore.loaders._torch import LakeIterableDataset, LakeMapDataset

__all__ = [
    "Plan",
    "global_order",
    "rank_stream",
    "to_hf",
    "to_torch",
    "worker_share",
]


def _need_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise NotInstalledError(
            "to_torch needs PyTorch: pip install 'lakecore[torch]'", extra="torch"
        ) from exc


def to_torch(
    handle: Any,
    *,
    roles: str | Sequence[str] = ("image",),
    decode: Any = True,
    transform: Callable[[dict[str, Any]], Any] | None = None,
    annotations: bool | str | Sequence[str] = True,
    batch_size: int | None = None,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    shuffle: bool = True,
    seed: int = 0,
    rank: int | None = None,
    world_size: int | None = None,
    drop_last: bool = False,
    split: str | Iterable[str] | None = None,
    labels: str | Iterable[str] | None = None,
    filter: Filter = None,
    classes: Sequence[str] | None = None,
    prefetch: int = 2,
    map_style: bool = False,
) -> LakeIterableDataset | LakeMapDataset:
    """A PyTorch dataset over a dataset version (``version.to_torch(...)``).

    Args:
        handle: the dataset version (``lake.datasets.get(name, version)``).
        roles: the datum roles whose payloads each sample carries.
        decode: ``False`` (bytes), ``True``/``"pil"`` (a loaded PIL image), ``"tensor"``
            (uint8 CHW tensor), ``"uint8"`` (the raw bytes as a 1-D uint8 tensor), a callable
            ``fn(bytes)``, or a dict role -> any of these.
        transform: ``fn(sample) -> sample`` applied in order after decoding.
        annotations: attach the version's annotation records (True), none (False), only
            these kinds (``["bbox", "mask"]``), or ``"label"``: no annotation dicts, only
            ``label``, the class of each datum's first classification record (the cheap path
            for image classification).
        batch_size: yield collated batches of this size (else single samples).
        collate_fn: how batches are made (default :func:`collate`).
        shuffle, seed: the order of epoch ``e`` is a seeded permutation of the selection
            sorted by datum id, keyed by ``(seed, e)`` (see ``set_epoch``); no shuffle: by id.
        rank, world_size: this process's share (default: torch.distributed when initialised).
        drop_last: every rank gets the same number of samples (whole batches).
        split, labels, filter: stream a subset: splits, datums with a record of these labels,
            a predicate on datum columns (Lance SQL string, Arrow expression or
            ``fn(table) -> mask``).
        classes: class names that ``labels`` index (default: the annotation schemas' labels).
        prefetch: read units (up to 16,384 samples or 32 MiB each) read ahead on threads.
        map_style: return a map-style dataset (random access) instead; order, sharding and
            resume then come from its ``sampler(seed=, rank=, world_size=, drop_last=)``, and
            ``batch_size``/``collate_fn`` from the DataLoader (``ds.loader(batch_size=...)``).

    Returns:
        A ``LakeIterableDataset`` (``set_epoch``, ``state_dict``/``load_state_dict``,
        ``order(epoch)``, ``classes``, ``loader(**DataLoader kwargs)``) or, with
        ``map_style``, a ``LakeMapDataset``.

    Raises:
        NotInstalledError: PyTorch is not installed.
    """
    _need_torch()
    from lakecore.loaders._torch import LakeIterableDataset, LakeMapDataset

    plan = build_plan(
        handle,
        roles=(roles,) if isinstance(roles, str) else roles,
        annotations=annotations,
        split=split,
        labels=labels,
        filter=filter,
        classes=classes,
    )
    source = Source.of(handle._core)
    if map_style:
        return LakeMapDataset(plan, source, decode=decode, transform=transform)
    return LakeIterableDataset(
        plan,
        source,
        decode=decode,
        transform=transform,
        batch_size=batch_size,
        collate_fn=collate_fn,
        shuffle=shuffle,
        seed=seed,
        rank=rank,
        world_size=world_size,
        drop_last=drop_last,
        prefetch=prefetch,
    )


def to_hf(
    handle: Any,
    *,
    roles: str | Sequence[str] = ("image",),
    annotations: bool | str | Sequence[str] = True,
    split: str | Iterable[str] | None = None,
    labels: str | Iterable[str] | None = None,
    filter: Filter = None,
    cache_dir: str | None = None,
) -> datasets.Dataset:
    """A Hugging Face ``datasets.Dataset`` of a dataset version (``version.to_hf(...)``).

    One row per datum, by datum id: ``datum_id, split, metadata`` (JSON), one binary column
    per role holding the payload bytes exactly, and ``annotations`` (a list of records). The
    rows are written once to an Arrow file under ``cache_dir`` (memory-mapped, reused: a
    version never changes).

    Raises:
        NotInstalledError: ``datasets`` is not installed.
    """
    try:
        import datasets  # noqa: F401
    except ImportError as exc:
        raise NotInstalledError(
            "to_hf needs Hugging Face datasets: pip install 'lakecore[hf]'", extra="hf"
        ) from exc
    from lakecore.loaders._hf import to_hf as _to_hf

    return _to_hf(
        handle,
        roles=(roles,) if isinstance(roles, str) else roles,
        annotations=annotations,
        split=split,
        labels=labels,
        filter=filter,
        cache_dir=cache_dir,
    )


def __getattr__(name: str) -> Any:
    """Torch-backed names (``LakeIterableDataset``, ``collate``, ...) load on first use."""
    if name in {
        "LakeIterableDataset",
        "LakeMapDataset",
        "LakeSampler",
        "LakeDataLoader",
        "collate",
    }:
        _need_torch()
        from lakecore.loaders import _torch

        return getattr(_torch, name)
    raise AttributeError(f"module 'lakecore.loaders' has no attribute {name!r}")
