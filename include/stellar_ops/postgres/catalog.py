"""What a database holds: its tables, their exact row counts and a fingerprint of its schema.

The backup takes this inventory inside the snapshot it hands to pg_dump; the DR test takes it
again on the restored copy and compares the two.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from stellar_ops.postgres.target import qualified

# Ordinary and partitioned tables of user schemas (extension-owned tables are left out: they
# belong to the extension, and pg_dump does not dump their rows).
_TABLES_SQL = """
SELECT n.nspname, c.relname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%'
  AND NOT EXISTS (
      SELECT 1 FROM pg_depend d
      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""

_COLUMNS_SQL = """
SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1, 2, a.attnum
"""

_INDEXES_SQL = """
SELECT schemaname, tablename, indexname, indexdef
FROM pg_indexes
WHERE schemaname NOT IN ('pg_catalog', 'information_schema') AND schemaname NOT LIKE 'pg\\_%'
ORDER BY 1, 2, 3
"""


def list_tables(conn: Any) -> list[str]:
    """``schema.table`` of every user table."""
    return [f"{schema}.{table}" for schema, table in conn.execute(_TABLES_SQL).fetchall()]


def ordinary_tables(conn: Any) -> list[str]:
    """``schema.table`` of every ordinary table (not partitioned, foreign or a view), quoted as
    ``quote_ident`` (and pg_dump) quote names."""
    rows = conn.execute(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r'"
    ).fetchall()
    return [row[0] for row in rows]


def count_rows(conn: Any, tables: list[str]) -> dict[str, int]:
    """Exact ``count(*)`` of each table (in whatever snapshot ``conn`` is in)."""
    counts: dict[str, int] = {}
    for name in tables:
        schema, table = name.split(".", 1)
        counts[name] = int(conn.execute(f"SELECT count(*) FROM {qualified(schema, table)}").fetchone()[0])
    return counts


def schema_of(conn: Any) -> dict[str, Any]:
    """Tables with their columns, and indexes with their definitions, in a stable order."""
    tables = set(list_tables(conn))
    columns: dict[str, list[list[Any]]] = {}
    for schema, table, column, type_name, not_null in conn.execute(_COLUMNS_SQL).fetchall():
        name = f"{schema}.{table}"
        if name in tables:
            columns.setdefault(name, []).append([column, type_name, bool(not_null)])
    indexes = {
        f"{schema}.{index}": definition
        for schema, table, index, definition in conn.execute(_INDEXES_SQL).fetchall()
        if f"{schema}.{table}" in tables
    }
    return {
        "tables": {name: {"columns": columns.get(name, [])} for name in sorted(tables)},
        "indexes": indexes,
    }


def fingerprint(schema: dict[str, Any]) -> str:
    """A sha256 over the canonical JSON of :func:`schema_of`'s answer."""
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def schema_differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Human-readable differences between two :func:`schema_of` answers (empty when equal)."""
    problems: list[str] = []
    want_tables, got_tables = expected.get("tables", {}), actual.get("tables", {})
    for name in sorted(set(want_tables) - set(got_tables)):
        problems.append(f"table {name} is missing")
    for name in sorted(set(got_tables) - set(want_tables)):
        problems.append(f"table {name} is not in the manifest")
    for name in sorted(set(want_tables) & set(got_tables)):
        want = {c[0]: c[1:] for c in want_tables[name]["columns"]}
        got = {c[0]: c[1:] for c in got_tables[name]["columns"]}
        for column in sorted(set(want) - set(got)):
            problems.append(f"column {name}.{column} is missing")
        for column in sorted(set(got) - set(want)):
            problems.append(f"column {name}.{column} is not in the manifest")
        for column in sorted(set(want) & set(got)):
            if want[column] != got[column]:
                problems.append(f"column {name}.{column} is {got[column]}, manifest says {want[column]}")
    want_idx, got_idx = expected.get("indexes", {}), actual.get("indexes", {})
    for name in sorted(set(want_idx) - set(got_idx)):
        problems.append(f"index {name} is missing")
    for name in sorted(set(got_idx) - set(want_idx)):
        problems.append(f"index {name} is not in the manifest")
    for name in sorted(set(want_idx) & set(got_idx)):
        if want_idx[name] != got_idx[name]:
            problems.append(f"index {name} differs: {got_idx[name]!r} vs {want_idx[name]!r}")
    return problems
