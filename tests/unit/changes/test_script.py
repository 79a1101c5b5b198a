"""A migration script as PostgreSQL's parser reads it: statements kept as written, refused
statements named, and warnings only for long locks on large tables."""

from __future__ import annotations

import pytest

from stellar_ops.changes.config import ChangesConfig
from stellar_ops.changes.script import (
    MigrationError,
    ScriptCheck,
    Statement,
    TableSize,
    check_script,
    parse_script,
)

SETTINGS = ChangesConfig()
LARGE = {"public.trades": TableSize(rows=5_000_000, bytes=800 << 20)}
SMALL = {"public.trades": TableSize(rows=1_000, bytes=100 << 10)}


def check(sql: str, sizes: dict[str, TableSize]) -> ScriptCheck:
    return check_script(parse_script(sql, name="m.sql"), sizes, SETTINGS)


def test_statements_keep_their_own_text_whatever_semicolons_strings_and_bodies_hold():
    statements = parse_script(
        """-- the note column
        ALTER TABLE trades ADD COLUMN note text DEFAULT 'a;b';
        CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;
        /* backfill */ UPDATE "Odd Schema"."Trades" SET x = 1
        """,
        name="m.sql",
    )

    assert [s.sql for s in statements] == [
        "ALTER TABLE trades ADD COLUMN note text DEFAULT 'a;b'",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$",
        'UPDATE "Odd Schema"."Trades" SET x = 1',
    ]
    assert [s.kind for s in statements] == ["AlterTableStmt", "CreateFunctionStmt", "UpdateStmt"]
    assert statements[0].tables == ("public.trades",)
    assert statements[2].tables == ("Odd Schema.Trades",)
    assert all(s.transactional for s in statements)


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE INDEX CONCURRENTLY trades_note ON trades (note)",
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS trades_note ON public.trades (note)",
        "DROP INDEX CONCURRENTLY trades_note",
        "REINDEX INDEX CONCURRENTLY trades_note",
        "VACUUM trades",
        "ALTER SYSTEM SET work_mem = '64MB'",
        "ALTER TYPE trade_state ADD VALUE 'frozen'",
    ],
)
def test_statements_postgresql_refuses_in_a_transaction_are_marked_to_run_alone(sql):
    (statement,) = parse_script(sql, name="m.sql")
    assert statement.transactional is False


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE INDEX trades_note ON trades (note)",
        "DROP INDEX trades_note",
        "ANALYZE trades",
        "REINDEX INDEX x",
    ],
)
def test_their_ordinary_forms_run_in_the_transaction(sql):
    (statement,) = parse_script(sql, name="m.sql")
    assert statement.transactional is True


def test_a_syntax_error_names_the_script_its_line_and_column():
    with pytest.raises(MigrationError) as caught:
        parse_script(
            "ALTER TABLE trades ADD COLUMN a int;\n  ALTR TABLE trades DROP COLUMN b;", name="0042_note.sql"
        )
    message = str(caught.value)
    assert "0042_note.sql" in message
    assert 'syntax error at or near "ALTR"' in message
    assert "line 2, column 3" in message


def test_an_empty_script_is_refused():
    with pytest.raises(MigrationError, match="holds no SQL statement"):
        parse_script("  -- nothing here\n;", name="empty.sql")


def test_drop_database_is_refused():
    with pytest.raises(MigrationError) as caught:
        check("ALTER TABLE trades ADD COLUMN a int; DROP DATABASE stellar_escrow", SMALL)
    assert "statement 2 (DROP DATABASE stellar_escrow)" in str(caught.value)
    assert "DROP DATABASE is never a migration" in str(caught.value)


@pytest.mark.parametrize("control", ["BEGIN", "COMMIT", "ROLLBACK", "START TRANSACTION", "SAVEPOINT s"])
def test_transaction_control_is_refused_the_engine_owns_transactions(control):
    with pytest.raises(MigrationError, match="transaction control"):
        check(f"{control}; ALTER TABLE trades ADD COLUMN a int", SMALL)


