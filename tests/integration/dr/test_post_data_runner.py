"""Building an archive's indexes and constraints as its tables load, on a real scratch server."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from stellar_ops.catalogue.source import ResolvedBackup
from stellar_ops.core.errors import RestoreError
from stellar_ops.dr.engine import post_data, restore
from stellar_ops.dr.engine.post_data_runner import PostDataRunner
from stellar_ops.postgres import catalog
from stellar_ops.postgres.binaries import find_binaries
from stellar_ops.postgres.target import PgTarget, connect

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
SELECT 'index ' || indexrelid::regclass::text || ': ' || pg_get_indexdef(indexrelid)
       || CASE WHEN indisprimary THEN ' (primary)' ELSE '' END
  FROM pg_index WHERE indrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace)
UNION ALL
SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname || ': ' || pg_get_constraintdef(oid)
       || ' on ' || conindid::regclass::text
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
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


def plan_of(path: Path, target: PgTarget) -> post_data.Plan:
    """The archive's post-data plan, its keys in two steps on the restored ordinary tables."""
    listing, script = (
        subprocess.run(
            [find_binaries().path("pg_restore"), "--section=post-data", option, str(path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for option in ("--list", "--file=-")
    )
    with connect(target) as conn:
        ordinary = frozenset(catalog.ordinary_tables(conn))
    return post_data.plan(listing, script, ordinary_tables=ordinary)


def sessions_of(target: PgTarget) -> int:
    with connect(target) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]


def test_everything_is_built_as_the_archive_has_it_once_the_tables_are_reported(loaded, archive):
    plan = plan_of(archive[0], loaded)
    built_by_archive = [each.list_line for each in plan.early() if each.list_line]
    assert len(built_by_archive) == 7 and plan.rest(built_by_archive) == []
    assert len(plan.early()) == 7 + 2  # the two primary keys, each its index first
    runner = PostDataRunner(loaded, 2)
    runner.start(plan)
    runner.table_loaded("public.escrows")
    runner.table_loaded("public.events")
    built = runner.finish()
    assert sorted(built) == sorted(built_by_archive)
    with connect(loaded) as conn:
        assert [row[0] for row in conn.execute(CATALOG)] == archive[1]
    assert sessions_of(loaded) == 0


def test_a_loaded_table_is_built_before_the_rest_are_loaded(loaded, archive):
    runner = PostDataRunner(loaded, 2)
    runner.start(plan_of(archive[0], loaded))
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
    runner.start(plan_of(archive[0], loaded))
    runner.table_loaded("public.escrows")
    runner.table_loaded("public.events")
    with pytest.raises(RestoreError) as error:
        runner.finish()
    message = str(error.value)
    assert 'could not create unique index "events_pkey"' in message
    assert "a step of: ALTER TABLE ONLY public.events ADD CONSTRAINT events_pkey PRIMARY KEY (id)" in message
    assert sessions_of(loaded) == 0


def test_stop_gives_up_and_closes_the_sessions(loaded, archive):
    runner = PostDataRunner(loaded, 2)
    runner.start(plan_of(archive[0], loaded))
    runner.table_loaded("public.escrows")
    runner.stop()
    assert sessions_of(loaded) == 0


PARTITIONED = """
CREATE TABLE public.ledger (id bigint NOT NULL, day date NOT NULL, amount numeric NOT NULL,
                            PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
CREATE TABLE public.ledger_2025 PARTITION OF public.ledger FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE public.ledger_2026 PARTITION OF public.ledger FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE UNIQUE INDEX ledger_amount_key ON public.ledger (amount, id, day);
INSERT INTO public.ledger SELECT g, '2025-06-01'::date + g % 400, g FROM generate_series(1, 20000) g;
"""


def test_a_restore_builds_the_catalog_the_archive_has_partitioned_keys_included(scratch, tmp_path):
    """The whole restore, keys in two steps where they may be, whole on a partitioned table."""
    source = scratch.with_dbname("runner_partitioned")
    with connect(scratch.with_dbname("postgres")) as conn:
        conn.execute("CREATE DATABASE runner_partitioned")
    with connect(source) as conn:
        conn.execute(SOURCE + PARTITIONED)
        expected = [row[0] for row in conn.execute(CATALOG)]
    assert any("ledger_2026_pkey" in each for each in expected)
    archive = subprocess.run(
        [find_binaries().path("pg_dump"), "-Fc", "-Z0", "-d", source.dbname],
        capture_output=True,
        env=source.client_env(),
        check=True,
    ).stdout
    path = tmp_path / "stellar_escrow_20260101_020000.dump.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(archive))
    memory = tmp_path / "memory"
    memory.mkdir()
    tmp_path.chmod(0o755)
    backup = ResolvedBackup("local", str(path), "custom", "2026-01-01T02:00:00+00:00", "unverified")
    restore.restore_streaming(
        scratch, None, backup, None, tmp_path, jobs=2, binaries=find_binaries(), memory_dir=memory
    )
    with connect(scratch.with_dbname(restore.RESTORED_DB)) as conn:
        assert [row[0] for row in conn.execute(CATALOG)] == expected
        assert conn.execute("SELECT count(*), sum(amount) FROM ledger").fetchone() == (
            20000,
            20000 * 20001 // 2,
        )
    assert list(memory.iterdir()) == []


def test_tables_that_cannot_be_created_fail_the_restore_naming_the_statement(scratch, archive, tmp_path):
    """The data starts to stream while the tables are created; their failure is what is reported."""
    path = tmp_path / "stellar_escrow_20260101_020000.dump.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(archive[0].read_bytes()))
    tmp_path.chmod(0o755)
    backup = ResolvedBackup("local", str(path), "custom", "2026-01-01T02:00:00+00:00", "unverified")
    template = scratch.with_dbname("template1")
    with connect(template) as conn:
        conn.execute("CREATE TABLE public.events (taken int)")  # every new database has it already
    try:
        with pytest.raises(RestoreError) as error:
            restore.restore_streaming(scratch, None, backup, None, tmp_path, jobs=2, binaries=find_binaries())
    finally:
        with connect(template) as conn:
            conn.execute("DROP TABLE public.events")
    message = str(error.value)
    assert message.startswith("pg_restore (tables) failed")
    assert 'relation "events" already exists' in message
    assert sessions_of(scratch.with_dbname(restore.RESTORED_DB)) == 0
