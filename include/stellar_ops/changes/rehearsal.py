"""The rehearsal: a migration run on a scratch restore of production, watched.

It runs exactly as :func:`stellar_ops.changes.apply.apply_statements` will run on production (same
grouping into transactions, same ``lock_timeout`` and ``statement_timeout``), while a second
session samples the locks it takes (:mod:`stellar_ops.changes.locks`). The report holds how long
it took, the rows it touched (DML row counts, and the rows of each table it rewrote), the locks and
for how long, the schema fingerprint before and after (the backup manifests' fingerprint, so the
rehearsal's "after" is what production must show once the change is applied) and the schema
diff, by object. Then the rollback script runs on the result the same way, and must give back
the fingerprint before.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stellar_ops.changes.apply import Execution, Say, execute, schema_fingerprint, set_timeouts
from stellar_ops.changes.config import ChangesConfig
from stellar_ops.changes.locks import LockSampler
from stellar_ops.changes.script import Statement
from stellar_ops.core.errors import StellarOpsError
from stellar_ops.postgres import catalog
from stellar_ops.postgres.target import PgTarget, connect, qualified


class RehearsalError(StellarOpsError):
    """The rehearsal cannot run as production would (not a failure of the migration itself)."""


# The storage of each user table: a rewrite gives a table a new relfilenode.
_RELFILENODES_SQL = f"""
SELECT n.nspname, c.relname, c.relfilenode::bigint
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm') AND {catalog.USER_SCHEMA}
"""


@dataclass(frozen=True)
class Rehearsal:
    ok: bool
    error: str | None
    duration_seconds: float
    statements: int
    rows_touched: int  # DML row counts, plus the rows of each table rewritten
    locks: tuple[dict[str, Any], ...]  # {"relation", "mode", "waiting", "held_seconds", "since_seconds"}
    fingerprint_before: str
    fingerprint_after: str | None
    diff: dict[str, Any]  # {"added": [...], "removed": [...], "changed": [...]}, see schema_diff
    rollback: dict[str, Any] | None  # ok, error, duration_seconds, fingerprint, restores_schema, differences
    rewritten: tuple[str, ...] = ()  # tables the migration rewrote (a new relfilenode)
    steps: tuple[dict[str, Any], ...] = ()  # per statement: number, sql (label), seconds, rows, committed

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "error": self.error,
            "duration_seconds": self.duration_seconds,
            "statements": self.statements,
            "rows_touched": self.rows_touched,
            "locks": [dict(lock) for lock in self.locks],
            "fingerprint_before": self.fingerprint_before,
            "fingerprint_after": self.fingerprint_after,
            "diff": self.diff,
            "rollback": self.rollback,
            "rewritten": list(self.rewritten),
            "steps": [dict(s) for s in self.steps],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rehearsal:
        return cls(
            ok=bool(data["ok"]),
            error=data.get("error"),
            duration_seconds=float(data["duration_seconds"]),
            statements=int(data["statements"]),
            rows_touched=int(data["rows_touched"]),
            locks=tuple(dict(lock) for lock in data["locks"]),
            fingerprint_before=str(data["fingerprint_before"]),
            fingerprint_after=data.get("fingerprint_after"),
            diff=dict(data["diff"]),
            rollback=None if data.get("rollback") is None else dict(data["rollback"]),
            rewritten=tuple(data.get("rewritten", ())),
            steps=tuple(dict(s) for s in data.get("steps", ())),
        )

    def summary(self) -> str:
        """The report as lines of text, for the approval and the change log."""
        lines = [
            f"Rehearsal {'passed' if self.ok else 'FAILED'}: {self.statements} statement(s) in "
            f"{self.duration_seconds:.2f} s, {self.rows_touched:,} row(s) touched"
        ]
        if self.error:
            lines.append(f"Error: {self.error}")
        if self.rewritten:
            lines.append(f"Rewritten tables: {', '.join(self.rewritten)}")
        lines.append("Locks:" if self.locks else "Locks: none seen")
        for lock in self.locks:
            if lock.get("waiting"):
                lines.append(
                    f"  waited {lock['held_seconds']:.3f} s for {lock['mode']} on {lock['relation']}"
                )
            else:
                lines.append(f"  {lock['mode']} on {lock['relation']}: held {lock['held_seconds']:.3f} s")
        changes = diff_lines(self.diff)
        lines.append("Schema changes:" if changes else "Schema changes: none")
        lines.extend(f"  {line}" for line in changes)
        lines.append(
            f"Schema fingerprint: before {self.fingerprint_before[:12]}, after "
            f"{self.fingerprint_after[:12] if self.fingerprint_after else 'unknown'}"
        )
        rollback = self.rollback
        if rollback is None:
            lines.append(
                "Rollback: none given" if self.ok else "Rollback: not rehearsed (the migration failed)"
            )
        elif not rollback["ok"]:
            lines.append(f"Rollback: FAILED in {rollback['duration_seconds']:.2f} s: {rollback['error']}")
        elif rollback["restores_schema"]:
            lines.append(f"Rollback: gives back the schema before ({rollback['duration_seconds']:.2f} s)")
        else:
            lines.append("Rollback: does NOT give back the schema before; what differs after it:")
            lines.extend(f"  {line}" for line in rollback.get("differences", []))
        return "\n".join(lines)


def rehearse(
    server: PgTarget,
    statements: Sequence[Statement],
    rollback_statements: Sequence[Statement] | None,
    settings: ChangesConfig,
    say: Say,
    *,
    role: str | None = None,
) -> Rehearsal:
    """Run the migration, then its rollback, on ``server`` (a scratch copy; its dbname the
    restored database) and report. SQL errors are in the report; only an infrastructure problem
    (a connection lost, the lock watch failing) raises.

    ``role`` is production's login role: the scripts run as it (``SET ROLE``), so what they create
    is owned as in production and a privilege production's role lacks fails here too."""
    before, schema_before = schema_fingerprint(server)
    say(f"rehearsing {len(statements)} statement(s) on {server.describe()} (schema {before[:12]})")
    with connect(server) as conn:
        set_timeouts(conn, settings)
        act_as(conn, role)
        storage_before = _relfilenodes(conn)
        sampler = LockSampler(server, conn.info.backend_pid, settings.lock_sample_seconds)
        own: list[Any] = []

        def after_statement(migration: Any) -> None:
            # a transaction's locks are held until its COMMIT: seen from its own session after
            # each statement, none is missed, however short the statement
            own[:] = sampler.own_locks(migration)
            sampler.observe(own, time.monotonic())

        def after_commit() -> None:
            sampler.observe(own, time.monotonic())  # held until the COMMIT was done

        with sampler:
            run = execute(
                conn,
                statements,
                settings,
                say,
                target=server,
                after_statement=after_statement,
                after_commit=after_commit,
            )
        locks = sampler.report(names_from=conn)
        rewritten = _rewritten(storage_before, _relfilenodes(conn))
        rewritten_rows = sum(_count(conn, table) for table in rewritten)
    after, schema_after = schema_fingerprint(server)
    diff = schema_diff(schema_before, schema_after)
    say(
        f"migration {'ran' if run.ok else 'FAILED'} in {run.duration_seconds:.2f} s: "
        f"{len(diff['added'])} added, {len(diff['removed'])} removed, {len(diff['changed'])} changed"
    )
    rollback = None
    if run.ok and rollback_statements:
        rollback = _rehearse_rollback(server, rollback_statements, settings, say, before, schema_before, role)
    return Rehearsal(
        ok=run.ok,
        error=run.error,
        duration_seconds=run.duration_seconds,
        statements=len(statements),
        rows_touched=run.rows + rewritten_rows,
        locks=locks,
        fingerprint_before=before,
        fingerprint_after=after,
        diff=diff,
        rollback=rollback,
        rewritten=tuple(rewritten),
        steps=tuple(run.steps),
    )


