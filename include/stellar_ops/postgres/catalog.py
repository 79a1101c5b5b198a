"""What a database holds: its tables, their exact row counts and a fingerprint of its schema.

The backup takes this inventory inside the snapshot it hands to pg_dump; the DR test takes it
again on the restored copy and compares the two. The schema is a mapping of sections, each a
mapping from an object's qualified name to its definition as the server prints it:

- ``tables`` (columns with types and NOT NULL) and ``indexes``: the sections of manifest format 1;
- ``constraints`` (PK, FK, UNIQUE, CHECK, EXCLUDE), ``triggers``, ``sequences`` (their
  definitions), ``views``, ``materialized_views``, ``functions``, ``types``, ``extensions``,
  ``acls`` (each table's, view's and sequence's owner and privileges) and ``default_acls``.

Objects that belong to an extension are left out: the extension brings them back. Sequence
*values* are not schema: they move while the database is used, so they are kept apart
(:func:`sequence_values`) and compared as "at least", never fingerprinted.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from stellar_ops.postgres.target import qualified

USER_SCHEMA = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'"
NOT_IN_EXTENSION = (
    "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{catalog}'::regclass"
    " AND d.objid = {oid} AND d.deptype = 'e')"
)
LARGE_OBJECTS = "pg_catalog.pg_largeobject_metadata"  # counted with the tables' rows

# Ordinary and partitioned tables of user schemas.
_TABLES_SQL = f"""
SELECT n.nspname, c.relname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND {USER_SCHEMA}
  AND {NOT_IN_EXTENSION.format(catalog="pg_class", oid="c.oid")}
ORDER BY 1, 2
"""

_COLUMNS_SQL = f"""
SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped AND {USER_SCHEMA}
ORDER BY 1, 2, a.attnum
"""

# Invalid indexes (a failed CREATE INDEX CONCURRENTLY) are left out: pg_dump does not dump them,
# so no restore holds them.
_INDEXES_SQL = """
SELECT i.schemaname, i.tablename, i.indexname, i.indexdef
FROM pg_indexes i
JOIN pg_class c ON c.relname = i.indexname
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = i.schemaname
JOIN pg_index x ON x.indexrelid = c.oid
WHERE i.schemaname NOT IN ('pg_catalog', 'information_schema') AND i.schemaname NOT LIKE 'pg\\_%'
  AND x.indisvalid
ORDER BY 1, 2, 3
"""

# Each section's query returns (name, definition) rows; the definition is JSON-able.
_SECTIONS_SQL: dict[str, str] = {
    "constraints": f"""
SELECT format('%s.%s.%s', n.nspname, c.relname, con.conname),
       json_build_array(con.contype::text, pg_get_constraintdef(con.oid, true))
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE con.contype IN ('p', 'f', 'u', 'c', 'x') AND {USER_SCHEMA}
  AND {NOT_IN_EXTENSION.format(catalog="pg_class", oid="c.oid")}
""",
    "triggers": f"""
SELECT format('%s.%s.%s', n.nspname, c.relname, t.tgname),
       to_json(pg_get_triggerdef(t.oid, true) || CASE t.tgenabled WHEN 'D' THEN ' (disabled)' ELSE '' END)
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT t.tgisinternal AND {USER_SCHEMA}
  AND {NOT_IN_EXTENSION.format(catalog="pg_class", oid="c.oid")}
""",
    "sequences": f"""
SELECT format('%s.%s', n.nspname, c.relname),
       json_build_array(format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax,
                        s.seqcycle)
FROM pg_sequence s
JOIN pg_class c ON c.oid = s.seqrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {USER_SCHEMA} AND {NOT_IN_EXTENSION.format(catalog="pg_class", oid="c.oid")}
""",
    "views": f"""
SELECT format('%s.%s', n.nspname, c.relname), to_json(pg_get_viewdef(c.oid, true))
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'v' AND {USER_SCHEMA} AND {NOT_IN_EXTENSION.format(catalog="pg_class", oid="c.oid")}
""",
    "materialized_views": f"""
