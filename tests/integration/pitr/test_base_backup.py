"""A physical base backup of the stack's cluster, streamed by pg_basebackup into the stack's S3:
a complete one lands with its record written last; a failure leaves no backup.json and names the
cause."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile

import pytest
import zstandard

from stellar_ops.core.errors import BackupError
from stellar_ops.pitr import layout
from stellar_ops.pitr.base_backup import take_base_backup
from stellar_ops.postgres.pitr import PitrConfig
from stellar_ops.postgres.target import connect
from stellar_ops.storage.s3 import S3Store

pytestmark = pytest.mark.integration

BUCKET = "stellar-backups"


def _config(request: pytest.FixtureRequest) -> PitrConfig:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:50]
    return PitrConfig(prefix=f"t/{name}/pitr", server_name="stellar")


def _store(stack) -> S3Store:
    return S3Store(stack.s3_client(), BUCKET, encryption="AES256")


def _keys(store: S3Store, config: PitrConfig) -> list[str]:
    return sorted(o.key for o in store.list_objects(layout.server_root(config.prefix, config.server_name)))


def test_a_base_backup_lands_complete_with_its_record_last(stack):
    config = PitrConfig()  # the stack's archive: pitr/stellar/
    store = _store(stack)
    lines: list[str] = []
    record = take_base_backup(stack.superuser, store, config, say=lines.append)

    tar_key = layout.tar_key(config.prefix, config.server_name, record.backup_id)
    record_key = layout.record_key(config.prefix, config.server_name, record.backup_id)
    here = sorted(o.key for o in store.list_objects(tar_key.rsplit("/", 1)[0] + "/"))
    assert here == [record_key, tar_key]
    stored = layout.BaseBackupRecord.from_json(store.get_json(record_key))
    assert stored == record
    with connect(stack.superuser) as conn:
        system_identifier = str(
            conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0]
        )
        version_num = int(conn.info.server_version)
    assert (record.system_identifier, record.pg_version_num, record.server) == (
        system_identifier,
        version_num,
        "stellar",
    )
    assert record.start_time <= record.stop_time
    assert layout.parse_segment(record.start_wal).position <= layout.parse_segment(record.stop_wal).position
    assert layout.lsn_to_int(record.start_lsn) < layout.lsn_to_int(record.stop_lsn)

    body = store.get_bytes(tar_key)
    assert len(body) == record.stored_bytes and hashlib.sha256(body).hexdigest() == record.sha256
    assert store.head(tar_key)["ServerSideEncryption"] == "AES256"
    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body)).read()
    assert len(raw) == record.raw_bytes
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        names = set(tar.getnames())
        label = tar.extractfile("backup_label").read().decode()  # type: ignore[union-attr]
    assert {"PG_VERSION", "global/pg_control", "backup_label"} <= names
    assert f"START WAL LOCATION: {record.start_lsn} (file {record.start_wal})" in label
    assert "START TIME: " in label and record.start_time <= record.stop_time
    # -X none: the server waited until the last segment was archived
    wal_key = f"{layout.wal_root('pitr', 'stellar')}{record.stop_wal[:16]}/{record.stop_wal}.zst"
    assert store.exists(wal_key), wal_key


def test_an_archive_elsewhere_than_the_config_says_fails_naming_it(stack, request):
    config = _config(request)
    store = _store(stack)
    with pytest.raises(BackupError, match="is not in the WAL archive .* pitr.prefix and pitr.server_name"):
        take_base_backup(stack.superuser, store, config)
    assert _keys(store, config) == []


def test_a_refused_connection_leaves_no_backup_json_and_names_the_cause(stack, request):
    config = _config(request)
    store = _store(stack)
    wrong = stack.superuser

    # the checks pass over the right password; pg_basebackup itself then fails: its own role lacks REPLICATION
    with connect(stack.superuser) as conn:
        conn.execute("DROP ROLE IF EXISTS pitr_norepl")
        conn.execute("CREATE ROLE pitr_norepl LOGIN PASSWORD 'pw-norepl'")
    try:
        from dataclasses import replace

        wrong = replace(stack.superuser, user="pitr_norepl", password="pw-norepl")
        with pytest.raises(Exception, match="lacks REPLICATION"):
            take_base_backup(wrong, store, config)
    finally:
        with connect(stack.superuser) as conn:
            conn.execute("DROP ROLE IF EXISTS pitr_norepl")
    assert _keys(store, config) == []


def test_pg_basebackup_killed_in_the_middle_leaves_no_backup_json(stack, request, monkeypatch):
    from stellar_ops.pitr import base_backup

    config = _config(request)
    store = _store(stack)
    real_stream = base_backup._stream

    def killed_midway(process, upload, *args, **kwargs):
        assert process.stdout is not None
        process.stdout.read(1 << 20)
        process.kill()
        return real_stream(process, upload, *args, **kwargs)

    monkeypatch.setattr(base_backup, "_stream", killed_midway)
    with pytest.raises(BackupError, match="pg_basebackup was killed by signal 9"):
        take_base_backup(stack.superuser, store, config)
    assert _keys(store, config) == []
    assert store.unfinished_uploads(layout.server_root(config.prefix, config.server_name)) == []


def test_a_wrong_password_fails_naming_it_and_leaves_nothing(stack, request):
    from dataclasses import replace

    from stellar_ops.core.errors import PrerequisiteError

    config = _config(request)
    store = _store(stack)
    wrong = replace(stack.superuser, password="not-the-password")
    with pytest.raises(PrerequisiteError, match="password authentication failed") as info:
        take_base_backup(wrong, store, config)
    assert "not-the-password" not in str(info.value)
    assert _keys(store, config) == []