def _rehearse_rollback(
    server: PgTarget,
    statements: Sequence[Statement],
    settings: ChangesConfig,
    say: Say,
    before: str,
    schema_before: dict[str, Any],
    role: str | None,
) -> dict[str, Any]:
    say(f"rehearsing the rollback: {len(statements)} statement(s)")
    with connect(server) as conn:
        set_timeouts(conn, settings)
        act_as(conn, role)
        run: Execution = execute(conn, statements, settings, say, target=server)
    fingerprint, schema = schema_fingerprint(server)
    restores = run.ok and fingerprint == before
    differences = [] if fingerprint == before else diff_lines(schema_diff(schema_before, schema))
    say(
        "the rollback "
        + (
            "gives back the schema before"
            if restores
            else f"does NOT give back the schema before: {run.error or differences}"
        )
    )
    return {
        "ok": run.ok,
        "error": run.error,
        "duration_seconds": run.duration_seconds,
        "fingerprint": fingerprint,
        "restores_schema": restores,
        "differences": differences,
    }


def act_as(conn: Any, role: str | None) -> None:
    """``SET ROLE role`` on the scratch session (its login is the scratch server's superuser)."""
    if not role:
        return
    from psycopg import sql

    found = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()
    if found is None:
        raise RehearsalError(
            f"production's role {role!r} is not in the restored copy: the backup's roles were not restored, "
            "so the migration cannot be rehearsed as production runs it"
        )
    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))