SELECT format('%s.%s', n.nspname, c.relname),
       json_build_array(pg_get_viewdef(c.oid, true), c.relispopulated)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'm' AND {USER_SCHEMA} AND {NOT_IN_EXTENSION.format(catalog="pg_class", oid="c.oid")}
""",
    "functions": f"""
SELECT format('%s.%s(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
       json_build_array(p.prokind::text,
                        CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) END)
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE {USER_SCHEMA} AND {NOT_IN_EXTENSION.format(catalog="pg_proc", oid="p.oid")}
""",
    "types": f"""
SELECT format('%s.%s', n.nspname, t.typname),
       json_build_array(
           t.typtype::text,
           CASE t.typtype
               WHEN 'e' THEN (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder)
                              FROM pg_enum e WHERE e.enumtypid = t.oid)
               WHEN 'd' THEN json_build_array(
                   format_type(t.typbasetype, t.typtypmod), t.typnotnull, t.typdefault,
                   (SELECT json_agg(pg_get_constraintdef(con.oid, true) ORDER BY con.conname)
                    FROM pg_constraint con WHERE con.contypid = t.oid))
               WHEN 'c' THEN (SELECT json_agg(json_build_array(a.attname, format_type(a.atttypid, a.atttypmod))
                                              ORDER BY a.attnum)
                              FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0
                                AND NOT a.attisdropped)
               WHEN 'r' THEN (SELECT to_json(format_type(r.rngsubtype, NULL))
                              FROM pg_range r WHERE r.rngtypid = t.oid)
           END)
FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE t.typtype IN ('e', 'd', 'c', 'r') AND {USER_SCHEMA}
  AND (t.typtype <> 'c' OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
  AND {NOT_IN_EXTENSION.format(catalog="pg_type", oid="t.oid")}
""",
    "extensions": """
SELECT e.extname, to_json(n.nspname)
FROM pg_extension e
JOIN pg_namespace n ON n.oid = e.extnamespace
""",
    "acls": f"""
SELECT format('%s.%s', n.nspname, c.relname),
       json_build_array(c.relkind::text, pg_get_userbyid(c.relowner),
                        -- privileges equal to the owner's defaults are no grant: pg_dump leaves them out
                        CASE WHEN c.relacl IS DISTINCT FROM
                                  acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner)
                             THEN (SELECT json_agg(a ORDER BY a) FROM unnest(c.relacl::text[]) a) END)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {USER_SCHEMA}
  AND {NOT_IN_EXTENSION.format(catalog="pg_class", oid="c.oid")}
""",
    "default_acls": """
SELECT format('%s.%s.%s', pg_get_userbyid(d.defaclrole), coalesce(n.nspname, '*'), d.defaclobjtype),
       (SELECT json_agg(a ORDER BY a) FROM unnest(d.defaclacl::text[]) a)
