"""A backup is verified on its way to S3, and the daily path reads nothing back and copies nothing.

Each guarantee of the former read-back, obtained now while the dump streams, is tested by
breaking it for real: a part changed between the pipeline and the S3 server (a proxy flips one
byte), an archive that pg_dump truncates yet reports success, and a byte flipped in S3 afterwards,
which the read-back of ``backups verify`` still finds.
"""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime

import boto3
import pytest

from stellar_ops.backup.dump import BackupJob, verify_upload
from stellar_ops.core.errors import BackupError, VerificationError
from stellar_ops.postgres.binaries import find_binaries
from stellar_ops.storage.s3 import S3Store, client_config
from stellar_ops_dev.stack import S3_REGION
from tests.support.corrupting_proxy import CorruptingProxy
from tests.support.fixtures import published

pytestmark = pytest.mark.integration

SLOT = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def store_through(stack, proxy: CorruptingProxy) -> S3Store:
    # The product's client options: only the parts' Content-MD5 protects them (no payload
    # SHA-256, no checksum botocore would add), so the server's refusal is the MD5's doing.
    client = boto3.client(
        "s3",
        endpoint_url=proxy.url,
        aws_access_key_id=stack.s3_access_key,
        aws_secret_access_key=stack.s3_secret_key,
        region_name=S3_REGION,
        config=client_config(),
    )
    return S3Store(client, "stellar-backups", encryption="AES256")


def job(stack, ops, store: S3Store | None = None, **backup) -> BackupJob:
    ops.update(backup={"part_size_mb": 5, **backup})
    config = ops.config.backup
    return BackupJob(stack.db, store or ops.store(), config, find_binaries(config.pg_bin_dir))


def backup(job: BackupJob, token: str = "t1"):
    draft = job.dump(SLOT, run_id="test-run", token=token)
    return job.publish(draft, verify_upload(job.store, draft, job.binaries))


def test_the_daily_path_verifies_in_flight_reading_nothing_back_and_copying_nothing(stack, ops):
    with CorruptingProxy(stack.ports["s3"], part=10_000) as proxy:  # a part that never comes
        manifest = backup(job(stack, ops, store_through(stack, proxy)))
    assert manifest.verification.method == "in-flight"
    assert {"part Content-MD5", "part list", "sha256", "pg_restore full read"} <= set(
        manifest.verification.checks
    )
    assert ops.objects() == published(manifest.key)
    dump_path = f"/stellar-backups/{manifest.key}"
    dump_requests = [r for r in proxy.requests if r.split(" ", 2)[1].split("?", 1)[0] == dump_path]
    assert not [r for r in proxy.requests if "x-amz-copy-source" in r.lower()], "an object was copied"
    assert not [r for r in dump_requests if r.startswith("GET ") and "uploadId" not in r], (
        "the dump was read back"
    )
    parts = [r for r in dump_requests if r.startswith("PUT ") and "partNumber=" in r]
    assert len(parts) >= 2 and all("content-md5:" in r.lower() for r in parts)
    assert proxy.flipped == 0


def test_a_part_changed_on_its_way_is_refused_by_the_server_and_nothing_is_published(stack, ops):
    with CorruptingProxy(stack.ports["s3"], part=2) as proxy, pytest.raises(BackupError) as failure:
        backup(job(stack, ops, store_through(stack, proxy)))
    assert proxy.flipped == 1
    assert "upload of part 2" in str(failure.value) and "BadDigest" in str(failure.value)
    assert ops.objects() == [], "a backup whose bytes were changed must leave nothing behind"
    assert ops.store().unfinished_uploads(ops.prefix) == []


def truncating_pg_dump(tmp_path, drop_bytes: int):
    """A pg_bin_dir whose pg_dump loses the end of its output yet exits 0."""
    bin_dir = tmp_path / "truncating-bin"
    bin_dir.mkdir()
    real = find_binaries()
    script = bin_dir / "pg_dump"
    script.write_text(
        "#!/bin/bash\n"
        f'if [[ "$1" == --version ]]; then exec "{real.path("pg_dump")}" --version; fi\n'
        f'"{real.path("pg_dump")}" "$@" | head -c -{drop_bytes}\n'
        "exit 0\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    for program in ("pg_dumpall", "pg_restore", "psql"):
        os.symlink(real.path(program), bin_dir / program)
    return bin_dir


@pytest.mark.parametrize(
    ("dump_format", "drop_bytes", "expected"),
    [("custom", 64, "pg_restore"), ("plain", 512, "trailer is missing")],  # the SQL's last 512: its trailer
)
def test_an_archive_truncated_by_pg_dump_is_caught_in_flight(
    stack, ops, tmp_path, dump_format, drop_bytes, expected
):
    bin_dir = truncating_pg_dump(tmp_path, drop_bytes=drop_bytes)
    broken = job(stack, ops, pg_bin_dir=str(bin_dir), format=dump_format)
    with pytest.raises(BackupError) as failure:
        backup(broken)
    assert expected in str(failure.value)
    assert ops.objects() == [], "a truncated dump must never be published"
    assert ops.store().unfinished_uploads(ops.prefix) == []


def test_a_byte_flipped_in_s3_afterwards_is_found_by_the_read_back(stack, ops):
    daily = job(stack, ops)
    manifest = backup(daily)
    store = ops.store()
    data = bytearray(store.get_bytes(manifest.key))
    data[len(data) // 2] ^= 0xFF
    store.put_bytes(manifest.key, bytes(data))
    draft = {**manifest.to_document(), "verification": manifest.verification.model_dump(mode="json")}
    with pytest.raises(VerificationError, match="checksum mismatch"):
        verify_upload(store, draft, daily.binaries, read_back=True)


def test_verify_read_back_reads_the_whole_object_before_the_manifest(stack, ops):
    from stellar_ops.backup import flow
    from stellar_ops.runtime import Runtime

    class Resources:
        def store(self):
            return ops.store()

    ops.update(backup={"verify_read_back": True})
    reading = job(stack, ops)
    draft = reading.dump(SLOT, run_id="test-run", token="t1")
    rt = Runtime(config=ops.config, resources=Resources())  # type: ignore[arg-type]
    record = flow.verify_backup(rt, draft)
    assert record["method"] == "read-back"
    assert "pg_restore full read" in record["checks"]


def test_a_re_run_of_the_slot_never_touches_its_verified_backup(stack, ops):
    import hashlib

    from tests.support.faults import PgDumpKiller

    daily = job(stack, ops)
    good = backup(daily)
    store = ops.store()
    before = {key: store.get_bytes(key) for key in published(good.key)}
    with PgDumpKiller(after_bytes=6 << 20, times=1) as killer, pytest.raises(BackupError):
        backup(daily, token="t2")
    assert killer.killed
    assert ops.objects() == published(good.key)
    assert {key: store.get_bytes(key) for key in published(good.key)} == before

    again = backup(daily, token="t3")  # a forced re-run that succeeds is a backup of its own
    assert again.key != good.key and again.snapshot_at > good.snapshot_at
    assert again.slot == good.slot == SLOT
    assert ops.objects() == sorted(published(good.key) + published(again.key))
    assert {key: store.get_bytes(key) for key in published(good.key)} == before
    assert hashlib.sha256(store.get_bytes(again.key)).hexdigest() == again.sha256