def _relfilenodes(conn: Any) -> dict[str, int]:
    return {
        f"{schema}.{table}": int(node) for schema, table, node in conn.execute(_RELFILENODES_SQL).fetchall()
    }


def _rewritten(before: Mapping[str, int], after: Mapping[str, int]) -> list[str]:
    return sorted(name for name, node in after.items() if name in before and before[name] != node)


def _count(conn: Any, table: str) -> int:
    schema, name = table.split(".", 1)
    return int(conn.execute(f"SELECT count(*) FROM {qualified(schema, name)}").fetchone()[0])


# -- the schema diff ---------------------------------------------------------------------------------


def schema_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """What differs between two :func:`stellar_ops.postgres.catalog.schema_of` answers, by object:
    ``{"added": [{"section", "object", "definition"}], "removed": [...], "changed": [{"section",
    "object", "before", "after"}]}``. A table's columns are objects of their own (section
    ``columns``, object ``schema.table.column``)."""
    added: list[dict[str, Any]] = []
    removed: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    for section in sorted(set(before) | set(after)):
        old, new = before.get(section, {}), after.get(section, {})
        for name in sorted(set(new) - set(old)):
            added.append({"section": section, "object": name, "definition": new[name]})
        for name in sorted(set(old) - set(new)):
            removed.append({"section": section, "object": name, "definition": old[name]})
        for name in sorted(set(old) & set(new)):
            if old[name] == new[name]:
                continue
            if section == "tables":
                _column_diff(name, old[name]["columns"], new[name]["columns"], added, removed, changed)
            else:
                changed.append({"section": section, "object": name, "before": old[name], "after": new[name]})
    return {"added": added, "removed": removed, "changed": changed}


def _column_diff(
    table: str,
    old_columns: Iterable[Any],
    new_columns: Iterable[Any],
    added: list[dict[str, Any]],
    removed: list[dict[str, Any]],
    changed: list[dict[str, Any]],
) -> None:
    old = {c[0]: list(c[1:]) for c in old_columns}
    new = {c[0]: list(c[1:]) for c in new_columns}
    found = False
    for column in [c for c in new if c not in old]:
        added.append({"section": "columns", "object": f"{table}.{column}", "definition": new[column]})
        found = True
    for column in [c for c in old if c not in new]:
        removed.append({"section": "columns", "object": f"{table}.{column}", "definition": old[column]})
        found = True
    for column in [c for c in new if c in old and old[c] != new[c]]:
        changed.append(
            {"section": "columns", "object": f"{table}.{column}", "before": old[column], "after": new[column]}
        )
        found = True
    if not found:
        changed.append(
            {"section": "tables", "object": table, "before": list(old), "after": list(new)}
        )  # the same columns in another order


def diff_lines(diff: Mapping[str, Any]) -> list[str]:
    """One line per object of a :func:`schema_diff` answer: ``+`` added, ``-`` removed, ``~`` changed."""
    lines = [
        f"+ {_what(e['section'])} {e['object']}: {_shown(e['definition'])}" for e in diff.get("added", [])
    ]
    lines += [
        f"- {_what(e['section'])} {e['object']}: {_shown(e['definition'])}" for e in diff.get("removed", [])
    ]
    lines += [
        f"~ {_what(e['section'])} {e['object']}: {_shown(e['before'])} -> {_shown(e['after'])}"
        for e in diff.get("changed", [])
    ]
    return lines


def _what(section: str) -> str:
    return "column" if section == "columns" else catalog.SINGULAR.get(section, section)


def _shown(value: Any) -> str:
    if isinstance(value, list) and len(value) == 2 and isinstance(value[1], bool):
        return f"{value[0]}{' NOT NULL' if value[1] else ''}"  # a column: [type, not null]
    if isinstance(value, dict) and isinstance(value.get("columns"), list):  # a table
        return "(" + ", ".join(f"{c[0]} {c[1]}" for c in value["columns"]) + ")"
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    text = " ".join(text.split())
    return text if len(text) <= 240 else text[:239] + "…"
