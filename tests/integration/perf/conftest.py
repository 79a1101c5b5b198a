"""A workload on the stack's PostgreSQL that the performance checks must see for what it is."""

from __future__ import annotations

import pytest

from stellar_ops.cli import env
from stellar_ops.postgres.target import connect


def reset_statements(stack) -> None:
    with connect(stack.superuser) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


def repeat(stack, sql: str, times: int) -> None:
    with connect(stack.db) as conn:
        for _ in range(times):
            conn.execute(sql)


@pytest.fixture
def runtime(stack, ops):
    """A step runtime on the stack, as ``stellar-ops`` builds it, with the test's config."""

    def build(**perf):
        if perf:
            ops.update(perf=perf)
        return env.runtime()

    return build


@pytest.fixture
def workload(stack):
    """Sequential scans on a large table, an unused, a duplicate and an invalid index, dead
    tuples, and sequences near their maximum; removed after the test, so the other tests of the
    session see the stack's database as it was (pg_dump leaves an invalid index out, for one)."""
    with connect(stack.db) as conn:
        conn.execute(
            """
            DROP TABLE IF EXISTS perf_big, perf_dead, perf_ids, perf_dupes CASCADE;
            DROP SEQUENCE IF EXISTS perf_seq, perf_wide;
            CREATE TABLE perf_big (id bigint PRIMARY KEY, account int NOT NULL, note text NOT NULL);
            INSERT INTO perf_big SELECT g, g % 100, md5(g::text) FROM generate_series(1, 20000) g;
            CREATE INDEX perf_big_account ON perf_big (account);
            CREATE INDEX perf_big_account_note ON perf_big (account, note);
            CREATE TABLE perf_dead (id int PRIMARY KEY, note text) WITH (autovacuum_enabled = false);
            INSERT INTO perf_dead SELECT g, 'x' FROM generate_series(1, 20000) g;
            UPDATE perf_dead SET note = 'y';
            CREATE SEQUENCE perf_seq AS integer MAXVALUE 1000;
            SELECT setval('perf_seq', 950);
            CREATE TABLE perf_ids (id int PRIMARY KEY);
            CREATE SEQUENCE perf_wide AS bigint OWNED BY perf_ids.id;
            SELECT setval('perf_wide', 1800000000);
            ANALYZE perf_big;
            """
        )
        # A unique index built concurrently over duplicate values fails and stays INVALID.
        conn.execute("INSERT INTO perf_ids VALUES (1)")
        conn.execute("CREATE TABLE perf_dupes (v int)")
        conn.execute("INSERT INTO perf_dupes VALUES (1), (1)")
        with pytest.raises(Exception, match="could not create unique index"):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY perf_dupes_v ON perf_dupes (v)")
        for _ in range(5):
            conn.execute("SELECT count(*) FROM perf_big WHERE note LIKE '%abc%'")
        conn.execute("SELECT pg_stat_force_next_flush()")
    yield
    with connect(stack.db) as conn:
        conn.execute("DROP TABLE IF EXISTS perf_big, perf_dead, perf_ids, perf_dupes CASCADE")
        conn.execute("DROP SEQUENCE IF EXISTS perf_seq, perf_wide")