def test_copy_from_stdin_is_refused():
    with pytest.raises(MigrationError, match="COPY FROM STDIN"):
        check("COPY trades FROM STDIN", SMALL)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("ALTER TABLE trades ALTER COLUMN amount TYPE numeric(30, 7)", "changes the type of column amount"),
        ("CREATE INDEX trades_amount ON trades (amount)", "without CONCURRENTLY"),
        (
            "ALTER TABLE trades ADD COLUMN ref uuid DEFAULT gen_random_uuid()",
            "volatile default (gen_random_uuid())",
        ),
        ("ALTER TABLE trades ADD COLUMN r float8 DEFAULT random() * 2", "volatile default (random())"),
        ("ALTER TABLE trades ADD COLUMN seq bigserial", "as bigserial"),
        ("ALTER TABLE trades ALTER COLUMN note SET NOT NULL", "NOT NULL"),
        ("ALTER TABLE trades ADD CONSTRAINT positive CHECK (amount > 0)", "without NOT VALID"),
        ("VACUUM FULL trades", "VACUUM FULL"),
    ],
)
def test_a_long_lock_on_a_large_table_warns_naming_the_statement_and_the_table(sql, expected):
    warnings = check(sql, LARGE).warnings

    assert len(warnings) == 1, warnings
    assert expected in warnings[0]
    assert f"statement 1 ({sql[:40]}" in warnings[0]
    assert "public.trades (~5,000,000 rows, 800.0 MB)" in warnings[0]


def test_the_same_statements_on_a_small_table_do_not_warn():
    sql = """
        ALTER TABLE trades ALTER COLUMN amount TYPE numeric(30, 7);
        CREATE INDEX trades_amount ON trades (amount);
        ALTER TABLE trades ADD COLUMN ref uuid DEFAULT gen_random_uuid();
    """
    assert check(sql, SMALL).warnings == ()


def test_a_table_large_by_its_bytes_alone_warns():
    sizes = {"public.trades": TableSize(rows=10, bytes=SETTINGS.large_table_bytes)}
    assert len(check("CREATE INDEX trades_amount ON trades (amount)", sizes).warnings) == 1


def test_what_takes_no_long_lock_does_not_warn_on_a_large_table():
    sql = """
        ALTER TABLE trades ADD COLUMN note text DEFAULT 'x';
        ALTER TABLE trades ADD COLUMN at timestamptz DEFAULT now();
        CREATE INDEX CONCURRENTLY trades_note ON trades (note);
        ALTER TABLE trades ADD CONSTRAINT positive CHECK (amount > 0) NOT VALID;
    """
    assert check(sql, LARGE).warnings == ()


def test_a_check_survives_its_round_trip_through_json():
    checked = check(
        "ALTER TABLE trades ADD COLUMN note text; CREATE INDEX CONCURRENTLY i ON trades (note)", LARGE
    )

    assert ScriptCheck.from_dict(checked.as_dict()) == checked
    assert Statement.from_dict(checked.statements[1].as_dict()).transactional is False


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER ROLE stellar PASSWORD 'hunter2-secret'",
        "CREATE USER reporting WITH LOGIN PASSWORD 'hunter2-secret'",
        "CREATE USER MAPPING FOR reporting SERVER archive OPTIONS (user 'r', password 'hunter2-secret')",
    ],
)
def test_a_statement_that_sets_a_password_is_refused_without_showing_it(sql):
    with pytest.raises(MigrationError, match="sets a password") as caught:
        parse_script(f"SELECT 1;\n{sql};", name="m.sql")
    assert "hunter2" not in str(caught.value) and "statement 2" in str(caught.value)


def test_a_role_change_without_a_password_is_a_migration_like_any_other():
    assert [s.kind for s in parse_script("ALTER ROLE stellar CONNECTION LIMIT 50;", name="m.sql")] == [
        "AlterRoleStmt"
    ]
