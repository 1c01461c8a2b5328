"""Annotations: schemas (label spaces and rules), sets, and records added a whole batch at a time.

``add`` takes an Arrow table (or models/dicts, for convenience), validates the whole batch with
vectorized pyarrow/numpy/DuckDB checks, and appends it in one atomic commit: one bad row rejects
the batch and nothing is written. References (the set, assets, datums) are checked against the
snapshot the commit is based on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pyarrow as pa
import pydantic

from lakecore.entities._annotation_input import Records, records_table, with_ids
from lakecore.entities._base import (
    WRITE_AHEAD_ROWS,
    LakeCore,
    in_filter,
    quote,
    rows_where,
    write_ahead,
)
from lakecore.entities._checks import build_model as _model
from lakecore.entities._checks import id_array, json_object, listed, one_id
from lakecore.entities._codes import Codes
from lakecore.entities._references import check_references
from lakecore.entities._schema_rules import check_schema
from lakecore.entities._validate import Failures, check_free_labels, check_structure
from lakecore.errors import AlreadyExistsError, InUseError, NotFoundError, ValidationError
from lakecore.tables.arrow import from_arrow, to_arrow
from lakecore.tables.write import Append, Delete, Op
from schemas import AnnotationRecord, AnnotationSchema, AnnotationSet, LabelDef

if TYPE_CHECKING:
    from lakecore.catalog import Snapshot

__all__ = ["Annotations", "validate_records"]

log = logging.getLogger("lakecore.annotations")
M = TypeVar("M", bound=pydantic.BaseModel)

RECORDS, SETS, SCHEMAS = "annotation_records", "annotation_sets", "annotation_schemas"
_REFERENCED = (SETS, SCHEMAS, "assets", "datums")
_DELETE_CHUNK = 4096
_SETTINGS_CACHED = 256
"""Sets and schemas kept per lake handle, by (table, version, id): an add looks up its set and
schema (two indexed reads, ~5 ms) once per version of their tables."""


def _label(value: str | LabelDef | Mapping[str, Any]) -> LabelDef | Mapping[str, Any]:
    return {"name": value} if isinstance(value, str) else value


def validate_records(
    table: pa.Table, schema: AnnotationSchema | None, codes: dict[str, Codes] | None = None
) -> None:
    """Raise ValidationError for the lowest row of ``table`` breaking a record or schema rule.

    ``codes``: encoded columns shared with later checks of the same table (see ``Failures``).
    """
    failures = Failures(table, codes)
    check_structure(failures)
    if schema is not None:
        check_schema(failures, schema)
    else:
        check_free_labels(failures)
    failures.raise_first()


class Annotations:
    """Annotation schemas, sets and records of a lake (``lake.annotations``).

    Args:
        core: the lake (anything with ``snapshot()`` and ``commit()``).
    """

    def __init__(self, core: LakeCore) -> None:
        self._core = core
        self._lock = threading.Lock()
        self._settings: OrderedDict[tuple[str, int, str], Any] = OrderedDict()

    # -- lookups ------------------------------------------------------------------------------
    def _one(self, snap: Snapshot, table: str, key: str, value: str, model: type[M]) -> M:
        rows = rows_where(snap, table, key, [value])
        if rows.num_rows == 0:
            what = table.removesuffix("s").replace("_", " ")
            raise NotFoundError(f"no {what} with {key} {value!r}", **{key: value})
        return from_arrow(rows.slice(0, 1), model)[0]

    def _setting(self, snap: Snapshot, table: str, key: str, value: str, model: type[M]) -> M:
        """A set or schema by id, read once per version of its table (a table version never
        changes). For internal use: the model is shared, not a copy."""
        version = snap.pins.get(table)
        if version is None:
            return self._one(snap, table, key, value, model)
        at = (table, version, value)
        with self._lock:
            hit = self._settings.get(at)
            if hit is not None:
                self._settings.move_to_end(at)
        if hit is None:
            hit = self._one(snap, table, key, value, model)
            self._remember(at, hit)
        return cast(M, hit)

    def _remember(self, at: tuple[str, int, str], row: pydantic.BaseModel) -> None:
        with self._lock:
            self._settings[at] = row
            self._settings.move_to_end(at)
            while len(self._settings) > _SETTINGS_CACHED:
                self._settings.popitem(last=False)

    # -- schemas ------------------------------------------------------------------------------
    def create_schema(
        self,
        name: str,
        *,
        task_type: str,
        labels: Sequence[str | LabelDef | Mapping[str, Any]],
        allowed_kinds: Sequence[str],
        version: str = "1",
        attributes: Sequence[Any] = (),
        allow_additional_attributes: bool = False,
        allow_scores: bool = False,
        require_scores: bool = False,
        score_min: float = 0.0,
        score_max: float = 1.0,
        keypoint_names: Sequence[str] = (),
        skeleton: Sequence[tuple[int, int]] = (),
        metadata: Mapping[str, Any] | None = None,
        created_by: str | None = None,
    ) -> AnnotationSchema:
        """Create an annotation schema; ``(name, version)`` must be new.

        Args:
            name: schema name. version: schema version string (default ``"1"``).
            task_type: a ``TaskType`` value, e.g. ``"detection"``.
            labels: label names, ``LabelDef``s or dicts (``{"name": "cat", "label_id": 1}``).
            allowed_kinds: annotation kinds records may have, e.g. ``["bbox"]``.
            attributes: ``AttributeRule``s or dicts declaring record attributes.
            allow_additional_attributes: accept attributes the schema does not declare.
            allow_scores, require_scores, score_min, score_max: score rules.
            keypoint_names, skeleton: keypoint order and edges for kind ``keypoints``.
            metadata, created_by: free-form JSON object and author.

        Raises:
            ValidationError: the schema is invalid. AlreadyExistsError: name and version exist.

        Example:
            >>> s = lake.annotations.create_schema(
            ...     "coco", task_type="detection", labels=["cat", "dog"], allowed_kinds=["bbox"])
            >>> s.label_names()
            ['cat', 'dog']
        """
        schema = _model(
            AnnotationSchema,
            name=name,
            version=version,
            task_type=task_type,
            labels=[_label(lab) for lab in listed(labels, "labels")],
            allowed_kinds=listed(allowed_kinds, "allowed_kinds"),
            attributes=listed(attributes, "attributes"),
            allow_additional_attributes=allow_additional_attributes,
            allow_scores=allow_scores,
            require_scores=require_scores,
            score_min=score_min,
            score_max=score_max,
            keypoint_names=listed(keypoint_names, "keypoint_names"),
            skeleton=listed(skeleton, "skeleton"),
            metadata=json_object(metadata),
            created_by=created_by,
        )

        def build(snap: Snapshot) -> list[Op]:
            where = f"name = {quote(schema.name)} AND version = {quote(schema.version)}"
            if snap.count(SCHEMAS, filter=where):
                raise AlreadyExistsError(
                    f"annotation schema {schema.name!r} version {schema.version!r} exists "
                    "already; pick another version",
                    name=schema.name,
                    version=schema.version,
                )
            return [Append(SCHEMAS, to_arrow([schema], AnnotationSchema))]

        self._core.commit(build=build, message=f"create annotation schema {name!r} v{version}")
        return schema

    def get_schema(self, schema_id: str) -> AnnotationSchema:
        """Return the schema with this id (NotFoundError if none).

        Example:
            >>> lake.annotations.get_schema(s.schema_id).name
            'coco'
        """
        schema_id = one_id(schema_id, "schema_id")
        return self._one(self._core.snapshot(), SCHEMAS, "schema_id", schema_id, AnnotationSchema)

    def find_schema(self, name: str, version: str = "1") -> AnnotationSchema:
        """Return the schema with this name and version (NotFoundError if none).

        Example:
            >>> lake.annotations.find_schema("coco").version
            '1'
        """
        name, version = one_id(name, "name"), one_id(version, "version")
        where = f"name = {quote(name)} AND version = {quote(version)}"
        rows = self._core.snapshot().to_table(SCHEMAS, filter=where)
        if rows.num_rows == 0:
            raise NotFoundError(
                f"no annotation schema {name!r} version {version!r}", name=name, version=version
            )
        return from_arrow(rows.slice(0, 1), AnnotationSchema)[0]

    def schemas(self) -> pa.Table:
        """All annotation schemas as an Arrow table.

        Example:
            >>> lake.annotations.schemas()["name"].to_pylist()
            ['coco']
        """
        return self._core.snapshot().to_table(SCHEMAS)

    def delete_schema(self, schema_id: str) -> None:
        """Delete a schema no set uses (InUseError otherwise, NotFoundError if unknown).

        Example:
            >>> tmp = lake.annotations.create_schema(
            ...     "tmp", task_type="captioning", labels=[], allowed_kinds=["caption"])
            >>> lake.annotations.delete_schema(tmp.schema_id)
        """
        schema_id = one_id(schema_id, "schema_id")
        key = f"schema_id = {quote(schema_id)}"

        def build(snap: Snapshot) -> list[Op]:
            self._one(snap, SCHEMAS, "schema_id", schema_id, AnnotationSchema)
            users = snap.to_table(SETS, columns=["set_id"], filter=key)["set_id"].to_pylist()
            if users:
                raise InUseError(
                    f"annotation schema {schema_id!r} is used by {len(users)} "
                    f"set(s) ({users[:5]}); delete them first",
                    schema_id=schema_id,
                    sets=users[:20],
                )
            return [Delete(SCHEMAS, key)]

        self._core.commit(build=build, message=f"delete annotation schema {schema_id}")

    # -- sets ---------------------------------------------------------------------------------
    def create_set(
        self,
        name: str,
        *,
        purpose: str = "ground_truth",
        source_kind: str = "human",
        schema_id: str | None = None,
        status: str = "active",
        metadata: Mapping[str, Any] | None = None,
        created_by: str | None = None,
    ) -> AnnotationSet:
        """Create an annotation set; its records follow ``schema_id`` when given.

        Records added without ``source_kind``/``source_name`` get the set's source kind and
        name. Set names need not be unique; ``set_id`` identifies a set.

        Raises:
            ValidationError: invalid fields. NotFoundError: ``schema_id`` does not exist.

        Example:
            >>> gt = lake.annotations.create_set("gt", schema_id=s.schema_id)
            >>> gt.purpose.value
            'ground_truth'
        """
        aset = _model(
            AnnotationSet,
            name=name,
            purpose=purpose,
            source_kind=source_kind,
            schema_id=schema_id,
            status=status,
            metadata=json_object(metadata),
            created_by=created_by,
        )

        row = to_arrow([aset], AnnotationSet)

        def build(snap: Snapshot) -> list[Op]:
            if schema_id is not None:
                self._setting(snap, SCHEMAS, "schema_id", schema_id, AnnotationSchema)
            return [Append(SETS, row)]

        result = self._core.commit(build=build, message=f"create annotation set {name!r}")
        version = result.tables.get(SETS)
        if version is not None:  # the row that version holds, for the adds that follow
            self._remember((SETS, version, aset.set_id), from_arrow(row, AnnotationSet)[0])
        return aset

    def get_set(self, set_id: str) -> AnnotationSet:
        """Return the set with this id (NotFoundError if none).

        Example:
            >>> lake.annotations.get_set(gt.set_id).name
            'gt'
        """
        set_id = one_id(set_id, "set_id")
        return self._one(self._core.snapshot(), SETS, "set_id", set_id, AnnotationSet)

    def sets(self) -> pa.Table:
        """All annotation sets as an Arrow table.

        Example:
            >>> lake.annotations.sets().num_rows
            1
        """
        return self._core.snapshot().to_table(SETS)

    def delete_set(self, set_id: str) -> None:
        """Delete a set and all its records in one commit (NotFoundError if unknown).

        Example:
            >>> old = lake.annotations.create_set("old")
            >>> lake.annotations.delete_set(old.set_id)
        """
        set_id = one_id(set_id, "set_id")
        key = f"set_id = {quote(set_id)}"

        def build(snap: Snapshot) -> list[Op]:
            self._one(snap, SETS, "set_id", set_id, AnnotationSet)
            return [Delete(RECORDS, key), Delete(SETS, key)]

        self._core.commit(build=build, message=f"delete annotation set {set_id}")

    # -- records ------------------------------------------------------------------------------
    def _set_and_schema(
        self, snap: Snapshot, set_id: str
    ) -> tuple[AnnotationSet, AnnotationSchema | None]:
        aset = self._setting(snap, SETS, "set_id", set_id, AnnotationSet)
        if aset.schema_id is None:
            return aset, None
        return aset, self._setting(snap, SCHEMAS, "schema_id", aset.schema_id, AnnotationSchema)

    def add(self, set_id: str, records: Records) -> pa.Table:
        """Validate and append a batch of records to a set, atomically.

        Args:
            set_id: the set to add to.
            records: a ``pa.Table`` (or batch, or anything exporting an Arrow stream, e.g. a
                polars DataFrame) whose columns are a subset of ``annotation_records``: bbox
                etc. may be any float list type, polygon may omit ``holes`` or be bare rings
                (``list<list<float>>``, one part per ring), attributes/metadata JSON strings or
                a struct; or a sequence of ``AnnotationRecord``s or dicts (validated one by one
                by pydantic: a convenience for small batches). ``annotation_id`` and
                ``created_at`` are assigned (given values are replaced); a given ``set_id``
                must be this set's; ``source_kind``/``source_name`` default to the set's
                source kind and name; keypoints without visibility get 2 (visible) per point.

        Returns:
            The rows written, with their new ``annotation_id``s.

        Raises:
            NotFoundError: the set does not exist.
            ValidationError: a row breaks a record or schema rule, or references an unknown
                asset or datum; the message names the lowest such row and the field
                (``details["row"]``, ``details["field"]``). Nothing is committed: the
                lake reads as before (a large batch's data files, written while it was
                checked, are removed).

        Example:
            >>> rows = pa.table({"asset_id": [aid], "kind": ["bbox"], "label": ["cat"],
            ...                  "bbox": [[10.0, 20.0, 30.0, 40.0]]})
            >>> written = lake.annotations.add(gt.set_id, rows)
            >>> written["annotation_id"][0].as_py()[:4]
            'ann_'
        """
        start = time.perf_counter()
        set_id = one_id(set_id, "set_id")
        snap = self._core.snapshot()
        aset, schema = self._set_and_schema(snap, set_id)
        table = records_table(records, aset, ids=False)  # no check reads the ids
        if table.num_rows == 0:
            validate_records(table, schema)
            return table
        codes: dict[str, Codes] = {}  # each column encoded once for all checks

        def check() -> None:
            validate_records(table, schema, codes)
            check_references(snap, table, codes)

        if table.num_rows < WRITE_AHEAD_ROWS:
            check()
            op = Append(RECORDS, with_ids(table))
        else:  # make the ids and write the data files while the batch is checked
            op = write_ahead(self._core, lambda: Append(RECORDS, with_ids(table)), check)
        checked = time.perf_counter()
        base = {name: snap.pins.get(name) for name in _REFERENCED}

        def build(now: Snapshot) -> list[Op]:
            if all(now.pins.get(name) == v for name, v in base.items()):
                return []  # same table versions: what was checked still holds
            _, current = self._set_and_schema(now, set_id)
            if current != schema:
                validate_records(table, current, codes)
            check_references(now, table, codes)
            return []

        self._core.commit(
            [op],
            build=build,
            message=f"add {table.num_rows} annotation records to {set_id}",
        )
        log.debug(
            "add %d records: validated in %.3f s, written in %.3f s",
            table.num_rows,
            checked - start,
            time.perf_counter() - checked,
        )
        return op.data

    def table(self, *, columns: Sequence[str] | None = None, filter: str | None = None) -> pa.Table:
        """Read annotation records (optionally some columns, a Lance SQL ``filter``).

        Example:
            >>> lake.annotations.table(columns=["label"], filter="kind = 'bbox'").num_rows
            1
        """
        return self._core.snapshot().to_table(RECORDS, columns=columns, filter=filter)

    def records(
        self,
        *,
        set_id: str | None = None,
        asset_id: str | None = None,
        datum_id: str | None = None,
        label: str | None = None,
    ) -> pa.Table:
        """Records matching all the given equalities (each answered by a scalar index).

        Example:
            >>> lake.annotations.records(set_id=gt.set_id, label="cat").num_rows
            1
        """
        given = {"set_id": set_id, "asset_id": asset_id, "datum_id": datum_id, "label": label}
        for name, value in given.items():
            if value is not None and not isinstance(value, str):
                raise ValidationError(
                    f"{name} must be a string or None, got {type(value).__name__}", field=name
                )
        where = " AND ".join(f"{k} = {quote(v)}" for k, v in given.items() if v is not None)
        return self.table(filter=where or None)

    def get(self, annotation_id: str) -> AnnotationRecord:
        """Return one record by id (NotFoundError if none).

        Example:
            >>> lake.annotations.get(written["annotation_id"][0].as_py()).label
            'cat'
        """
        annotation_id = one_id(annotation_id, "annotation_id")
        snap = self._core.snapshot()
        return self._one(snap, RECORDS, "annotation_id", annotation_id, AnnotationRecord)

    def delete(self, annotation_ids: str | Iterable[str]) -> int:
        """Delete records by id in one commit; every id must exist (NotFoundError otherwise).

        Returns:
            The number of records deleted.

        Example:
            >>> lake.annotations.delete(written["annotation_id"])
            1
        """
        ids = list(dict.fromkeys(id_array(annotation_ids, "annotation_ids").to_pylist()))
        if not ids:
            return 0

        def build(snap: Snapshot) -> list[Op]:
            found = rows_where(snap, RECORDS, "annotation_id", ids, columns=["annotation_id"])
            missing = set(ids).difference(found["annotation_id"].to_pylist())
            if missing:
                shown = sorted(missing)[:10]
                raise NotFoundError(
                    f"{len(missing)} annotation id(s) do not exist, e.g. "
                    f"{shown}; nothing was deleted",
                    missing=shown,
                )
            return [
                Delete(RECORDS, in_filter("annotation_id", ids[i : i + _DELETE_CHUNK]))
                for i in range(0, len(ids), _DELETE_CHUNK)
            ]

        self._core.commit(build=build, message=f"delete {len(ids)} annotation records")
        return len(ids)

    def count(self, *, set_id: str | None = None) -> int:
        """Number of records (of one set, if given).

        Example:
            >>> lake.annotations.count(set_id=gt.set_id)  # after the delete above
            0
        """
        where = None if set_id is None else f"set_id = {quote(one_id(set_id, 'set_id'))}"
        return self._core.snapshot().count(RECORDS, filter=where)
