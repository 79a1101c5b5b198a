"""The backup pipeline against the stack's real PostgreSQL and S3, faults included."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from datetime import UTC, datetime, timedelta

import pytest

from stellar_ops.backup.dump import BackupJob, verify_upload
from stellar_ops.core.errors import BackupError, PrerequisiteError
from stellar_ops.core.processes import unprivileged_user
from stellar_ops.dr.engine.restore import RESTORED_DB, recover
from stellar_ops.postgres import catalog
from stellar_ops.postgres.binaries import find_binaries
from stellar_ops.postgres.server import LocalPgServer
from stellar_ops.postgres.target import PgTarget, connect
from tests.support.faults import PgDumpKiller, PgDumpWatcher
from tests.support.fixtures import published as published_objects

pytestmark = pytest.mark.integration

SLOT = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def make_job(stack, ops, target: PgTarget | None = None, **backup) -> BackupJob:
    if backup:
        ops.update(backup=backup)
    return BackupJob(
        target or stack.db, ops.store(), ops.config.backup, find_binaries(ops.config.backup.pg_bin_dir)
    )


def take_backup(job: BackupJob, slot: datetime = SLOT, token: str = "t1"):
    draft = job.dump(slot, run_id="test-run", token=token)
    return job.publish(draft, verify_upload(job.store, draft, job.binaries))


def live_counts(stack) -> dict[str, int]:
    with connect(stack.db) as conn:
        return catalog.count_rows(conn, catalog.list_tables(conn))


def sha256_of(store, key: str) -> str:
    digest = hashlib.sha256()
    for chunk in store.iter_chunks(key):
        digest.update(chunk)
    return digest.hexdigest()


def test_backup_is_published_with_an_exact_manifest_and_local_copy(stack, ops):
    job = make_job(stack, ops)
    manifest = take_backup(job)
    store = ops.store()
    key = f"{ops.prefix}stellar_escrow_20261120T020000Z.dump.zst"
    assert ops.objects() == published_objects(key)
    assert manifest.key == key
    assert manifest.row_counts == live_counts(stack)
    assert manifest.row_counts["public.trades"] > 0
    assert manifest.row_counts["public.events"] > 0
    assert manifest.sha256 == sha256_of(store, key)
    assert manifest.size_bytes == store.head(key)["ContentLength"]
    assert store.head(key)["ServerSideEncryption"] == "AES256"
    with connect(stack.db) as conn:
        assert manifest.schema_fingerprint == catalog.fingerprint(catalog.schema_of(conn))
    assert "public.trades_escrow_idx" in manifest.schema_["indexes"]
    assert manifest.server_version.startswith("15.")
    assert "pg_dump (PostgreSQL) 15" in manifest.pg_dump_version
    assert manifest.dump_format == "custom"
    assert manifest.compression == "zstd"
    assert manifest.dag_run_id == "test-run"
    assert manifest.slot == SLOT
    assert manifest.verification is not None
    assert "pg_restore full read" in manifest.verification.checks
    local = ops.local_dir / "stellar_escrow_20261120T020000Z.dump.zst"
    assert hashlib.sha256(local.read_bytes()).hexdigest() == manifest.sha256
    assert sorted(p.name for p in ops.local_dir.iterdir()) == [local.name, local.name + ".globals.sql"]
    roles = (ops.local_dir / (local.name + ".globals.sql")).read_bytes()
    assert ops.store().get_bytes(manifest.globals_key) == roles
    assert hashlib.sha256(roles).hexdigest() == manifest.globals_sha256
    assert b"CREATE ROLE stellar;" in roles and b"PASSWORD" not in roles
    stored = store.get_json(key + ".manifest.json")
    assert stored["format_version"] == 2
    assert stored["sha256"] == manifest.sha256


def test_row_counts_are_taken_in_the_dumps_own_snapshot(stack, ops, server_dir):
    with connect(stack.db) as conn:
        conn.execute("DROP TABLE IF EXISTS snapshot_probe")
        conn.execute("CREATE TABLE snapshot_probe (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())")
    stop = threading.Event()

    def keep_inserting() -> None:
        with connect(stack.db) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO snapshot_probe DEFAULT VALUES")

    writer = threading.Thread(target=keep_inserting)
    writer.start()
    try:
        manifest = take_backup(make_job(stack, ops, local_dir=None))
    finally:
        stop.set()
        writer.join()
    live = live_counts(stack)["public.snapshot_probe"]
    promised = manifest.row_counts["public.snapshot_probe"]
    assert live > promised, "rows were inserted while the dump ran"

    server = LocalPgServer(server_dir / "restore", run_as=unprivileged_user("postgres"))
    server.init()
    server.start()
    try:
        from stellar_ops.backups.source import ResolvedBackup

        backup = ResolvedBackup("s3", manifest.key, "custom", SLOT.isoformat(), "verified")
        recover(server.target(), ops.store(), backup, manifest, server_dir, jobs=2, binaries=find_binaries())
        with connect(server.target(RESTORED_DB)) as conn:
            restored = catalog.count_rows(conn, catalog.list_tables(conn))
    finally:
        server.remove()
        with connect(stack.db) as conn:
            conn.execute("DROP TABLE IF EXISTS snapshot_probe")
    assert restored["public.snapshot_probe"] == promised
    assert restored == manifest.row_counts


def test_plain_format_is_the_old_scripts_sql_gz(stack, ops):
    manifest = take_backup(make_job(stack, ops, format="plain", compression_level=6))
    assert manifest.key.endswith("stellar_escrow_20261120T020000Z.sql.gz")
    assert manifest.compression == "gzip"
    assert "dump trailer" in manifest.verification.checks
    head = ops.store().head(manifest.key)
    assert head["Metadata"]["stellar-ops-manifest"] == "1"


def test_pg_dump_killed_mid_stream_leaves_nothing_and_a_retry_succeeds(stack, ops):
    job = make_job(stack, ops, part_size_mb=5)
    store = ops.store()
    with PgDumpKiller(after_bytes=2 << 20) as killer, pytest.raises(BackupError, match="killed by signal 9"):
        job.dump(SLOT, run_id="r", token="try1")
    assert len(killer.killed) == 1
    assert ops.objects() == []  # no final key, no incoming object
    assert store.unfinished_uploads(ops.prefix) == []
    assert list(ops.local_dir.iterdir()) == []  # the partial local copy is gone

    manifest = take_backup(job, token="try2")
    assert ops.objects() == published_objects(manifest.key)


@pytest.mark.parametrize("size", [0, 1, 5 << 20, (5 << 20) + 1, (12 << 20) + 123])
def test_multipart_upload_stores_exactly_what_was_written(ops, size):
    """Empty, short, exact-multiple and ragged last parts all come back byte for byte."""
    store = ops.store()
    data = os.urandom(size)
    upload = store.multipart(f"{ops.prefix}blob", part_size=5 << 20, max_in_flight=2)
    for start in range(0, size, 777_777):  # writes that straddle part boundaries
        upload.write(data[start : start + 777_777])
    upload.complete()
    assert store.get_bytes(f"{ops.prefix}blob") == data
    assert store.unfinished_uploads(ops.prefix) == []


def test_a_table_the_backup_role_cannot_read_is_named(stack, ops):
    """A failed count ends the snapshot pg_dump imports; the error names the table, not the snapshot."""
    owner = stack.superuser.with_dbname(stack.db.dbname)
    with connect(owner) as conn:
        conn.execute("CREATE TABLE public.aaa_private_ledger (id bigint)")
    try:
        with pytest.raises(BackupError, match="permission denied for table aaa_private_ledger") as failure:
            make_job(stack, ops).dump(SLOT, run_id="r", token="t1")
        assert "snapshot" not in str(failure.value).replace("the dump's snapshot", "")
        assert ops.objects() == []
        assert ops.store().unfinished_uploads(ops.prefix) == []
    finally:
        with connect(owner) as conn:
            conn.execute("DROP TABLE public.aaa_private_ledger")


def test_s3_outage_during_upload_fails_cleanly_and_a_retry_succeeds(stack, stack_handle, ops):
    job = make_job(stack, ops, part_size_mb=5, local_dir=None, progress_interval_seconds=0.001)
    stopped = []

    def stop_s3_once(message: str) -> None:
        if message.startswith("dumped") and not stopped:
            stack_handle.stop_s3()
            stopped.append(message)

    try:
        with pytest.raises(BackupError, match="S3"):
            job.dump(SLOT, run_id="r", token="try1", say=stop_s3_once)
    finally:
        stack_handle.start_s3()
    assert stopped
    store = ops.store()
    assert ops.objects() == []
    manifest = take_backup(job, token="try2")
    assert ops.objects() == published_objects(manifest.key)
    assert store.unfinished_uploads(ops.prefix) == []  # the first try's upload was aborted


def test_wrong_password_is_a_clear_error_without_the_password(stack, ops):
    wrong = PgTarget(stack.db.host, stack.db.port, stack.db.user, stack.db.dbname, "Wr0ng-Secret-Pass!")
    job = make_job(stack, ops, target=wrong)
    with pytest.raises(PrerequisiteError) as error:
        job.check_prerequisites(SLOT)
    message = str(error.value)
    assert "password authentication failed" in message
    assert "stellar@127.0.0.1" in message
    assert "Wr0ng-Secret-Pass!" not in message
    assert stack.db_password not in message


def test_the_password_reaches_pg_dump_only_through_its_environment(stack, ops):
    with PgDumpWatcher() as watcher:
        take_backup(make_job(stack, ops, local_dir=None))
    dumps = [
        (argv, env)
        for argv, env in zip(watcher.argv, watcher.environ, strict=True)
        if "--snapshot" in " ".join(argv)
    ]
    assert len(dumps) == 1, watcher.argv
    for argv in watcher.argv:  # the dump and the --version probes
        assert not any(stack.db_password in part for part in argv)
    assert dumps[0][1].get("PGPASSWORD") == stack.db_password


def test_missing_bucket_is_named(stack, ops):
    ops.update(backup={"bucket": "no-such-bucket"})
    job = BackupJob(
        stack.db,
        ops.store().__class__(stack.s3_client(), "no-such-bucket"),
        ops.config.backup,
        find_binaries(),
    )
    with pytest.raises(PrerequisiteError, match="S3 bucket 'no-such-bucket' does not exist"):
        job.check_prerequisites(SLOT)


def test_unwritable_local_backup_directory_is_named(stack, ops):
    job = make_job(stack, ops, local_dir="/proc/stellar-backups")
    with pytest.raises(
        PrerequisiteError, match="local backup directory '/proc/stellar-backups' is not writable"
    ):
        job.check_prerequisites(SLOT)


def test_pg_dump_older_than_the_server_is_refused(stack, ops, tmp_path):
    # PostgreSQL 14's client is not installable here: this stand-in answers --version like it.
    old = tmp_path / "pg14"
    old.mkdir()
    script = old / "pg_dump"
    script.write_text('#!/bin/sh\necho "pg_dump (PostgreSQL) 14.11"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    for program in ("pg_dumpall", "pg_restore", "psql"):
        os.symlink(find_binaries().path(program), old / program)
    job = make_job(stack, ops, pg_bin_dir=str(old))
    with pytest.raises(PrerequisiteError, match=r"pg_dump 14 .* is older than the server \(15"):
        job.check_prerequisites(SLOT)


def test_a_verified_backup_of_the_slot_is_detected(stack, ops):
    job = make_job(stack, ops, local_dir=None)
    assert not job.check_prerequisites(SLOT).verified_backup_exists
    take_backup(job)
    assert job.check_prerequisites(SLOT).verified_backup_exists
    assert not job.check_prerequisites(SLOT + timedelta(days=1)).verified_backup_exists


def test_a_server_major_outside_the_supported_ones_is_refused_naming_it(stack, ops):
    job = make_job(stack, ops, supported_server_majors=[16, 17])
    with pytest.raises(
        PrerequisiteError, match=r"major 15 is not in backup.supported_server_majors \[16, 17\]"
    ):
        job.check_prerequisites(SLOT)
