"""A dataset version as a Hugging Face ``datasets.Dataset`` (byte-exact payloads).

The rows (by datum id) are streamed once into an Arrow file: payloads are read in byte-bounded
units with the same batched reader as the torch loaders, so memory stays flat. The file is
named after the version and the selection and reused: a version never changes. Payload
columns are ``binary``: ``ds[i]["image"]`` returns the exact bytes (trailing zero bytes
included). NumPy/torch formatting in ``datasets`` turns binary values into fixed-width NumPy
``S`` arrays, which drop trailing zero bytes: keep payload columns out of ``with_format``
(``columns=[...], output_all_columns=True``) or decode them yourself.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from lakecore.loaders._plan import KINDS, Filter, Plan, Source, build_plan
from lakecore.loaders._read import Reader, byte_units, ordered_prefetch, unit_sizes

__all__ = ["to_hf"]

UNIT_BYTES = 64 << 20


def _cache_dir(given: str | os.PathLike[str] | None) -> Path:
    if given is not None:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lakecore" / "hf"


def _name(plan: Plan, flt: Filter) -> str:
    doc = dict(plan.fingerprint)
    if doc.get("opaque_filter"):
        doc["filter"] = str(flt) if not callable(flt) else uuid.uuid4().hex
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()
    return f"{plan.version_id}-{digest[:16]}.arrow"


def _annotation_column(plan: Plan, unit: np.ndarray) -> pa.Array:
    ann = plan.annotations
    assert ann is not None
    starts, ends = ann.offsets[unit], ann.offsets[unit + 1]
    counts = ends - starts
    rows = (
        np.concatenate([np.arange(a, b) for a, b in zip(starts, ends, strict=True)])
        if len(unit)
        else np.zeros(0, np.int64)
    )
    records = ann.columns.take(pa.array(rows, pa.int64())).combine_chunks()
    struct_type = pa.struct(list(ann.columns.schema))
    values = (
        records.to_struct_array().combine_chunks()
        if records.num_rows
        else (pa.array([], struct_type))
    )
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _batch(plan: Plan, reader: Reader, unit: np.ndarray, schema: pa.Schema) -> pa.RecordBatch:
    take = pa.array(unit, pa.int64())
    cols: dict[str, pa.Array] = {
        "datum_id": plan.ids.take(take),
        "split": plan.splits.take(take),
        "metadata": plan.metadata.take(take),
    }
    for role in plan.roles:
        cols[role] = pa.array(reader.read(plan.locations[role], unit), pa.large_binary())
    if plan.annotations is not None:
        if not plan.label_only:
            cols["annotations"] = _annotation_column(plan, unit)
        if "classification" in plan.annotations.kinds:
            ann = plan.annotations
            first = np.full(len(unit), -1, dtype=np.int64)
            code = KINDS.index("classification")
            for j, p in enumerate(unit.tolist()):
                lo, hi = int(ann.offsets[p]), int(ann.offsets[p + 1])
                hit = np.flatnonzero(ann.kind[lo:hi] == code)
                if len(hit):
                    first[j] = ann.label[lo + hit[0]]
            cols["label"] = pa.array(first)
    return pa.RecordBatch.from_pydict(cols, schema=schema)


def _features(plan: Plan, schema: pa.Schema) -> Any:
    import datasets

    features = datasets.Features.from_arrow_schema(schema)
    if "label" in schema.names and plan.classes:
        features["label"] = datasets.ClassLabel(names=list(plan.classes))
    return features


def _write(plan: Plan, source: Source, path: Path) -> None:
    reader = Reader(source)
    fields = [
        pa.field("datum_id", pa.string()),
        pa.field("split", pa.string()),
        pa.field("metadata", pa.string()),
        *[pa.field(role, pa.large_binary()) for role in plan.roles],
    ]
    if plan.annotations is not None:
        struct_type = pa.struct(list(plan.annotations.columns.schema))
        if not plan.label_only:
            fields.append(pa.field("annotations", pa.list_(struct_type)))
        if "classification" in plan.annotations.kinds:
            fields.append(pa.field("label", pa.int64()))
    schema = pa.schema(fields)
    features = _features(plan, schema)
    schema = features.arrow_schema
    positions = np.arange(len(plan), dtype=np.int64)
    units = byte_units(
        positions,
        unit_sizes(plan.locations, positions),
        step=1,
        max_items=8192,
        max_bytes=UNIT_BYTES,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            for batch in ordered_prefetch(
                units, lambda u: _batch(plan, reader, u, schema), prefetch=2
            ):
                writer.write_batch(batch)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def to_hf(
    handle: Any,
    *,
    roles: Sequence[str],
    annotations: bool | str | Sequence[str],
    split: str | Iterable[str] | None,
    labels: str | Iterable[str] | None,
    filter: Filter,
    cache_dir: str | os.PathLike[str] | None,
) -> Any:
    """See :func:`lakecore.loaders.to_hf`."""
    import datasets

    plan = build_plan(
        handle, roles=roles, annotations=annotations, split=split, labels=labels, filter=filter
    )
    path = _cache_dir(cache_dir) / _name(plan, filter)
    if not path.exists():
        _write(plan, Source.of(handle._core), path)
    return datasets.Dataset.from_file(str(path))
