"""Aliases: human-readable names pointing at assets, with an append-only history.

The ``aliases`` table is keyed by ``alias``: new aliases are appended, moved ones written with
``Upsert``. Every uniqueness check holds for the snapshot the commit is fenced on: it runs inside
the commit's ``build`` (under the writer lease, and again on retry), or ran just before the
commit and is reused by the first ``build`` only while the ``aliases`` and ``assets`` pins have
not moved. So concurrent writers can never give one alias two targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticError

from lakecore.entities._base import LakeCore, new_ids, now_array, quote, rows_where
from lakecore.entities._checks import (
    SPACE_OR_CONTROL,
    check_by,
    delete_in,
    duplicate_mask,
    first,
    id_array,
    one_id,
    order_like,
    repeat,
    require_rows,
)
from lakecore.errors import (
    AliasAlreadyExistsError,
    AliasNotFoundError,
    AssetNotFoundError,
    ValidationError,
)
from lakecore.tables import Append, Upsert, from_arrow, layout
from schemas import Alias, AliasEvent
from schemas.asset import ASSET_ID_PREFIX, AliasStr

if TYPE_CHECKING:
    from lakecore.catalog import Snapshot
    from lakecore.tables.write import Op

__all__ = ["Aliases", "alias_changes", "alias_removals", "check_aliases"]


@cache
def _alias_adapter() -> TypeAdapter[str]:
    return TypeAdapter(AliasStr)


def check_aliases(aliases: pa.Array, field: str = "alias") -> None:
    """Refuse invalid alias strings (vectorized mirror of ``schemas.asset.AliasStr``).

    Raises:
        ValidationError: naming the first bad row, with the schema's explanation.

    Example:
        >>> check_aliases(pa.array(["cams/0001.jpg", "has space"]))
        Traceback (most recent call last):
        ...
        lakecore.errors.ValidationError: alias[1]: alias 'has space' contains whitespace ...
    """
    length = pc.utf8_length(aliases)
    bad = pc.or_kleene(pc.less(length, 1), pc.greater(length, 512))
    for mask in (
        pc.match_substring_regex(aliases, SPACE_OR_CONTROL),
        pc.starts_with(aliases, "/"),
        pc.ends_with(aliases, "/"),
        pc.match_substring(aliases, "//"),
        pc.starts_with(aliases, ASSET_ID_PREFIX),
    ):
        bad = pc.or_kleene(bad, mask)
    row = first(pc.or_kleene(bad, pc.is_null(aliases)))
    if row is None:
        return
    value = aliases[row].as_py()
    reason = "alias is null"
    if value is not None:
        try:
            _alias_adapter().validate_python(value)
            reason = "alias is invalid"
        except PydanticError as exc:
            reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
    raise ValidationError(f"{field}[{row}]: {reason}", row=row, field=field)


def _col(table: pa.Table, name: str) -> pa.Array:
    col = table[name]
    return col.combine_chunks() if col.num_chunks else pa.array([], col.type)


def alias_changes(
    snap: Snapshot, aliases: pa.Array, asset_ids: pa.Array, *, repoint: bool, by: str | None
) -> tuple[list[Op], pa.Table]:
    """Ops that point ``aliases`` at ``asset_ids`` (new: ``set``; moved: ``repoint``).

    Aliases already on the same asset are left alone (idempotent). Returns the ops and the
    resulting alias rows of the whole batch. Run it inside ``build``, or reuse ops made
    outside it in the first ``build`` only (before any attempt has prepared them), and only
    while the ``aliases`` and ``assets`` pins have not moved: new aliases are appended, on the
    promise that the snapshot the commit is fenced on has none of them.

    Raises:
        AliasAlreadyExistsError: an alias points at another asset and ``repoint`` is False.

    Example:
        >>> def build(snap):  # doctest: +SKIP
        ...     return alias_changes(snap, pa.array(["a/1"]), pa.array([aid]),
        ...                          repoint=False, by=None)[0]
    """
    existing = rows_where(snap, "aliases", "alias", aliases.to_pylist())
    pos = pc.index_in(aliases, value_set=_col(existing, "alias"))
    prev = {name: _col(existing, name).take(pos) for name in existing.column_names}
    is_new = pc.is_null(pos)
    moved = pc.fill_null(pc.not_equal(prev["asset_id"], asset_ids), False)
    if not repoint and first(moved) is not None:
        taken = [
            f"{a!r} -> {t}"
            for a, t in zip(
                aliases.filter(moved).to_pylist(),
                prev["asset_id"].filter(moved).to_pylist(),
                strict=True,
            )
        ]
        raise AliasAlreadyExistsError(
            f"alias(es) already point at other assets: {', '.join(taken[:10])}; pass "
            "repoint=True to move them",
            aliases=aliases.filter(moved).to_pylist(),
        )
    n, now = len(aliases), now_array(len(aliases))
    changed = pc.or_(is_new, moved)
    rows = pa.table(
        {
            "alias": aliases,
            "asset_id": asset_ids,
            "created_at": pc.if_else(is_new, now, prev["created_at"]),
            "updated_at": pc.if_else(changed, now, prev["updated_at"]),
            "created_by": pc.if_else(is_new, repeat(by, n, pa.string()), prev["created_by"]),
        },
        schema=layout(Alias).schema,
    )
    if first(changed) is None:
        return [], rows
    k = pc.sum(changed).as_py()
    events = pa.table(
        {
            "event_id": new_ids("aliasevt", k),
            "alias": aliases.filter(changed),
            "action": pc.if_else(is_new, "set", "repoint").filter(changed),
            "asset_id": asset_ids.filter(changed),
            "previous_asset_id": prev["asset_id"].filter(changed),
            "at": now.filter(changed),
            "by": repeat(by, k, pa.string()),
        },
        schema=layout(AliasEvent).schema,
    )
    # new aliases only: an append (the snapshot, which the commit is fenced on, has none of
    # them); a merge by key costs ~10 ms more per commit
    write = Upsert if first(moved) is not None else Append
    return [write("aliases", rows.filter(changed)), Append("alias_history", events)], rows


def alias_removals(existing: pa.Table, by: str | None) -> list[Op]:
    """Ops deleting the given alias rows and recording one ``remove`` event each.

    Example:
        >>> ops = alias_removals(snap.to_table("aliases"), by="gc")  # doctest: +SKIP
    """
    k = existing.num_rows
    if k == 0:
        return []
    events = pa.table(
        {
            "event_id": new_ids("aliasevt", k),
            "alias": _col(existing, "alias"),
            "action": repeat("remove", k, pa.string()),
            "asset_id": pa.nulls(k, pa.string()),
            "previous_asset_id": _col(existing, "asset_id"),
            "at": now_array(k),
            "by": repeat(by, k, pa.string()),
        },
        schema=layout(AliasEvent).schema,
    )
    return [
        *delete_in("aliases", "alias", existing["alias"].to_pylist()),
        Append("alias_history", events),
    ]


class Aliases:
    """Alias operations of a lake (``lake.aliases``).

    Args:
        core: the lake (anything with ``snapshot``, ``commit`` and ``objects``).
    """

    def __init__(self, core: LakeCore) -> None:
        self.core = core

    def set(
        self, alias: str, asset_id: str, *, repoint: bool = False, by: str | None = None
    ) -> Alias:
        """Point ``alias`` at an asset.

        Setting an alias to the asset it already names is a no-op.

        Args:
            alias: the name, e.g. ``"cams/front/0001.jpg"`` (no whitespace, no leading
                ``asset_``).
            asset_id: an existing asset.
            repoint: move the alias if it names another asset (recorded as ``repoint``).
            by: who did it (kept in the history).

        Raises:
            AliasAlreadyExistsError: it names another asset and ``repoint`` is False.
            AssetNotFoundError: no such asset.

        Example:
            >>> lake.aliases.set("cams/front/latest", asset.asset_id)  # doctest: +SKIP
        """
        rows = self.set_many(
            [one_id(alias, "alias")], [one_id(asset_id, "asset_id")], repoint=repoint, by=by
        )
        return from_arrow(rows, Alias)[0]

    def set_many(
        self,
        aliases: Sequence[str],
        asset_ids: Sequence[str],
        *,
        repoint: bool = False,
        by: str | None = None,
    ) -> pa.Table:
        """Point many aliases at assets in one commit (all or nothing).

        Returns:
            The alias rows of the batch, in input order.

        Raises:
            ValidationError: bad alias strings, mismatched lengths or an alias twice in the batch.
            AliasAlreadyExistsError: an alias names another asset and ``repoint`` is False.
            AssetNotFoundError: some assets do not exist.

        Example:
            >>> lake.aliases.set_many(["a/1", "a/2"], [id1, id2])  # doctest: +SKIP
        """
        names, targets = id_array(aliases, "aliases"), id_array(asset_ids, "asset_ids")
        if len(names) != len(targets):
            raise ValidationError(
                f"got {len(names)} aliases for {len(targets)} asset ids", field="asset_ids"
            )
        check_aliases(names, "aliases")
        dup = first(duplicate_mask(names))
        if dup is not None:
            raise ValidationError(
                f"aliases[{dup}] {names[dup].as_py()!r} appears twice in the "
                "batch; an alias has one target",
                row=dup,
                field="aliases",
            )
        by = check_by(by)
        if not len(names):
            return layout(Alias).schema.empty_table()

        def changes(snap: Snapshot) -> tuple[list[Op], pa.Table]:
            require_rows(
                snap,
                "assets",
                "asset_id",
                targets,
                AssetNotFoundError,
                "asset",
                columns=["asset_id"],
            )
            return alias_changes(snap, names, targets, repoint=repoint, by=by)

        checked = self.core.snapshot()
        ops, rows = changes(checked)
        if not ops:  # every alias already names its asset: nothing to commit
            return rows
        seen = {name: checked.pins.get(name) for name in ("aliases", "assets")}
        out = {"rows": rows}
        unused = [ops]  # what was checked above, for the first try if nothing moved since

        def build(snap: Snapshot) -> list[Op]:
            if unused and all(snap.pins.get(name) == v for name, v in seen.items()):
                return unused.pop()  # same table versions: the same changes
            unused.clear()
            again, out["rows"] = changes(snap)
            return again

        self.core.commit(build=build, message=f"aliases.set_many {len(names)}")
        return out["rows"]

    def resolve(self, alias: str) -> str:
        """The asset id an alias names.

        Raises:
            AliasNotFoundError: no such alias.

        Example:
            >>> lake.aliases.resolve("cams/front/latest")  # doctest: +SKIP
            'asset_3f2a…'
        """
        return str(self.resolve_many([one_id(alias, "alias")])["asset_id"][0].as_py())

    def resolve_many(self, aliases: Sequence[str]) -> pa.Table:
        """Resolve many aliases at once.

        Returns:
            A table ``(alias, asset_id)`` in input order.

        Raises:
            AliasNotFoundError: naming the aliases that do not exist.

        Example:
            >>> lake.aliases.resolve_many(["a/1", "a/2"])["asset_id"]  # doctest: +SKIP
        """
        names = id_array(aliases, "aliases")
        found = require_rows(
            self.core.snapshot(),
            "aliases",
            "alias",
            names,
            AliasNotFoundError,
            "alias",
            columns=["alias", "asset_id"],
        )
        return order_like(found, "alias", names)

    def history(self, alias: str) -> pa.Table:
        """Every event of an alias (set, repoint, remove), oldest first.

        Example:
            >>> lake.aliases.history("cams/front/latest")["action"]  # doctest: +SKIP
        """
        flt = f"alias = {quote(one_id(alias, 'alias'))}"
        rows = self.core.snapshot().to_table("alias_history", filter=flt)
        return rows.sort_by([("at", "ascending")])

    def remove(self, alias: str, *, by: str | None = None) -> None:
        """Remove an alias (its history keeps a ``remove`` event).

        Raises:
            AliasNotFoundError: no such alias.

        Example:
            >>> lake.aliases.remove("cams/front/latest")  # doctest: +SKIP
        """
        self.remove_many([one_id(alias, "alias")], by=by)

    def remove_many(self, aliases: Sequence[str], *, by: str | None = None) -> None:
        """Remove many aliases in one commit.

        Raises:
            AliasNotFoundError: naming the aliases that do not exist (nothing is removed).

        Example:
            >>> lake.aliases.remove_many(["a/1", "a/2"])  # doctest: +SKIP
        """
        names, by = id_array(aliases, "aliases"), check_by(by)

        def build(snap: Snapshot) -> list[Op]:
            found = require_rows(snap, "aliases", "alias", names, AliasNotFoundError, "alias")
            return alias_removals(found, by)

        if len(names):
            self.core.commit(build=build, message=f"aliases.remove {len(names)}")

    def for_asset(self, asset_id: str) -> list[str]:
        """The aliases naming an asset, sorted.

        Example:
            >>> lake.aliases.for_asset(asset.asset_id)  # doctest: +SKIP
            ['cams/front/latest']
        """
        flt = f"asset_id = {quote(one_id(asset_id, 'asset_id'))}"
        rows = self.core.snapshot().to_table("aliases", columns=["alias"], filter=flt)
        return sorted(rows["alias"].to_pylist())

    def table(self, *, snapshot: Snapshot | None = None) -> pa.Table:
        """Every alias row ``(alias, asset_id, created_at, updated_at, created_by)``.

        Example:
            >>> lake.aliases.table().num_rows  # doctest: +SKIP
        """
        return (snapshot or self.core.snapshot()).to_table("aliases")
