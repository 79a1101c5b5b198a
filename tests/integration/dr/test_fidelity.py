"""The drill restores what a real database holds, and fails, naming the object, when it does not.

A database like a production one (``tests/support/sql/rich_database.sql``: roles and grants,
default privileges, large objects, a partitioned table with a foreign key, triggers, views, a
materialized view, sequences, CHECK/UNIQUE/EXCLUDE constraints, functions, types, an extension) is
backed up by the backup procedure, and restored with ``pg_restore -j``; the result is compared
with the source itself.
"""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stellar_ops.backup.config import BackupConfig
from stellar_ops.backup.dump import BackupJob, verify_upload
from stellar_ops.catalogue import source
from stellar_ops.dr import verdicts
from stellar_ops.dr.engine import restore
from stellar_ops.dr.scratch import LocalScratch, scratch_name
from stellar_ops.postgres import catalog
from stellar_ops.postgres.binaries import find_binaries
from stellar_ops.postgres.target import PgTarget, connect

pytestmark = pytest.mark.integration

SLOT = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


def back_up(target: PgTarget, ops, **settings) -> tuple[source.ResolvedBackup, object]:
    """A verified backup of ``target`` under the test's prefix; the resolved backup and manifest."""
    store = ops.store()
    config = BackupConfig(bucket="stellar-backups", prefix=ops.prefix, **settings)
    job = BackupJob(target, store, config, find_binaries())
    draft = job.dump(SLOT, run_id=None, token="fidelity", say=lambda _: None)
    manifest = job.publish(draft, verify_upload(store, draft, find_binaries()))
    backup = source.resolve(store, ops.prefix, manifest.key, reference=SLOT, month_scoped=False)
    return backup, manifest


def restore_into(server: PgTarget, ops, backup, manifest, *, work: Path, said: list[str] | None = None):
    store = ops.store()
    job = restore.RestoreJob(
        backup,
        store,
        manifest,
        server,
        find_binaries(),
        jobs=2,
        globals_sql=source.load_globals(store, backup, manifest),
    )
    return restore.recover(job, work, say=(said.append if said is not None else lambda _: None))


def schema_dump(target: PgTarget) -> str:
    result = subprocess.run(
        ["pg_dump", "--schema-only", "--no-comments"],
        capture_output=True,
        text=True,
        env=target.client_env(),
        check=True,
    )
    # pg_dump 15.14+ writes a random \restrict key on each run
    return re.sub(r"^\\(un)?restrict \S+$", "", result.stdout, flags=re.MULTILINE)


def content(target: PgTarget) -> dict[str, object]:
    """Each table's row count and a checksum of its rows, and each large object's md5."""
    with connect(target) as conn:
        found: dict[str, object] = {}
        for table in catalog.list_tables(conn):
            schema, name = table.split(".", 1)
            found[table] = conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM \"{schema}\".\"{name}\" t"
            ).fetchone()
        found["large objects"] = conn.execute(
            "SELECT array_agg(md5(lo_get(oid)) ORDER BY md5(lo_get(oid))) FROM pg_largeobject_metadata"
        ).fetchone()[0]
        found["sequences"] = catalog.sequence_values(conn)
    return found


@pytest.fixture
def scratch_server(server_dir):
    with LocalScratch(
        name=scratch_name("fidelity"), work_dir=server_dir, binaries=find_binaries()
    ).running() as server:
        yield server


def test_the_restore_gives_back_a_production_like_database_exactly(
    rich_database, ops, scratch_server, tmp_path
):
    backup, manifest = back_up(rich_database, ops)
    assert manifest.globals_key == manifest.key + ".globals.sql"
    roles = ops.store().get_bytes(manifest.globals_key).decode()
    assert (
        "CREATE ROLE app_reader;" in roles
        and 'CREATE ROLE "Audit Team";' in roles
        and "PASSWORD" not in roles
    )
    expected_schema, expected_content = schema_dump(rich_database), content(rich_database)

    result = restore_into(scratch_server.target(), ops, backup, manifest, work=tmp_path)

    assert result.warnings == [], result.warnings
    target = scratch_server.target(restore.RESTORED_DB)
    assert schema_dump(target) == expected_schema
    assert content(target) == expected_content
    observation = restore.observe(scratch_server.target(), [])
    verdict = verdicts.schema(
        manifest, observation["schema"], ["ledger.bulk"], 3, observation["sequence_values"]
    )
    assert verdict.passed, verdict.problems
    counts = verdicts.row_counts(manifest, observation["row_counts"], [])
    assert counts.passed, counts.problems
    assert expected_content["large objects"] and len(expected_content["large objects"]) == 5
    assert expected_content["ledger.bulk"][0] == 60_000


