"""Read-only enforcement for lake SQL: DuckDB parses, this module decides.

A query is accepted only when DuckDB's own parser (``extract_statements``) says it is exactly
one statement of a reading kind: ``SELECT`` (which DuckDB also reports for ``WITH``, ``FROM``,
``VALUES``, ``DESCRIBE``, ``SHOW`` and ``SUMMARIZE``), ``EXPLAIN`` of such a statement, or a
``PRAGMA`` from a short list of catalog look-ups (``table_info``, ``show``, ``show_tables``…).
Everything else — ``COPY``, ``ATTACH``/``DETACH``, ``INSTALL``/``LOAD``, ``CREATE``, ``INSERT``,
``UPDATE``, ``DELETE``, ``DROP``, ``ALTER``, ``SET``/``RESET``/``USE``, ``CALL``, ``EXPORT``,
``VACUUM``, ``CHECKPOINT``, transactions, ``PREPARE``/``EXECUTE``, multi-part statements — is
refused with a :class:`~lakecore.errors.QueryError` before anything runs.

Reading files is stopped one level lower: the engine's DuckDB database runs with
``enable_external_access = false`` and a locked configuration, so ``read_csv('/etc/passwd')`` or
``'file.parquet'`` fail inside DuckDB even in an accepted ``SELECT``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from lakecore.errors import QueryError

if TYPE_CHECKING:
    import duckdb

__all__ = ["ALLOWED_PRAGMAS", "check_read_only", "query_error"]

ALLOWED_PRAGMAS = frozenset(
    {"table_info", "show", "show_tables", "show_tables_expanded", "version", "platform"}
)
"""PRAGMAs that only describe the catalog."""

_EXPLAIN = re.compile(
    r"^\s*explain\b\s*(?:analy[sz]e\b\s*)?(?:\([^)]*\)\s*)?(?:analy[sz]e\b\s*)?", re.I
)
_PRAGMA = re.compile(r"^\s*pragma\s+([a-z_][a-z0-9_]*)\s*(?:\(|;|$)", re.I)

_WHY = {
    "COPY": "COPY reads or writes files",
    "ATTACH": "ATTACH opens another database",
    "DETACH": "DETACH changes the attached databases",
    "LOAD": "INSTALL/LOAD add extensions",
    "EXTENSION": "extensions cannot be changed",
    "SET": "SET/RESET/USE change the connection's settings",
    "VARIABLE_SET": "SET VARIABLE changes the connection's state",
    "CREATE": "CREATE writes to the catalog",
    "CREATE_FUNC": "CREATE FUNCTION/MACRO writes to the catalog",
    "INSERT": "INSERT writes rows",
    "UPDATE": "UPDATE writes rows",
    "DELETE": "DELETE writes rows",
    "MERGE_INTO": "MERGE writes rows",
    "DROP": "DROP removes objects",
    "ALTER": "ALTER changes objects",
    "EXPORT": "EXPORT DATABASE writes files",
    "COPY_DATABASE": "COPY DATABASE writes a database",
    "VACUUM": "VACUUM changes storage",
    "CALL": "CALL runs a table function or checkpoint; use SELECT * FROM f(...) instead",
    "TRANSACTION": "transactions are managed by lakecore",
    "PREPARE": "PREPARE/EXECUTE are not needed: pass params= instead",
    "EXECUTE": "PREPARE/EXECUTE are not needed: pass params= instead",
    "MULTI": "this statement runs several statements (e.g. PIVOT without an IN list); "
    "write it as one SELECT",
    "ANALYZE": "ANALYZE changes statistics",
}


def query_error(message: str, query: str, **details: Any) -> QueryError:
    """A QueryError carrying the SQL (``details['sql']``)."""
    return QueryError(message, sql=query, **details)


def _parse(con: duckdb.DuckDBPyConnection, query: str) -> list[duckdb.Statement]:
    import duckdb

    try:
        return list(con.extract_statements(query))
    except duckdb.Error as exc:
        raise query_error(f"invalid SQL: {exc}", query) from None


def _refuse(kind: str, query: str) -> QueryError:
    why = _WHY.get(kind, f"{kind} statements are not allowed")
    return query_error(
        f"lake SQL is read-only: {why}. Allowed: SELECT/WITH/FROM/VALUES, DESCRIBE, SHOW, "
        "SUMMARIZE, EXPLAIN of those, and PRAGMA table_info/show_tables",
        query,
        statement=kind,
    )


def check_read_only(con: duckdb.DuckDBPyConnection, query: str) -> duckdb.Statement:
    """Return the one reading statement of ``query`` or raise :class:`QueryError`."""
    if not isinstance(query, str):
        raise query_error(f"a query must be a str, not {type(query).__name__}", str(query))
    statements = _parse(con, query)
    if not statements:
        raise query_error("the query is empty", query)
    if len(statements) > 1:
        raise query_error(
            f"one statement per query please (got {len(statements)})",
            query,
            statements=len(statements),
        )
    statement = statements[0]
    kind = statement.type.name
    if kind == "SELECT":
        return statement
    if kind == "EXPLAIN":
        inner_text = _EXPLAIN.sub("", statement.query, count=1)
        inner = _parse(con, inner_text) if inner_text != statement.query else []
        if len(inner) == 1 and inner[0].type.name == "SELECT":
            return statement
        shown = inner[0].type.name if len(inner) == 1 else "EXPLAIN"
        raise _refuse(shown, query)
    if kind == "PRAGMA":
        m = _PRAGMA.match(statement.query)
        if m and m.group(1).lower() in ALLOWED_PRAGMAS:
            return statement
        raise query_error(
            f"lake SQL is read-only: only PRAGMA {', '.join(sorted(ALLOWED_PRAGMAS))} are allowed",
            query,
            statement=kind,
        )
    raise _refuse(kind, query)
