"""A migration script: its statements, as PostgreSQL's own parser reads them, and what they risk.

The script is split by pglast (libpg_query, the server's parser), so a semicolon inside a string,
a dollar-quoted function body or a comment never splits a statement, and a syntax error is found
before anything runs, named by its line and column. Each statement keeps its own text (the
engine runs exactly what was reviewed), its parse node's name, whether it can run inside a
transaction block, and the tables it names.

:func:`check_script` refuses what a migration must never hold (``DROP DATABASE``, transaction
control: the engine owns the transactions) and warns about the statements that lock a large
table for long: a rewrite (``ALTER COLUMN TYPE``, a volatile default), a non-concurrent
``CREATE INDEX`` (which blocks writes while it builds), a full-table validation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stellar_ops.changes.config import ChangesConfig
from stellar_ops.core.errors import ChangeFailed
from stellar_ops.postgres.target import PgTarget, connect

LABEL_CHARS = 80

# Statements PostgreSQL refuses inside a transaction block: each runs alone, in autocommit.
_NEVER_IN_TRANSACTION = frozenset(
    {
        "AlterSystemStmt",
        "CreatedbStmt",
        "DropdbStmt",
        "CreateTableSpaceStmt",
        "DropTableSpaceStmt",
        "CreateSubscriptionStmt",
        "DropSubscriptionStmt",
        "AlterSubscriptionStmt",
        # ALTER TYPE ... ADD VALUE may run in a transaction, but the new value cannot be used
        # before that transaction commits: alone, the statements after it can use it.
        "AlterEnumStmt",
        "DiscardStmt",
    }
)
# What a migration must not hold, and why.
_REFUSED = {
    "DropdbStmt": "DROP DATABASE is never a migration",
    "CreatedbStmt": "CREATE DATABASE is not a change of this database",
    "TransactionStmt": "transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT...) belongs to the "
    "engine: it runs consecutive statements in one transaction and each CONCURRENTLY statement alone",
}
# statements whose options may hold a password (a role's, a user mapping's)
PASSWORD_HOLDERS = frozenset(
    {"CreateRoleStmt", "AlterRoleStmt", "CreateUserMappingStmt", "AlterUserMappingStmt"}
)
_DML = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"})
# Functions whose value differs row by row: a column added with such a default is computed for
# every row, which rewrites the table under ACCESS EXCLUSIVE (a constant default does not).
VOLATILE_FUNCTIONS = frozenset(
    {
        "random",
        "random_normal",
        "clock_timestamp",
        "timeofday",
        "gen_random_uuid",
        "uuidv4",
        "uuidv7",
        "uuid_generate_v1",
        "uuid_generate_v1mc",
        "uuid_generate_v4",
        "nextval",
        "txid_current",
        "setseed",
    }
)
_SERIAL_TYPES = frozenset({"smallserial", "serial", "bigserial", "serial2", "serial4", "serial8"})


class MigrationError(ChangeFailed):
    """A migration script that cannot be run as it is (a syntax error, a refused statement)."""


@dataclass(frozen=True)
class Statement:
    """One statement of a script, as the engine runs it."""

    sql: str
    kind: str  # the parse node's name: "AlterTableStmt", "IndexStmt"...
    transactional: bool  # False: PostgreSQL refuses it inside a transaction block
    tables: tuple[str, ...]  # "schema.table" of the tables it names (unqualified: public)

    @property
    def label(self) -> str:
        """Its first characters on one line, to name it in a message."""
        return label(self.sql)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sql": self.sql,
            "kind": self.kind,
            "transactional": self.transactional,
            "tables": list(self.tables),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Statement:
        return cls(str(data["sql"]), str(data["kind"]), bool(data["transactional"]), tuple(data["tables"]))


@dataclass(frozen=True)
class TableSize:
    rows: int  # the planner's estimate (pg_class.reltuples)
    bytes: int  # with its indexes and TOAST

    def describe(self) -> str:
        return f"~{self.rows:,} rows, {_size(self.bytes)}"


@dataclass(frozen=True)
class ScriptCheck:
    statements: tuple[Statement, ...]
    warnings: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"statements": [s.as_dict() for s in self.statements], "warnings": list(self.warnings)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScriptCheck:
        return cls(
            tuple(Statement.from_dict(s) for s in data["statements"]), tuple(str(w) for w in data["warnings"])
        )


def label(sql: str) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def parse_script(sql: str, *, name: str) -> tuple[Statement, ...]:
    """The statements of the script ``name``; a syntax error is a :class:`MigrationError` naming
    its line and column, and a script without a statement is refused."""
    from pglast import parser

    try:
        raws = parser.parse_sql(sql)
    except parser.ParseError as exc:
        message, position = (exc.args + (None,))[:2] if exc.args else ("syntax error", None)
        raise MigrationError(f"migration {name}: {message}{_where(sql, position)}") from None
    statements = []
    for number, raw in enumerate(raws, 1):
        if _sets_a_password(raw.stmt):
            raise MigrationError(
                f"migration {name}: statement {number} ({type(raw.stmt).__name__}, not shown) sets a password: "
                "a migration is kept, logged and shown to its approver, so it carries no secret; rotate "
                "passwords through the secrets rotation (SEC-3.3)"
            )
        start = raw.stmt_location or 0
        text = sql[start : start + raw.stmt_len] if raw.stmt_len else sql[start:]
        statements.append(_statement(_without_leading_comments(text), raw.stmt))
    if not statements:
        raise MigrationError(f"migration {name} holds no SQL statement")
    return tuple(statements)


def _sets_a_password(node: Any) -> bool:
    """A role's password (CREATE/ALTER ROLE/USER ... PASSWORD) or a user mapping's."""
    if type(node).__name__ not in PASSWORD_HOLDERS:
        return False
    return any(getattr(option, "defname", None) == "password" for option in node.options or ())


def _where(sql: str, position: Any) -> str:
    if not isinstance(position, int) or not 0 <= position <= len(sql):
        return ""
    before = sql[:position]
    line = before.count("\n") + 1
    column = position - (before.rfind("\n") + 1) + 1
    lines = sql.splitlines()
    text = lines[line - 1] if line <= len(lines) else ""
    return f" at line {line}, column {column} (character {position + 1}): {label(text)!r}"


def _without_leading_comments(text: str) -> str:
    from pglast import parser

    text = text.strip()
    for token in parser.scan(text):
        if token.name not in ("SQL_COMMENT", "C_COMMENT"):
            return text[token.start :].strip()
    return text


def _statement(sql: str, node: Any) -> Statement:
    kind = type(node).__name__
    return Statement(
        sql=sql, kind=kind, transactional=not _never_in_transaction(kind, node), tables=_tables(node)
    )


def _never_in_transaction(kind: str, node: Any) -> bool:
    from pglast.enums import ReindexObjectType

    if kind in _NEVER_IN_TRANSACTION:
        return True
    if kind in ("IndexStmt", "DropStmt"):
        return bool(getattr(node, "concurrent", False))
    if kind == "ReindexStmt":
        concurrently = any(getattr(p, "defname", None) == "concurrently" for p in node.params or ())
        whole = node.kind in (
            ReindexObjectType.REINDEX_OBJECT_SYSTEM,
            ReindexObjectType.REINDEX_OBJECT_DATABASE,
        )
        return concurrently or whole
    if kind == "VacuumStmt":
        return bool(node.is_vacuumcmd)  # ANALYZE alone may run in a transaction
    if kind == "ClusterStmt":
        return node.relation is None  # CLUSTER of every table
    return False


def _tables(node: Any) -> tuple[str, ...]:
    from pglast.visitors import referenced_relations

    names = set()
    for name in referenced_relations(node):  # type: ignore[no-untyped-call]
        parts = _identifiers(name)
        if len(parts) == 1:
            parts = ["public", *parts]
        names.add(".".join(parts[-2:]))
    return tuple(sorted(names))


_IDENTIFIER = re.compile(r'"((?:[^"]|"")*)"|([^."]+)')


def _identifiers(name: str) -> list[str]:
    """``"My Schema".trades`` -> ["My Schema", "trades"]: pglast quotes names that need it."""
    return [quoted.replace('""', '"') if quoted else plain for quoted, plain in _IDENTIFIER.findall(name)]


# -- the check ---------------------------------------------------------------------------------------


def check_script(
    statements: Iterable[Statement], table_sizes: Mapping[str, TableSize], settings: ChangesConfig
) -> ScriptCheck:
    """Refuse what a migration must never hold (:class:`MigrationError`, every such statement
    named) and warn about each statement that locks a large table for long."""
    statements = tuple(statements)
    refused = [
        f"statement {number} ({statement.label}): {why}"
        for number, statement in enumerate(statements, 1)
        if (why := _refusal(statement)) is not None
    ]
    if refused:
        raise MigrationError("the migration holds statements it must not: " + "; ".join(refused))
    warnings: list[str] = []
    for number, statement in enumerate(statements, 1):
        for table, why in _risks(statement):
            size = table_sizes.get(table)
            if size is None or not _large(size, settings):
                continue
            warnings.append(f"statement {number} ({statement.label}) on {table} ({size.describe()}): {why}")
    return ScriptCheck(statements, tuple(warnings))


def _refusal(statement: Statement) -> str | None:
    if statement.kind in _REFUSED:
        return _REFUSED[statement.kind]
    if statement.kind == "CopyStmt":
        from pglast import parser

        node = parser.parse_sql(statement.sql)[0].stmt
        if node.filename is None and not node.is_program:
            return (
                "COPY FROM STDIN / TO STDOUT needs a client that streams the data (psql): load it another way"
            )
    return None


def _large(size: TableSize, settings: ChangesConfig) -> bool:
    return size.rows >= settings.large_table_rows or size.bytes >= settings.large_table_bytes


def _risks(statement: Statement) -> list[tuple[str, str]]:
    """(table, what the statement does to it) for each long lock it takes."""
    from pglast import parser

    node = parser.parse_sql(statement.sql)[0].stmt
    kind = statement.kind
    if kind == "AlterTableStmt" and node.relation is not None:
        table = _qualified(node.relation)
        return [(table, why) for cmd in node.cmds or () if (why := _alter_risk(cmd)) is not None]
    if kind == "IndexStmt" and not node.concurrent and node.relation is not None:
        return [
            (
                _qualified(node.relation),
                "builds an index without CONCURRENTLY: it holds a SHARE lock that blocks every write "
                "(INSERT, UPDATE, DELETE) for the whole build; use CREATE INDEX CONCURRENTLY",
            )
        ]
    if kind == "VacuumStmt" and any(getattr(o, "defname", None) == "full" for o in node.options or ()):
        return [
            (
                table,
                "rewrites the table (VACUUM FULL) under an ACCESS EXCLUSIVE lock: no read nor write meanwhile",
            )
            for table in statement.tables
        ]
    if kind == "ClusterStmt":
        return [
            (
                table,
                "rewrites the table (CLUSTER) under an ACCESS EXCLUSIVE lock: no read nor write meanwhile",
            )
            for table in statement.tables
        ]
    return []


_REWRITE = "under an ACCESS EXCLUSIVE lock: no read nor write until it is done"


def _alter_risk(cmd: Any) -> str | None:
    from pglast.enums import AlterTableType, ConstrType

    subtype = cmd.subtype
    if subtype == AlterTableType.AT_AlterColumnType:
        return f"changes the type of column {cmd.name}, which rewrites the table {_REWRITE}"
    if subtype == AlterTableType.AT_AddColumn and cmd.def_ is not None:
        column = cmd.def_
        type_name = column.typeName.names[-1].sval if column.typeName is not None else ""
        if type_name in _SERIAL_TYPES:
            return f"adds column {column.colname} as {type_name} (a nextval() default), which rewrites the table {_REWRITE}"
        for constraint in column.constraints or ():
            if constraint.contype == ConstrType.CONSTR_IDENTITY:
                return f"adds identity column {column.colname}, which rewrites the table {_REWRITE}"
            if constraint.contype == ConstrType.CONSTR_GENERATED:
                return f"adds generated column {column.colname}, which rewrites the table {_REWRITE}"
            if constraint.contype == ConstrType.CONSTR_DEFAULT:
                volatile = sorted(_volatile_calls(constraint.raw_expr))
                if volatile:
                    return (
                        f"adds column {column.colname} with a volatile default ({', '.join(volatile)}()), "
                        f"which rewrites the table {_REWRITE}"
                    )
        return None
    if subtype == AlterTableType.AT_SetNotNull:
        return f"sets column {cmd.name} NOT NULL, which scans the whole table {_REWRITE}"
    if subtype == AlterTableType.AT_AddConstraint and cmd.def_ is not None:
        constraint = cmd.def_
        if (
            constraint.contype in (ConstrType.CONSTR_CHECK, ConstrType.CONSTR_FOREIGN)
            and not constraint.skip_validation
        ):
            return (
                "adds a constraint without NOT VALID, which scans the whole table under its lock; "
                "add it NOT VALID, then VALIDATE CONSTRAINT"
            )
        if (
            constraint.contype in (ConstrType.CONSTR_PRIMARY, ConstrType.CONSTR_UNIQUE)
            and not constraint.indexname
        ):
            return f"adds a {'primary key' if constraint.contype == ConstrType.CONSTR_PRIMARY else 'unique constraint'} by building its index {_REWRITE}; build the index CONCURRENTLY first, then add it USING INDEX"
    if subtype in (
        AlterTableType.AT_SetLogged,
        AlterTableType.AT_SetUnLogged,
        AlterTableType.AT_SetTableSpace,
    ):
        return f"rewrites the table {_REWRITE}"
    return None


def _volatile_calls(expr: Any) -> set[str]:
    from pglast import ast
    from pglast.visitors import Visitor

    found: set[str] = set()

    class Calls(Visitor):  # type: ignore[misc]
        def visit_FuncCall(self, ancestors: Any, node: ast.FuncCall) -> None:
            name = node.funcname[-1].sval
            if name in VOLATILE_FUNCTIONS:
                found.add(name)

    if expr is not None:
        Calls()(expr)
    return found


def _qualified(relation: Any) -> str:
    return f"{relation.schemaname or 'public'}.{relation.relname}"


def _size(value: int) -> str:
    amount = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if amount < 1024:
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TB"


# -- sizes -------------------------------------------------------------------------------------------

_SIZES_SQL = """
SELECT n.nspname, c.relname, greatest(c.reltuples, 0)::bigint, pg_total_relation_size(c.oid)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
"""


def table_sizes(target: PgTarget) -> dict[str, TableSize]:
    """Each user table's estimated rows and total bytes, by ``schema.table``.

    The rows are the planner's estimate (a table never analyzed counts 0 rows; its bytes still
    make it large): the check must not scan production.
    """
    with connect(target) as conn:
        rows = conn.execute(_SIZES_SQL).fetchall()
    return {f"{schema}.{table}": TableSize(int(count), int(size)) for schema, table, count, size in rows}
