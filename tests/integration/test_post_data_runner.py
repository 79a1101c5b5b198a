"""Building an archive's indexes and constraints as its tables load, on a real scratch server."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from stellar_ops import post_data
from stellar_ops.errors import RestoreError
from stellar_ops.pg import PgTarget, connect, find_binaries
from stellar_ops.post_data_runner import PostDataRunner

pytestmark = pytest.mark.integration

SOURCE = """
CREATE TABLE public.escrows (id bigint PRIMARY KEY, status text NOT NULL);
CREATE INDEX escrows_status_idx ON public.escrows (status);
CREATE TABLE public.events (
    id bigint PRIMARY KEY,
    escrow_id bigint NOT NULL REFERENCES public.escrows (id),
    kind text NOT NULL,
    at timestamptz NOT NULL
);
CREATE INDEX events_escrow_idx ON public.events (escrow_id, at);
CREATE INDEX events_kind_idx ON public.events (kind);
CREATE UNIQUE INDEX events_kind_at_key ON public.events (kind, at, id);
INSERT INTO public.escrows SELECT g, 'open' FROM generate_series(1, 2000) g;
INSERT INTO public.events
    SELECT g, 1 + g % 2000, 'k' || g % 7, '2026-01-01'::timestamptz + g * interval '1 second'
    FROM generate_series(1, 50000) g;
"""
CATALOG = """
SELECT 'index ' || indexrelid::regclass::text || ': ' || pg_get_indexdef(indexrelid) FROM pg_index
 WHERE indrelid IN ('public.escrows'::regclass, 'public.events'::regclass)
UNION ALL
SELECT 'constraint ' || conname || ': ' || pg_get_constraintdef(oid) FROM pg_constraint
 WHERE conrelid IN ('public.escrows'::regclass, 'public.events'::regclass)
ORDER BY 1
"""


@pytest.fixture(scope="module")
def archive(scratch: PgTarget, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A pg_dump archive of SOURCE, and what its indexes and constraints look like."""
    source = scratch.with_dbname("runner_source")
    with connect(scratch.with_dbname("postgres")) as conn:
        conn.execute("CREATE DATABASE runner_source")
    with connect(source) as conn:
        conn.execute(SOURCE)
        expected = [row[0] for row in conn.execute(CATALOG)]
    path = tmp_path_factory.mktemp("archive") / "source.dump"
    subprocess.run(
        [find_binaries().path("pg_dump"), "-Fc", "-Z0", "-f", str(path), "-d", source.dbname],
        env=source.client_env(),
        check=True,
    )
    return path, expected


@pytest.fixture
def loaded(scratch: PgTarget, archive, request: pytest.FixtureRequest) -> Iterator[PgTarget]:
    """A database with the archive's tables and data, and none of its indexes or constraints."""
    name = "runner_" + request.node.name.lower()[:40]
    with connect(scratch.with_dbname("postgres")) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    target = scratch.with_dbname(name)
    for section in ("pre-data", "data"):
        subprocess.run(
            [find_binaries().path("pg_restore"), f"--section={section}", "-d", name, str(archive[0])],
            env=target.client_env(),
            check=True,
        )
    yield target
    with connect(scratch.with_dbname("postgres")) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def plan_of(path: Path) -> post_data.Plan:
    outputs = [
        subprocess.run(
            [find_binaries().path("pg_restore"), "--section=post-data", option, str(path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for option in ("--list", "--file=-")
    ]
    return post_data.plan(*outputs)


def sessions_of(target: PgTarget) -> int:
    with connect(target) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]


def test_everything_is_built_as_the_archive_has_it_once_the_tables_are_reported(loaded, archive):
    plan = plan_of(archive[0])
    assert len(plan.early()) == 7 and plan.rest([each.list_line for each in plan.early()]) == []
    runner = PostDataRunner(loaded, 2)
    runner.start(plan)
    runner.table_loaded("public.escrows")
    runner.table_loaded("public.events")
    built = runner.finish()
    assert sorted(built) == sorted(each.list_line for each in plan.early())
    with connect(loaded) as conn:
        assert [row[0] for row in conn.execute(CATALOG)] == archive[1]
    assert sessions_of(loaded) == 0


def test_a_loaded_table_is_built_before_the_rest_are_loaded(loaded, archive):
    runner = PostDataRunner(loaded, 2)
    runner.start(plan_of(archive[0]))
    runner.table_loaded("public.escrows")
    with connect(loaded) as conn:
        for _ in range(200):
            built = conn.execute(
                "SELECT count(*) FROM pg_indexes WHERE tablename = 'escrows' AND indexname IN ('escrows_pkey', 'escrows_status_idx')"
            ).fetchone()[0]
            if built == 2:
                break
            conn.execute("SELECT pg_sleep(0.05)")
        assert built == 2
        assert conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'events'").fetchone()[0] == 0
    runner.finish()


def test_a_failing_statement_is_quoted_and_the_sessions_close(loaded, archive):
    with connect(loaded) as conn:
        conn.execute("INSERT INTO events VALUES (7, 1, 'dup', now())")  # a second row with id 7
    runner = PostDataRunner(loaded, 2)
    runner.start(plan_of(archive[0]))
    runner.table_loaded("public.escrows")
    runner.table_loaded("public.events")
    with pytest.raises(RestoreError) as error:
        runner.finish()
    message = str(error.value)
    assert "could not create unique index" in message
    assert "ADD CONSTRAINT events_pkey PRIMARY KEY (id)" in message
    assert sessions_of(loaded) == 0


def test_stop_gives_up_and_closes_the_sessions(loaded, archive):
    runner = PostDataRunner(loaded, 2)
    runner.start(plan_of(archive[0]))
    runner.table_loaded("public.escrows")
    runner.stop()
    assert sessions_of(loaded) == 0
