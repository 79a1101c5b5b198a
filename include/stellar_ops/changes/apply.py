"""Running a migration's statements: on production (:func:`apply_statements`), and the very same
way in the rehearsal (:func:`execute`, which :mod:`stellar_ops.changes.rehearsal` runs too).

The session sets ``lock_timeout`` and ``statement_timeout`` from the ``changes`` config first, so
a statement that waits for a lock held elsewhere gives up instead of queueing every other
session behind it. Consecutive statements that can run in a transaction run in ONE transaction:
a failure rolls all of them back. A statement PostgreSQL refuses inside a transaction block
(``CREATE INDEX CONCURRENTLY``...) runs alone, in autocommit. The first failure stops the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stellar_ops.changes.config import ChangesConfig
from stellar_ops.changes.script import Statement
from stellar_ops.core.errors import ConfigError, PrerequisiteError
from stellar_ops.postgres import catalog
from stellar_ops.postgres.target import PgTarget, clean_error, connect

Say = Callable[[str], None]
DML = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"})
LOCK_NOT_AVAILABLE = "55P03"
QUERY_CANCELED = "57014"


@dataclass(frozen=True)
class Applied:
    ok: bool
    error: str | None
    duration_seconds: float
    statements_applied: int  # committed: the statements of a transaction rolled back are not
    fingerprint_before: str
    fingerprint_after: str
    changed: bool  # fingerprint_after != fingerprint_before
    failed_statement: int | None = None  # 1-based number of the statement that failed
    steps: tuple[dict[str, Any], ...] = ()  # per statement: number, sql (its label), seconds, rows, committed

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "error": self.error,
            "duration_seconds": self.duration_seconds,
            "statements_applied": self.statements_applied,
            "fingerprint_before": self.fingerprint_before,
            "fingerprint_after": self.fingerprint_after,
            "changed": self.changed,
            "failed_statement": self.failed_statement,
            "steps": [dict(s) for s in self.steps],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Applied:
        return cls(
            ok=bool(data["ok"]),
            error=data.get("error"),
            duration_seconds=float(data["duration_seconds"]),
            statements_applied=int(data["statements_applied"]),
            fingerprint_before=str(data["fingerprint_before"]),
            fingerprint_after=str(data["fingerprint_after"]),
            changed=bool(data["changed"]),
            failed_statement=data.get("failed_statement"),
            steps=tuple(dict(s) for s in data.get("steps", ())),
        )


@dataclass
class Execution:
    """What :func:`execute` did."""

    ok: bool = True
    error: str | None = None
    failed_statement: int | None = None
    applied: int = 0  # statements committed
    rows: int = 0  # DML rowcounts of the committed statements
    duration_seconds: float = 0.0
    steps: list[dict[str, Any]] = field(default_factory=list)


def groups(statements: Iterable[Statement]) -> list[list[tuple[int, Statement]]]:
    """(1-based number, statement) runs: consecutive transactional statements together, each
    other statement alone."""
    runs: list[list[tuple[int, Statement]]] = []
    for number, statement in enumerate(statements, 1):
        if statement.transactional and runs and runs[-1][0][1].transactional:
            runs[-1].append((number, statement))
        else:
            runs.append([(number, statement)])
    return runs


def set_timeouts(conn: Any, settings: ChangesConfig) -> None:
    """The session's ``lock_timeout`` and ``statement_timeout`` from config (refused when invalid)."""
    import psycopg

    for name, value in (
        ("lock_timeout", settings.lock_timeout),
        ("statement_timeout", settings.statement_timeout),
    ):
        try:
            conn.execute("SELECT set_config(%s, %s, false)", [name, value])
        except psycopg.errors.InvalidParameterValue as exc:
            raise ConfigError(
                f"changes.{name} {value!r} is not a PostgreSQL duration (e.g. '5s', '15min'): {exc.diag.message_primary}"
            ) from None


