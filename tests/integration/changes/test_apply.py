"""Applying a migration, against a copy of the stack's demo database in a scratch server (standing
in for production): the statements applied with the config's timeouts; a failure inside the
transaction leaves the database as it was (same schema fingerprint); a lock held elsewhere past
lock_timeout fails cleanly, naming the timeout and the statement."""

from __future__ import annotations

import pytest

from stellar_ops.changes.apply import Applied, apply_statements, schema_fingerprint
from stellar_ops.changes.config import ChangesConfig
from stellar_ops.changes.rehearsal import rehearse
from stellar_ops.changes.script import parse_script
from stellar_ops.core.errors import ConfigError
from stellar_ops.postgres.target import PgTarget, connect

pytestmark = pytest.mark.integration

SETTINGS = ChangesConfig(lock_timeout="1s", statement_timeout="2min")
MIGRATION = """
ALTER TABLE trades ADD COLUMN note text DEFAULT 'x';
CREATE INDEX CONCURRENTLY trades_note_idx ON trades (note);
"""


def apply(target: PgTarget, sql: str, settings: ChangesConfig = SETTINGS) -> tuple[Applied, list[str]]:
    said: list[str] = []
    return apply_statements(target, parse_script(sql, name="migration.sql"), settings, said.append), said


def test_a_migration_applied_gives_the_schema_its_rehearsal_showed(fresh_copy):
    rehearsal = rehearse(fresh_copy(), parse_script(MIGRATION, name="m.sql"), None, SETTINGS, lambda _: None)
    assert rehearsal.ok, rehearsal.error
    production = fresh_copy()

    applied, said = apply(production, MIGRATION)

    assert applied.ok, applied.error
    assert applied.error is None and applied.failed_statement is None
    assert applied.statements_applied == 2
    assert applied.changed is True
    assert applied.fingerprint_before == rehearsal.fingerprint_before
    assert applied.fingerprint_after == rehearsal.fingerprint_after
    assert applied.fingerprint_after == schema_fingerprint(production)[0]
    assert applied.duration_seconds > 0
    assert [step["committed"] for step in applied.steps] == [True, True]
    assert any("statement 1/2: ALTER TABLE trades ADD COLUMN note" in line for line in said)
    assert Applied.from_dict(applied.as_dict()) == applied


def test_a_lock_held_past_lock_timeout_fails_cleanly_and_leaves_the_database_as_it_was(fresh_copy):
    target = fresh_copy()
    before = schema_fingerprint(target)[0]
    with connect(target, autocommit=False) as holder:
        holder.execute("LOCK TABLE trades IN ACCESS SHARE MODE")  # a long report reading trades
        applied, _ = apply(
            target,
            "CREATE TABLE change_marker (id int); ALTER TABLE trades ADD COLUMN note text DEFAULT 'x';"
            + MIGRATION,
        )
        holder.rollback()

    assert applied.ok is False
    assert applied.error is not None
    assert applied.error.startswith(
        "lock timeout (changes.lock_timeout = 1s) hit by statement 2 (ALTER TABLE trades ADD COLUMN note text"
    )
    assert "its transaction (statements 1-3) was rolled back" in applied.error
    assert "nothing was applied" in applied.error
    assert applied.failed_statement == 2
    assert applied.statements_applied == 0
    assert applied.changed is False
    assert applied.fingerprint_before == applied.fingerprint_after == before
    assert schema_fingerprint(target)[0] == before
    with connect(target) as conn:
        assert conn.execute("SELECT to_regclass('public.change_marker')").fetchone()[0] is None


def test_a_failure_after_a_committed_transaction_says_what_was_applied(fresh_copy):
    target = fresh_copy()
    applied, _ = apply(
        target,
        "ALTER TABLE trades ADD COLUMN note text; CREATE INDEX CONCURRENTLY broken_idx ON no_such_table (a)",
    )

    assert applied.ok is False
    assert applied.statements_applied == 1
    assert applied.failed_statement == 2
    assert applied.changed is True  # the first transaction committed: the page must say so
    assert applied.error is not None
    assert 'relation "no_such_table" does not exist' in applied.error
    assert "statement 1 had been committed before it" in applied.error


def test_an_invalid_timeout_in_config_is_refused_naming_the_field(fresh_copy):
    with pytest.raises(ConfigError, match="changes.lock_timeout '5 parsecs'"):
        apply(
            fresh_copy(), "ALTER TABLE trades ADD COLUMN note text", ChangesConfig(lock_timeout="5 parsecs")
        )