FROM pg_default_acl d
LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
""",
}

_SEQUENCE_VALUES_SQL = f"""
SELECT format('%s.%s', n.nspname, c.relname), s.last_value
FROM pg_sequences s
JOIN pg_namespace n ON n.nspname = s.schemaname
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.sequencename
WHERE {USER_SCHEMA} AND {NOT_IN_EXTENSION.format(catalog="pg_class", oid="c.oid")}
ORDER BY 1
"""

# The sections of manifest format 1: a manifest that has only these is compared on only these.
FORMAT_1_SECTIONS = ("tables", "indexes")
SECTIONS = (*FORMAT_1_SECTIONS, *_SECTIONS_SQL)
SINGULAR = {
    "tables": "table",
    "indexes": "index",
    "constraints": "constraint",
    "triggers": "trigger",
    "sequences": "sequence",
    "views": "view",
    "materialized_views": "materialized view",
    "functions": "function",
    "types": "type",
    "extensions": "extension",
    "acls": "privileges of",
    "default_acls": "default privileges",
}


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
    """Exact ``count(*)`` of each table (in whatever snapshot ``conn`` is in), and of the large objects."""
    counts: dict[str, int] = {}
    for name in tables:
        schema, table = name.split(".", 1)
        counts[name] = int(conn.execute(f"SELECT count(*) FROM {qualified(schema, table)}").fetchone()[0])
    counts[LARGE_OBJECTS] = int(conn.execute(f"SELECT count(*) FROM {LARGE_OBJECTS}").fetchone()[0])
    return counts


def schema_of(conn: Any) -> dict[str, Any]:
    """Every section of the schema (see the module docstring), in a stable order."""
    tables = set(list_tables(conn))
    columns: dict[str, list[list[Any]]] = {}
    for schema, table, column, type_name, not_null in conn.execute(_COLUMNS_SQL).fetchall():
        name = f"{schema}.{table}"
        if name in tables:
            columns.setdefault(name, []).append([column, type_name, bool(not_null)])
    document: dict[str, Any] = {
        "tables": {name: {"columns": columns.get(name, [])} for name in sorted(tables)},
        "indexes": {
            f"{schema}.{index}": definition
            for schema, table, index, definition in conn.execute(_INDEXES_SQL).fetchall()
            if f"{schema}.{table}" in tables
        },
    }
    for section, sql in _SECTIONS_SQL.items():
        document[section] = dict(sorted(conn.execute(sql).fetchall()))
    return document


def sequence_values(conn: Any) -> dict[str, int | None]:
    """Each sequence's last value (None: never used, or not readable by this role)."""
    return {name: None if value is None else int(value) for name, value in conn.execute(_SEQUENCE_VALUES_SQL)}


def comparable(schema: dict[str, Any], sections: Any) -> dict[str, Any]:
    """``schema`` restricted to ``sections`` (those a manifest has), to compare like with like."""
    return {name: schema.get(name, {}) for name in sections}


def fingerprint(schema: dict[str, Any]) -> str:
    """A sha256 over the canonical JSON of :func:`schema_of`'s answer."""
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def schema_differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Each difference between two :func:`schema_of` answers, naming the object and both sides."""
    problems: list[str] = []
    for section in expected:
        want, got = expected.get(section, {}), actual.get(section, {})
        what = SINGULAR.get(section, section)
        # a table's definition is its columns, each named below when they differ
        brief = section == "tables"
        for name in sorted(set(want) - set(got)):
            problems.append(f"{what} {name} is missing{_definition(want[name], brief)}")
        for name in sorted(set(got) - set(want)):
            problems.append(f"{what} {name} is not in the manifest{_definition(got[name], brief)}")
        for name in sorted(set(want) & set(got)):
            if want[name] == got[name]:
                continue
            if section == "tables":
                problems.extend(_column_differences(name, want[name]["columns"], got[name]["columns"]))
            else:
                problems.append(
                    f"{what} {name} differs: restored {_shown(got[name])}, manifest {_shown(want[name])}"
                )
    return problems


def _column_differences(table: str, want_columns: list[Any], got_columns: list[Any]) -> list[str]:
    want = {c[0]: c[1:] for c in want_columns}
    got = {c[0]: c[1:] for c in got_columns}
    problems = [f"column {table}.{column} is missing" for column in sorted(set(want) - set(got))]
    problems += [f"column {table}.{column} is not in the manifest" for column in sorted(set(got) - set(want))]
    for column in sorted(set(want) & set(got)):
        if want[column] != got[column]:
            problems.append(f"column {table}.{column} is {got[column]}, manifest says {want[column]}")
    if not problems:
        problems.append(f"table {table}'s columns are in another order than the manifest's")
    return problems


def sequence_value_differences(expected: dict[str, int | None], actual: dict[str, int | None]) -> list[str]:
    """Sequences restored behind the value the backup saw (read before pg_dump read its own)."""
    problems = []
    for name, value in sorted(expected.items()):
        if value is None:
            continue
        restored = actual.get(name)
        if name not in actual:
            problems.append(f"sequence {name} is missing (manifest: at least {value})")
        elif restored is None or restored < value:
            problems.append(f"sequence {name} is at {restored}, manifest says at least {value}")
    return problems


def _definition(value: Any, brief: bool) -> str:
    return "" if brief else f" ({_shown(value)})"


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    text = " ".join(text.split())
    return text if len(text) <= 240 else text[:239] + "…"
