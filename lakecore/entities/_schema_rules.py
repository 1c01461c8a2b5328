"""Vectorized checks of annotation records against their set's :class:`AnnotationSchema`."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakecore.entities._json import JsonView
from lakecore.entities._validate import Failures, caption_rows, column_mask, show
from schemas import AnnotationSchema, AttributeRule, AttributeType

__all__ = ["check_schema"]

_JSON_TYPES = {  # attribute type -> accepted DuckDB JSON types
    AttributeType.STRING: ("VARCHAR",),
    AttributeType.ENUM: ("VARCHAR",),
    AttributeType.INT: ("BIGINT", "UBIGINT"),
    AttributeType.FLOAT: ("BIGINT", "UBIGINT", "DOUBLE"),
    AttributeType.BOOL: ("BOOLEAN",),
}


def _name(schema: AnnotationSchema) -> str:
    return f"schema {schema.name!r} v{schema.version}"


def _listing(values: list[str], limit: int = 12) -> str:
    shown = ", ".join(values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def check_schema(f: Failures, schema: AnnotationSchema) -> None:
    """Flag rows breaking the schema's kinds, labels, scores, keypoints and attribute rules."""
    t = f.table
    kinds = [k.value for k in schema.allowed_kinds]
    codes = f.codes("kind")
    f.flag(
        codes.rows(pc.invert(pc.is_in(codes.values, pa.array(kinds))), null=True),
        "kind",
        lambda r: (
            f"kind {show(f.value('kind', r))} is not allowed by {_name(schema)} "
            f"(allowed: {_listing(kinds)})"
        ),
    )
    _check_labels(f, schema)
    _check_scores(f, schema)
    if schema.keypoint_names:
        want = len(schema.keypoint_names)
        npts = pc.divide(pc.list_value_length(t["keypoints"]), 2)
        f.flag(
            pc.not_equal(npts, want),
            "keypoints",
            lambda r: (
                f"has {len(f.value('keypoints', r)) // 2} point(s) but {_name(schema)} "
                f"names {want} keypoints ({_listing(schema.keypoint_names)})"
            ),
        )
    _check_attributes(f, schema)


def _check_labels(f: Failures, schema: AnnotationSchema) -> None:
    if not schema.labels:
        return  # a schema without labels does not restrict them
    t = f.table
    names = pa.array(schema.label_names(), pa.string())
    labels = f.codes("label")
    empty_caption = caption_rows(f) & labels.rows(pc.equal(labels.values, ""))
    unknown = labels.rows(pc.invert(pc.is_in(labels.values, names))) & ~empty_caption
    f.flag(
        unknown,
        "label",
        lambda r: (
            f"label {show(f.value('label', r))} is not in "
            f"{_name(schema)} (labels: {_listing(names.to_pylist())})"
        ),
    )
    given = t["label_id"]
    if given.null_count == f.n:
        return  # no label_id given: nothing to compare
    # the id of each row's label, gathered from its distinct labels; ``known``: the label is in
    # the schema and has an id (ids may be any int32, -1 included)
    ids = np.array([lab.label_id or 0 for lab in schema.labels] + [0], dtype=np.int64)
    has = np.array([lab.label_id is not None for lab in schema.labels] + [False])
    position = np.asarray(pc.fill_null(pc.index_in(labels.values, names), -1).to_numpy(), np.int64)
    expected = np.append(ids[position], 0)[labels.index]
    known = np.append(has[position], False)[labels.index]
    have = np.asarray(pc.fill_null(given, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    f.flag(
        column_mask(given.is_valid()) & known & (have != expected),
        "label_id",
        lambda r: (
            f"label_id {f.value('label_id', r)} differs from the id of label "
            f"{show(f.value('label', r))} in {_name(schema)} ({int(expected[r])})"
        ),
    )


def _check_scores(f: Failures, schema: AnnotationSchema) -> None:
    score = f.table["score"]
    if not schema.allow_scores:
        f.flag(
            score.is_valid(),
            "score",
            lambda r: (
                f"{_name(schema)} does not allow scores "
                f"(got {f.value('score', r)}); drop the score or use a schema with "
                "allow_scores=True"
            ),
        )
        return
    if schema.require_scores:
        f.flag(score.is_null(), "score", lambda r: f"{_name(schema)} requires a score")
    lo, hi = schema.score_min, schema.score_max
    out = pc.or_(
        pc.less(score, pa.scalar(lo, pa.float32())), pc.greater(score, pa.scalar(hi, pa.float32()))
    )
    f.flag(
        out,
        "score",
        lambda r: f"score {f.value('score', r)} is outside [{lo}, {hi}] of {_name(schema)}",
    )


def _check_attributes(f: Failures, schema: AnnotationSchema) -> None:
    rules = schema.attributes
    column = f.json("attributes")
    if column.trivial and not any(a.required for a in rules):
        return
    names = [a.name for a in rules]
    enums = [a.name for a in rules if a.type is AttributeType.ENUM]
    view = column.inspect(names, enums)
    if not schema.allow_additional_attributes:
        declared = f"only [{_listing(names)}]" if names else "no attributes"
        keys = pc.list_flatten(view.keys)
        unknown = pc.invert(pc.is_in(keys, pa.array(names, pa.string())))
        per_obj = np.zeros(len(view.keys), dtype=bool)
        parents = np.asarray(pc.list_parent_indices(view.keys).to_numpy(), dtype=np.int64)
        per_obj[parents[column_mask(unknown)]] = True
        f.flag(
            view.rows(per_obj),
            "attributes",
            lambda r: (
                f"unknown attribute(s) in {show(f.value('attributes', r))}; "
                f"{_name(schema)} declares {declared} and does not allow additional "
                "attributes"
            ),
        )
    for rule in rules:
        _check_rule(f, schema, rule, view)


def _check_rule(f: Failures, schema: AnnotationSchema, rule: AttributeRule, view: JsonView) -> None:
    rows, types, strings = view.rows, view.types[rule.name], view.strings.get(rule.name)
    absent = column_mask(pc.fill_null(pc.equal(types, "NULL"), True))

    def attrs(r: int) -> str:
        return show(f.value("attributes", r))

    if rule.required:
        f.flag(
            rows(absent),
            "attributes",
            lambda r: (
                f"required attribute {rule.name!r} of {_name(schema)} is missing (got {attrs(r)})"
            ),
        )
    accepted = pa.array(_JSON_TYPES[rule.type], pa.string())
    wrong = ~absent & ~column_mask(pc.is_in(types, accepted))
    f.flag(
        rows(wrong),
        "attributes",
        lambda r: (
            f"attribute {rule.name!r} must be of type {rule.type.value} in "
            f"{_name(schema)} (got {attrs(r)})"
        ),
    )
    if strings is not None:
        bad = ~absent & ~wrong & ~column_mask(pc.is_in(strings, pa.array(rule.choices)))
        f.flag(
            rows(bad),
            "attributes",
            lambda r: (
                f"attribute {rule.name!r} must be one of [{_listing(rule.choices)}] "
                f"in {_name(schema)} (got {attrs(r)})"
            ),
        )