def test_each_kind_of_difference_in_the_restored_copy_is_named(rich_database, ops, scratch_server, tmp_path):
    backup, manifest = back_up(rich_database, ops)
    restore_into(scratch_server.target(), ops, backup, manifest, work=tmp_path)
    with connect(scratch_server.target(restore.RESTORED_DB)) as conn:
        conn.execute("DROP TRIGGER customers_audit ON ledger.customers")
        conn.execute("ALTER TABLE ledger.customers DROP CONSTRAINT customers_email_check")
        conn.execute(
            "ALTER TABLE ledger.customers ADD CONSTRAINT customers_email_check CHECK (email LIKE '%@%.%')"
        )
        conn.execute("SELECT setval('ledger.invoice_numbers', 1001)")
        conn.execute("REVOKE SELECT ON ledger.bulk FROM app_reader")
        conn.execute(
            "CREATE OR REPLACE VIEW ledger.customer_balances AS SELECT c.id, c.handle, 0::numeric AS balance FROM ledger.customers c"
        )
        conn.execute("DROP FUNCTION ledger.balance(bigint) CASCADE")
        conn.execute("ALTER TYPE ledger.entry_kind ADD VALUE 'refund'")
        conn.execute("DROP EXTENSION pgcrypto")
        conn.execute("ALTER TABLE ledger.reservations DROP CONSTRAINT reservations_during_excl")
    observation = restore.observe(scratch_server.target(), [])

    verdict = verdicts.schema(
        manifest, observation["schema"], ["ledger.bulk"], 3, observation["sequence_values"]
    )

    assert not verdict.passed
    named = "\n".join(verdict.problems)
    for expected in (
        "trigger ledger.customers.customers_audit is missing",
        "constraint ledger.customers.customers_email_check differs",
        "sequence ledger.invoice_numbers is at 1001, manifest says at least 4242",
        "privileges of ledger.bulk differs",
        "view ledger.customer_balances differs",
        "function ledger.balance(customer bigint) is missing",
        "type ledger.entry_kind differs",
        "extension pgcrypto is missing",
        "constraint ledger.reservations.reservations_during_excl is missing",
        "index ledger.reservations_during_excl is missing",
    ):
        assert expected in named, (expected, verdict.problems)


def test_a_backup_without_roles_still_restores_with_the_missing_roles_named(
    rich_database, ops, scratch_server, tmp_path
):
    backup, manifest = back_up(rich_database, ops, include_globals=False)
    assert manifest.globals_key is None
    with connect(scratch_server.target()) as conn:
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'app_reader'").fetchone()[0] == 0
    result = restore_into(scratch_server.target(), ops, backup, manifest, work=tmp_path)
    assert set(result.roles_created) == {"Audit Team", "app_reader", "app_writer", "stellar"}
    (warning,) = result.warnings
    assert "stored no roles" in warning and "app_reader" in warning and "Audit Team" in warning
    observation = restore.observe(scratch_server.target(), [])
    verdict = verdicts.schema(
        manifest, observation["schema"], ["ledger.bulk"], 3, observation["sequence_values"]
    )
    assert verdict.passed, verdict.problems


def test_a_changed_roles_sidecar_fails_the_drill_as_a_checksum_mismatch(rich_database, ops):
    backup, manifest = back_up(rich_database, ops)
    store = ops.store()
    store.put_bytes(manifest.globals_key, store.get_bytes(manifest.globals_key) + b"CREATE ROLE intruder;\n")
    from stellar_ops.core.errors import VerificationError

    with pytest.raises(
        VerificationError, match=r"checksum mismatch for s3://stellar-backups/.*\.globals\.sql"
    ):
        source.load_globals(store, backup, manifest)


def test_an_invalid_index_of_the_source_does_not_fail_the_drill(rich_database, ops, scratch_server, tmp_path):
    # a failed CREATE INDEX CONCURRENTLY leaves an invalid index behind, which pg_dump leaves out
    with connect(rich_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.half_built (x int)")
        conn.execute("INSERT INTO public.half_built VALUES (1), (1)")
        with pytest.raises(Exception, match="could not create unique index"):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY half_built_x ON public.half_built (x)")
        assert conn.execute(
            "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = 'half_built_x'::regclass"
        ).fetchone()[0]
    try:
        backup, manifest = back_up(rich_database, ops)
        assert "public.half_built_x" not in manifest.to_document()["schema"]["indexes"]
        restore_into(scratch_server.target(), ops, backup, manifest, work=tmp_path, said=[])
        observation = restore.observe(scratch_server.target(), [])
        verdict = verdicts.schema(manifest, observation["schema"], [], 3, observation["sequence_values"])
        assert verdict.passed, verdict.problems
    finally:
        with connect(rich_database, autocommit=True) as conn:
            conn.execute("DROP TABLE public.half_built")
