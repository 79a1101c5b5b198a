"""The backup pipeline against the stack's real PostgreSQL and S3, faults included."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from datetime import UTC, datetime, timedelta

import pytest

from stellar_ops.backup import retention
from stellar_ops.backup.dump import KEY_ATTEMPTS, BackupJob, verify_upload
from stellar_ops.catalogue.inventory import list_backups
from stellar_ops.catalogue.keys import backup_key, parse_backup_key
from stellar_ops.core.errors import BackupError, PrerequisiteError
from stellar_ops.core.processes import unprivileged_user
from stellar_ops.dr.engine.restore import RESTORED_DB, RestoreJob, recover
from stellar_ops.postgres import catalog
from stellar_ops.postgres.binaries import find_binaries
from stellar_ops.postgres.server import LocalPgServer
from stellar_ops.postgres.target import PgTarget, connect
from tests.support.faults import PgDumpKiller, PgDumpWatcher
from tests.support.fixtures import published as published_objects

pytestmark = pytest.mark.integration

SLOT = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def named_by_its_snapshot(manifest, prefix: str) -> None:
    """The backup's key is its snapshot's time (to the second), which is now, whatever the slot."""
    assert manifest.snapshot_at is not None
    assert manifest.key == backup_key(prefix, manifest.snapshot_at, manifest.dump_format)
    assert abs((datetime.now(UTC) - manifest.snapshot_at).total_seconds()) < 120
    assert manifest.started_at <= manifest.snapshot_at <= manifest.finished_at


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


def test_backup_is_published_with_an_exact_manifest_and_local_copy(stack, ops, canary_paused):
    # the stack's canary writer commits a row every few seconds: paused, the live counts read
    # after the backup are the ones its snapshot saw
    job = make_job(stack, ops)
    manifest = take_backup(job)
    store = ops.store()
    key = manifest.key
    named_by_its_snapshot(manifest, ops.prefix)
    assert ops.objects() == published_objects(key)
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
    assert manifest.note is not None and "not of its slot 2026-11-20 02:00:00 UTC" in manifest.note
    assert manifest.verification is not None
    assert "pg_restore full read" in manifest.verification.checks
    local = ops.local_dir / key.rsplit("/", 1)[1]
    assert hashlib.sha256(local.read_bytes()).hexdigest() == manifest.sha256
    assert sorted(p.name for p in ops.local_dir.iterdir()) == [local.name, local.name + ".globals.sql"]
    roles = (ops.local_dir / (local.name + ".globals.sql")).read_bytes()
    assert ops.store().get_bytes(manifest.globals_key) == roles
    assert hashlib.sha256(roles).hexdigest() == manifest.globals_sha256
    assert b"CREATE ROLE stellar;" in roles and b"PASSWORD" not in roles
    stored = store.get_json(key + ".manifest.json")
    assert stored["format_version"] == 3
    assert stored["sha256"] == manifest.sha256
    assert stored["slot"] == "2026-11-20T02:00:00Z"
    assert stored["snapshot_at"] == manifest.snapshot_at.isoformat().replace("+00:00", "Z")


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
        from stellar_ops.catalogue.source import ResolvedBackup

        backup = ResolvedBackup("s3", manifest.key, "custom", SLOT.isoformat(), "verified")
        recover(RestoreJob(backup, ops.store(), manifest, server.target(), find_binaries()), server_dir)
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
    named_by_its_snapshot(manifest, ops.prefix)
    assert manifest.key.endswith(".sql.gz")
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
    # The first try could not abort its upload while S3 was down: it is no backup, and retention
    # aborts it once it is stale.
    left = store.unfinished_uploads(ops.prefix)
    assert manifest.key not in {u["Key"] for u in left}
    assert [e.key for e in list_backups(store, ops.prefix).backups] == [manifest.key]
    plan = retention.plan_s3(
        list_backups(store, ops.prefix),
        reference=manifest.snapshot_at,
        retention_days=30,
        min_keep=1,
        stale_before=datetime.now(UTC) + timedelta(minutes=1),
        unfinished_uploads=left,
    )
    retention.apply_s3(store, plan, dry_run=False)
    assert store.unfinished_uploads(ops.prefix) == []
    assert ops.objects() == published_objects(manifest.key)


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


def test_a_missing_bucket_is_no_missing_object(stack, ops):
    """A HEAD answers both with a bare 404: the store tells them apart, so nothing that looks for
    an object (a ledger, a manifest, a key in use) reads a wrong bucket as "nothing stored yet"."""
    missing = ops.store().__class__(stack.s3_client(), "no-such-bucket")
    with pytest.raises(PrerequisiteError, match="S3 bucket 'no-such-bucket' does not exist"):
        missing.exists("audit/secrets-ledger.json")
    present = ops.store()
    assert present.exists("no/such/key.json") is False
    assert present.exists("no/such/other-key.json") is False  # the bucket is checked once


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


def test_the_verified_backup_that_covers_a_slot_is_found(stack, ops):
    job = make_job(stack, ops, local_dir=None)
    past = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0) - timedelta(days=3)
    assert job.check_prerequisites(past).cover is None
    backfilled = take_backup(job, slot=past)
    cover = job.check_prerequisites(past).cover
    assert cover is not None and cover.key == backfilled.key  # its manifest's slot
    assert "taken by a run for this slot" in cover.reason
    assert job.check_prerequisites(past + timedelta(days=1)).cover is None
    # a slot whose period holds the snapshot is covered too: the slot just before it, on the hour
    hour = backfilled.snapshot_at.replace(minute=0, second=0, microsecond=0)
    within = job.check_prerequisites(hour).cover
    assert within is not None and within.key == backfilled.key
    assert "lies within the slot's period" in within.reason
    assert job.check_prerequisites(hour + timedelta(hours=1)).cover is None  # after the snapshot

    # an unverified backup (no manifest) and an unreadable manifest cover nothing
    store = ops.store()
    unverified = backup_key(ops.prefix, past + timedelta(days=1, hours=1), "custom")
    store.put_bytes(unverified, b"no manifest")
    broken = backup_key(ops.prefix, past + timedelta(days=1, hours=2), "custom")
    store.put_bytes(broken, b"x")
    store.put_bytes(broken + ".manifest.json", b"{not json")
    said: list[str] = []
    assert job.check_prerequisites(past + timedelta(days=1), say=said.append).cover is None
    assert any("cannot be read, so it covers no slot" in line for line in said)


def test_two_backups_in_the_same_second_never_share_a_key(stack, ops):
    """A key in use (an object, or an upload under way) is waited past, never written over."""
    job = make_job(stack, ops, local_dir=None, include_globals=False)
    store = ops.store()
    now = datetime.now(UTC).replace(microsecond=0)
    squatted = {}
    for second in range(3):  # this second and the next two: a published backup, then uploads under way
        key = backup_key(ops.prefix, now + timedelta(seconds=second), "custom")
        if second == 0:
            store.put_bytes(key, b"another backup")
            store.put_json(key + ".manifest.json", {"sha256": "ab" * 32})
            squatted[key] = store.get_bytes(key)
        else:
            upload = store.client.create_multipart_upload(Bucket=store.bucket, Key=key)
            squatted[key] = upload["UploadId"]
    said: list[str] = []
    draft = job.dump(SLOT, run_id="r", token="t1", say=said.append)
    manifest = job.publish(draft, verify_upload(store, draft, job.binaries))
    taken = parse_backup_key(manifest.key, ops.prefix)
    assert taken is not None and taken.timestamp >= now + timedelta(seconds=3)
    assert manifest.key not in squatted
    assert any(
        "is in use" in line and "taking the snapshot again in the next second" in line for line in said
    )
    first = next(iter(squatted))
    assert store.get_bytes(first) == squatted[first], "the other backup is untouched"
    assert store.get_json(first + ".manifest.json") == {"sha256": "ab" * 32}
    under_way = {u["Key"]: u["UploadId"] for u in store.unfinished_uploads(ops.prefix)}
    assert under_way == {k: v for k, v in squatted.items() if k != first}, "the uploads under way go on"


def test_a_key_that_stays_in_use_is_refused_without_writing(stack, ops):
    job = make_job(stack, ops, local_dir=None, include_globals=False)
    store = ops.store()
    now = datetime.now(UTC).replace(microsecond=0)
    squatted = [
        backup_key(ops.prefix, now + timedelta(seconds=s), "custom") for s in range(KEY_ATTEMPTS + 30)
    ]
    for key in squatted:
        store.put_bytes(key, b"another backup of " + key.encode())
    with pytest.raises(
        BackupError, match=r"refusing to write over .* which is in use .* nothing was written"
    ):
        job.dump(SLOT, run_id="r", token="t1")
    assert ops.objects() == sorted(squatted)
    assert all(store.get_bytes(key) == b"another backup of " + key.encode() for key in squatted)
    assert store.unfinished_uploads(ops.prefix) == []


def test_an_upload_into_the_same_key_that_starts_beside_ours_stops_ours(stack, ops):
    """Two dumps whose snapshots fall in the same second: whichever sees the other stops."""
    job = make_job(stack, ops, local_dir=None, include_globals=False)
    store = ops.store()
    rival: dict[str, str] = {}

    def start_a_rival(message: str) -> None:
        if message.startswith("dumping") and not rival:
            key = message.split(" to s3://stellar-backups/", 1)[1].split(" ", 1)[0]
            rival[key] = store.client.create_multipart_upload(Bucket=store.bucket, Key=key)["UploadId"]

    with pytest.raises(BackupError, match="started in the same second as this backup's: this one stops"):
        job.dump(SLOT, run_id="r", token="t1", say=start_a_rival)
    assert rival
    assert ops.objects() == []
    assert [(u["Key"], u["UploadId"]) for u in store.unfinished_uploads(ops.prefix)] == list(rival.items())


def test_a_server_major_outside_the_supported_ones_is_refused_naming_it(stack, ops):
    job = make_job(stack, ops, supported_server_majors=[16, 17])
    with pytest.raises(
        PrerequisiteError, match=r"major 15 is not in backup.supported_server_majors \[16, 17\]"
    ):
        job.check_prerequisites(SLOT)