def execute(
    conn: Any,
    statements: Iterable[Statement],
    settings: ChangesConfig,
    say: Say,
    *,
    target: PgTarget,
    after_statement: Callable[[Any], None] | None = None,
    after_commit: Callable[[], None] | None = None,
) -> Execution:
    """Run ``statements`` on ``conn`` (autocommit, its timeouts set) as the module docstring says.

    A statement's SQL error ends the run with ``ok`` False and the error; only a lost connection
    raises (:class:`PrerequisiteError`). ``after_statement`` runs inside a transaction after each
    of its statements, ``after_commit`` after its COMMIT (the rehearsal reads the locks there).
    """
    import psycopg

    statements = list(statements)
    total = len(statements)
    result = Execution()
    started = time.monotonic()
    committed_before = 0
    for run in groups(statements):
        current: int | None = None
        pending: list[dict[str, Any]] = []
        in_transaction = run[0][1].transactional
        try:
            if in_transaction:
                with conn.transaction():
                    for number, statement in run:
                        current = number
                        pending.append(_run(conn, number, total, statement, say))
                        if after_statement is not None:
                            after_statement(conn)
                    current = None  # a failure from here on is the COMMIT's
                if after_commit is not None:
                    after_commit()
            else:
                number, statement = run[0]
                current = number
                pending.append(_run(conn, number, total, statement, say))
        except psycopg.Error as exc:
            if (
                conn.broken
                or conn.closed
                or isinstance(exc, psycopg.OperationalError)
                and exc.sqlstate is None
            ):
                raise PrerequisiteError(
                    f"lost the connection to {target.describe()} during statement {current or run[-1][0]} of the "
                    f"migration ({clean_error(str(exc), target)}): whether it committed is unknown; compare "
                    "the schema fingerprint before deciding anything"
                ) from None
            for step in pending:
                step["committed"] = False
            result.steps.extend(pending)
            result.ok = False
            result.failed_statement = current if current is not None else run[-1][0]
            result.error = _error_text(exc, run, current, committed_before, settings, target)
            say(result.error)
            break
        for step in pending:
            step["committed"] = True
            result.rows += step["rows"] or 0
        result.steps.extend(pending)
        result.applied += len(run)
        committed_before += len(run)
    result.duration_seconds = round(time.monotonic() - started, 3)
    return result


def _run(conn: Any, number: int, total: int, statement: Statement, say: Say) -> dict[str, Any]:
    say(f"statement {number}/{total}: {statement.label}")
    started = time.monotonic()
    cursor = conn.execute(statement.sql)
    seconds = round(time.monotonic() - started, 3)
    rows = cursor.rowcount if statement.kind in DML and cursor.rowcount >= 0 else None
    return {"statement": number, "sql": statement.label, "seconds": seconds, "rows": rows}


def _error_text(
    exc: Any,
    run: list[tuple[int, Statement]],
    current: int | None,
    committed_before: int,
    settings: ChangesConfig,
    target: PgTarget,
) -> str:
    by_number = dict(run)
    message = clean_error(exc.diag.message_primary or str(exc), target)
    if current is None:
        what = f"the COMMIT of statements {run[0][0]}-{run[-1][0]}"
    else:
        what = f"statement {current} ({by_number[current].label})"
    if exc.sqlstate == LOCK_NOT_AVAILABLE and "lock timeout" in message:
        text = (
            f"lock timeout (changes.lock_timeout = {settings.lock_timeout}) hit by {what}: another session "
            f"held a lock it needed ({message})"
        )
    elif exc.sqlstate == QUERY_CANCELED and "statement timeout" in message:
        text = f"statement timeout (changes.statement_timeout = {settings.statement_timeout}) hit by {what} ({message})"
    else:
        text = f"{what} failed: {exc.sqlstate or 'error'} {message}"
        for extra in ("message_detail", "message_hint"):
            value = getattr(exc.diag, extra, None)
            if value:
                text += f"; {clean_error(value, target)}"
    if run[0][1].transactional:
        numbers = f"statement {run[0][0]}" if len(run) == 1 else f"statements {run[0][0]}-{run[-1][0]}"
        text += f"; its transaction ({numbers}) was rolled back"
    elif by_number[run[0][0]].kind == "IndexStmt":
        text += "; a failed CREATE INDEX CONCURRENTLY leaves an INVALID index: drop it before trying again"
    if committed_before == 1:
        text += "; statement 1 had been committed before it"
    elif committed_before:
        text += f"; statements 1-{committed_before} had been committed before it"
    else:
        text += "; nothing was applied"
    return text


def schema_fingerprint(target: PgTarget) -> tuple[str, dict[str, Any]]:
    """The schema fingerprint of ``target``'s database, as backup manifests compute it, and the
    schema sections it is computed from."""
    with connect(target) as conn:
        schema = catalog.schema_of(conn)
    return catalog.fingerprint(schema), schema


def apply_statements(
    target: PgTarget, statements: Iterable[Statement], settings: ChangesConfig, say: Say
) -> Applied:
    """Apply ``statements`` to ``target`` with the config's timeouts; the fingerprint before and after.

    A failure inside a transaction leaves what that transaction did undone: when no statement
    ran outside it, production is as it was (``changed`` False).
    """
    statements = list(statements)
    before, _ = schema_fingerprint(target)
    say(f"applying {len(statements)} statement(s) to {target.describe()} (schema {before[:12]})")
    with connect(target) as conn:
        set_timeouts(conn, settings)
        run = execute(conn, statements, settings, say, target=target)
    after, _ = schema_fingerprint(target)
    say(f"schema after: {after[:12]} ({'changed' if after != before else 'unchanged'})")
    return Applied(
        ok=run.ok,
        error=run.error,
        duration_seconds=run.duration_seconds,
        statements_applied=run.applied,
        fingerprint_before=before,
        fingerprint_after=after,
        changed=after != before,
        failed_statement=run.failed_statement,
        steps=tuple(run.steps),
    )
