"""``lake.datasets``: build, resolve, list, tag and diff immutable dataset versions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lakecore.datasets.builder import DatasetBuilder
from lakecore.datasets.version import DatasetVersionHandle
from lakecore.entities._base import LakeCore, quote
from lakecore.entities._checks import build_model as _model
from lakecore.entities._checks import one_id
from lakecore.errors import ValidationError, VersionNotFoundError
from lakecore.tables import Append, from_arrow, to_arrow
from schemas import DatasetTag, DatasetVersion

__all__ = ["DatasetDiff", "Datasets"]

LATEST = "latest"


@dataclass
class DatasetDiff:
    """What changed from version ``a`` to version ``b``."""

    a: str
    b: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    labels: dict[str, tuple[int, int]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Counts, and per label (count in a, count in b, delta)."""
        return {
            "a": self.a,
            "b": self.b,
            "added": len(self.added),
            "removed": len(self.removed),
            "changed": len(self.changed),
            "labels": {k: {"a": x, "b": y, "delta": y - x} for k, (x, y) in self.labels.items()},
        }


class Datasets:
    """Immutable dataset versions of one lake."""

    def __init__(self, core: LakeCore) -> None:
        self._core = core

    # -- building ------------------------------------------------------------------------------
    def builder(
        self, name: str, *, parent: str | DatasetVersionHandle | None = None
    ) -> DatasetBuilder:
        """Start a change set for dataset ``name``.

        Args:
            name: the dataset to commit a version of.
            parent: ``None`` (start empty), a version or tag of ``name`` (``"latest"``,
                ``"1.0.0"``, ``"prod"``), another dataset's ``"other@1.0"``, or a handle.
        """
        _model(
            DatasetVersion, dataset_name=one_id(name, "name"), version="probe", catalog_version=0
        )
        if parent is None or isinstance(parent, DatasetVersionHandle):
            return DatasetBuilder(self._core, name, parent)
        other, _, ver = one_id(parent, "parent").rpartition("@")
        return DatasetBuilder(self._core, name, self.get(other or name, ver))

    # -- resolving -----------------------------------------------------------------------------
    def _records(self, name: str | None = None) -> pa.Table:
        flt = f"dataset_name = {quote(one_id(name, 'name'))}" if name is not None else None
        table = self._core.snapshot().to_table("dataset_versions", filter=flt)
        return table.sort_by([("catalog_version", "ascending")])

    def _tag_events(self, name: str) -> pa.Table:
        table = self._core.snapshot().to_table(
            "dataset_tags", filter=f"dataset_name = {quote(one_id(name, 'name'))}"
        )
        return table.sort_by([("at", "ascending")])

    def tags(self, name: str) -> dict[str, str]:
        """Current tags of a dataset: tag -> version string."""
        events = self._tag_events(name)
        # events are oldest first and dict() keeps the last value per tag
        current = dict(
            zip(events["tag"].to_pylist(), events["version_id"].to_pylist(), strict=True)
        )
        records = self._records(name)
        by_id = dict(
            zip(records["version_id"].to_pylist(), records["version"].to_pylist(), strict=True)
        )
        return {t: by_id[v] for t, v in current.items() if v is not None and v in by_id}

    def get(self, name: str, version: str = LATEST) -> DatasetVersionHandle:
        """Resolve ``name`` at a version string, a tag, or ``"latest"``.

        Raises:
            VersionNotFoundError: no such dataset, version or tag.
        """
        one_id(version, "version")
        records = self._records(name)
        if records.num_rows == 0:
            raise VersionNotFoundError(f"no dataset named {name!r}", dataset=name)
        if version == LATEST:
            row = records.slice(records.num_rows - 1)
        else:
            row = records.filter(pc.equal(records["version"], version))
            if row.num_rows == 0:
                tagged = self.tags(name).get(version)
                if tagged is None:
                    known = records["version"].to_pylist()[-10:]
                    raise VersionNotFoundError(
                        f"{name}@{version} does not exist (no such version or tag); "
                        f"versions: {known}",
                        dataset=name,
                        version=version,
                    )
                row = records.filter(pc.equal(records["version"], tagged))
        return DatasetVersionHandle(self._core, from_arrow(row, DatasetVersion)[0])

    def exists(self, name: str, version: str) -> bool:
        """True when ``name@version`` resolves (version string, tag or latest)."""
        try:
            self.get(name, version)
        except VersionNotFoundError:
            return False
        return True

    # -- listing -------------------------------------------------------------------------------
    def list(self) -> pa.Table:
        """One row per dataset: name, versions, latest version, its datum count and time."""
        records = self._records()
        if records.num_rows == 0:
            return pa.table(
                {
                    "dataset_name": pa.array([], pa.string()),
                    "versions": pa.array([], pa.int64()),
                    "latest": pa.array([], pa.string()),
                    "datum_count": pa.array([], pa.int64()),
                    "created_at": pa.array([], records.schema.field("created_at").type),
                }
            )
        grouped = records.group_by("dataset_name", use_threads=False).aggregate(
            [
                ("version", "count"),
                ("version", "last"),
                ("datum_count", "last"),
                ("created_at", "last"),
            ]
        )
        return pa.table(
            {
                "dataset_name": grouped["dataset_name"],
                "versions": grouped["version_count"],
                "latest": grouped["version_last"],
                "datum_count": grouped["datum_count_last"],
                "created_at": grouped["created_at_last"],
            }
        ).sort_by("dataset_name")

    def versions(self, name: str) -> pa.Table:
        """Every version of a dataset, oldest first."""
        return self._records(name).select(
            [
                "version",
                "version_id",
                "parent_version_id",
                "datum_count",
                "message",
                "author",
                "created_at",
                "catalog_version",
            ]
        )

    def history(self, name: str) -> pa.Table:
        """Commits and tag moves of a dataset, oldest first: (at, event, version, tag, by)."""
        records = self._records(name)
        events = self._tag_events(name)
        by_id = dict(
            zip(records["version_id"].to_pylist(), records["version"].to_pylist(), strict=True)
        )
        rows = [
            {"at": at, "event": "commit", "version": v, "tag": None, "by": by}
            for at, v, by in zip(
                records["created_at"].to_pylist(),
                records["version"].to_pylist(),
                records["author"].to_pylist(),
                strict=True,
            )
        ]
        rows += [
            {
                "at": at,
                "event": "tag" if vid else "untag",
                "version": by_id.get(vid),
                "tag": tag,
                "by": by,
            }
            for at, tag, vid, by in zip(
                events["at"].to_pylist(),
                events["tag"].to_pylist(),
                events["version_id"].to_pylist(),
                events["by"].to_pylist(),
                strict=True,
            )
        ]
        rows.sort(key=lambda r: r["at"])
        schema = pa.schema(
            [
                ("at", pa.timestamp("us", tz="UTC")),
                ("event", pa.string()),
                ("version", pa.string()),
                ("tag", pa.string()),
                ("by", pa.string()),
            ]
        )
        return pa.Table.from_pylist(rows, schema=schema)

    # -- tags ----------------------------------------------------------------------------------
    def tag(self, name: str, tag: str, version: str, *, by: str | None = None) -> DatasetTag:
        """Point ``tag`` (e.g. ``prod``) at a version; re-pointing keeps the history."""
        event = _model(DatasetTag, dataset_name=one_id(name, "name"), tag=tag, by=by)
        target = self.get(name, version)
        event = event.model_copy(update={"version_id": target.record.version_id})
        self._check_tag(name, tag)
        self._core.commit(
            [Append("dataset_tags", to_arrow([event], DatasetTag))],
            message=f"tag {name}:{tag} -> {target.version}",
        )
        return event

    def untag(self, name: str, tag: str, *, by: str | None = None) -> None:
        """Remove a tag (recorded in the history)."""
        event = _model(DatasetTag, dataset_name=one_id(name, "name"), tag=tag, by=by)
        if tag not in self.tags(name):
            raise VersionNotFoundError(f"{name} has no tag {tag!r}", dataset=name, tag=tag)
        self._core.commit(
            [Append("dataset_tags", to_arrow([event], DatasetTag))], message=f"untag {name}:{tag}"
        )

    def _check_tag(self, name: str, tag: str) -> None:
        records = self._records(name)
        if tag in records["version"].to_pylist():
            raise ValidationError(
                f"{tag!r} is a version of {name}; a tag needs another name", field="tag"
            )

    # -- diff ----------------------------------------------------------------------------------
    def diff(self, a: str | DatasetVersionHandle, b: str | DatasetVersionHandle) -> DatasetDiff:
        """Datums added, removed and changed from ``a`` to ``b``, and label counts of both.

        ``a``/``b`` are handles or ``"name@version"`` strings.
        """
        va, vb = self._handle(a, "a"), self._handle(b, "b")
        cols = ["datum_id", "split", "assets", "metadata"]
        ta, tb = va.to_arrow(columns=cols), vb.to_arrow(columns=cols)
        in_a = pc.is_in(tb["datum_id"], value_set=ta["datum_id"])
        added = tb["datum_id"].filter(pc.invert(in_a)).to_pylist()
        removed = (
            ta["datum_id"]
            .filter(pc.invert(pc.is_in(ta["datum_id"], value_set=tb["datum_id"])))
            .to_pylist()
        )
        both = tb.filter(in_a)
        old = ta.take(pc.index_in(both["datum_id"], value_set=ta["datum_id"]))
        same = pc.equal(_row_key(old), _row_key(both))
        changed = set(both["datum_id"].filter(pc.invert(same)).to_pylist())
        la, lb = va.stats()["labels"], vb.stats()["labels"]
        labels = {k: (la.get(k, 0), lb.get(k, 0)) for k in sorted(set(la) | set(lb))}
        # datums whose annotation records were added or removed between the two versions
        cols = ["annotation_id", "datum_id"]
        ra, rb = va.annotations(columns=cols), vb.annotations(columns=cols)
        ka, kb = (
            pc.binary_join_element_wise(t["datum_id"], t["annotation_id"], "/") for t in (ra, rb)
        )
        only_a = ra["datum_id"].filter(pc.invert(pc.is_in(ka, value_set=kb)))
        only_b = rb["datum_id"].filter(pc.invert(pc.is_in(kb, value_set=ka)))
        touched = set(only_a.drop_null().to_pylist()) | set(only_b.drop_null().to_pylist())
        changed |= touched - set(added) - set(removed)
        return DatasetDiff(va.ref, vb.ref, added, removed, sorted(changed), labels)

    def _handle(self, ref: str | DatasetVersionHandle, field: str) -> DatasetVersionHandle:
        if isinstance(ref, DatasetVersionHandle):
            return ref
        if not isinstance(ref, str) or "@" not in ref:
            raise ValidationError(
                f"{field}: expected a version handle or a 'name@version' string, got {ref!r}",
                field=field,
            )
        name, _, version = ref.rpartition("@")
        return self.get(name, version)


def _row_key(table: pa.Table) -> pa.Array:
    """A string per row that changes whenever split, roles or metadata change."""
    roles = pc.cast(
        table["assets"], pa.list_(pa.struct([("key", pa.string()), ("value", pa.string())]))
    )
    flat = pc.binary_join_element_wise(
        pc.fill_null(table["split"], "\x00"),
        pc.fill_null(table["metadata"], "\x00"),
        pc.fill_null(pc.cast(pc.list_value_length(roles), pa.string()), "0"),
        "\x1f",
    )
    return pc.binary_join_element_wise(flat, _roles_text(roles), "\x1f")


def _roles_text(roles: pa.ChunkedArray) -> pa.Array:
    arr = roles.combine_chunks() if isinstance(roles, pa.ChunkedArray) else roles
    flat = arr.flatten()
    pairs = pc.binary_join_element_wise(flat.field("key"), flat.field("value"), "=")
    lists = pa.ListArray.from_arrays(arr.offsets, pairs)
    return pc.binary_join(lists, ";")
