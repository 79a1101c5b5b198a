"""The rehearsal against a copy of the stack's demo database in a scratch server: the report's
duration, locks, rows and schema diff; the rollback rehearsed on the result; a failing migration
reported, never raised. The stack's own database is only read (pg_dump)."""

from __future__ import annotations

import pytest

from stellar_ops.changes.config import ChangesConfig
from stellar_ops.changes.rehearsal import Rehearsal, rehearse
from stellar_ops.changes.script import parse_script
from stellar_ops.postgres.target import PgTarget, connect

pytestmark = pytest.mark.integration

SETTINGS = ChangesConfig(lock_timeout="2s", statement_timeout="2min", lock_sample_seconds=0.02)
MIGRATION = """
ALTER TABLE trades ADD COLUMN note text DEFAULT 'x';
CREATE INDEX CONCURRENTLY trades_note_idx ON trades (note);
"""
ROLLBACK = """
DROP INDEX CONCURRENTLY trades_note_idx;
ALTER TABLE trades DROP COLUMN note;
"""


def run(target: PgTarget, migration: str, rollback: str | None = None) -> tuple[Rehearsal, list[str]]:
    said: list[str] = []
    report = rehearse(
        target,
        parse_script(migration, name="migration.sql"),
        parse_script(rollback, name="rollback.sql") if rollback else None,
        SETTINGS,
        said.append,
    )
    return report, said


def count(target: PgTarget, sql: str) -> int:
    with connect(target) as conn:
        return int(conn.execute(sql).fetchone()[0])


def test_a_column_and_a_concurrent_index_are_rehearsed_with_their_locks_diff_and_rollback(copy):
    report, said = run(copy, MIGRATION, ROLLBACK)

    assert report.ok, report.error
    assert report.error is None
    assert report.statements == 2
    assert report.duration_seconds > 0
    assert report.rows_touched == 0  # a constant default rewrites nothing
    assert report.rewritten == ()
    held = {(lock["relation"], lock["mode"]) for lock in report.locks if not lock["waiting"]}
    assert ("public.trades", "AccessExclusiveLock") in held, report.locks
    assert all(lock["held_seconds"] >= 0 for lock in report.locks)
    added = {(entry["section"], entry["object"]) for entry in report.diff["added"]}
    assert added == {("columns", "public.trades.note"), ("indexes", "public.trades_note_idx")}
    assert report.diff["removed"] == [] and report.diff["changed"] == []
    assert report.fingerprint_after not in (None, report.fingerprint_before)
    assert [step["committed"] for step in report.steps] == [True, True]

    rollback = report.rollback
    assert rollback is not None
    assert rollback["ok"] is True, rollback["error"]
    assert rollback["restores_schema"] is True
    assert rollback["fingerprint"] == report.fingerprint_before
    assert rollback["differences"] == []

    summary = report.summary()
    assert "Rehearsal passed: 2 statement(s)" in summary
    assert "AccessExclusiveLock on public.trades: held" in summary
    assert "+ column public.trades.note: text" in summary
    assert (
        "+ index public.trades_note_idx: CREATE INDEX trades_note_idx ON public.trades USING btree (note)"
        in summary
    )
    assert "Rollback: gives back the schema before" in summary
    assert any("statement 2/2: CREATE INDEX CONCURRENTLY" in line for line in said)
    assert Rehearsal.from_dict(report.as_dict()) == report


def test_rows_touched_count_the_dml_rows_and_the_rows_of_a_rewritten_table(copy):
    settled = count(copy, "SELECT count(*) FROM trades WHERE status = 'settled'")
    total = count(copy, "SELECT count(*) FROM trades")
    assert settled > 0

    report, _ = run(
        copy,
        "UPDATE trades SET ledger = ledger + 1 WHERE status = 'settled';"
        " ALTER TABLE trades ALTER COLUMN ledger TYPE numeric(20, 0)",
    )

    assert report.ok, report.error
    assert report.rewritten == ("public.trades",)
    assert report.rows_touched == settled + total
    assert [step["rows"] for step in report.steps] == [settled, None]
    assert report.diff["changed"] == [
        {
            "section": "columns",
            "object": "public.trades.ledger",
            "before": ["bigint", False],
            "after": ["numeric(20,0)", False],
        }
    ]


def test_a_failing_migration_is_reported_with_the_postgresql_error_and_rolled_back(copy):
    report, _ = run(
        copy, "ALTER TABLE trades ADD COLUMN note text; ALTER TABLE no_such_table ADD COLUMN x int", ROLLBACK
    )

    assert report.ok is False
    assert report.error is not None
    assert "statement 2 (ALTER TABLE no_such_table ADD COLUMN x int) failed" in report.error
    assert 'relation "no_such_table" does not exist' in report.error
    assert "its transaction (statements 1-2) was rolled back" in report.error
    assert report.fingerprint_after == report.fingerprint_before
    assert report.diff == {"added": [], "removed": [], "changed": []}
    assert report.rollback is None
    assert "Rehearsal FAILED" in report.summary()
    assert "not rehearsed (the migration failed)" in report.summary()
    assert count(copy, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'") == 0


def test_a_rollback_that_does_not_give_back_the_schema_is_caught(copy):
    report, _ = run(copy, MIGRATION, "DROP INDEX CONCURRENTLY trades_note_idx")

    assert report.ok, report.error
    rollback = report.rollback
    assert rollback is not None
    assert rollback["ok"] is True
    assert rollback["restores_schema"] is False
    assert rollback["fingerprint"] != report.fingerprint_before
    assert rollback["differences"] == ["+ column public.trades.note: text"]
    assert "Rollback: does NOT give back the schema before" in report.summary()


def test_a_lock_wait_shows_in_the_report_and_the_lock_timeout_fails_the_rehearsal(copy):
    with connect(copy, autocommit=False) as holder:
        holder.execute("LOCK TABLE trades IN ACCESS SHARE MODE")
        report, _ = run(copy, "ALTER TABLE trades ADD COLUMN note text")
        holder.rollback()

    assert report.ok is False
    assert report.error is not None and report.error.startswith(
        "lock timeout (changes.lock_timeout = 2s) hit by statement 1"
    )
    waits = [lock for lock in report.locks if lock["waiting"]]
    assert [(w["relation"], w["mode"]) for w in waits] == [("public.trades", "AccessExclusiveLock")]
    assert waits[0]["held_seconds"] >= 1.5
    assert "waited" in report.summary()
