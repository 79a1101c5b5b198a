"""Retention of base backups and WAL on the stack's S3, in a scratch prefix of objects made for the
test: never the only base backup, never a segment a kept base backup needs, never a .history file;
the window from what is there."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from stellar_ops.pitr import catalog, layout
from stellar_ops.pitr.layout import BaseBackupRecord
from stellar_ops.pitr.retention import apply_retention
from stellar_ops.postgres.pitr import PitrConfig
from stellar_ops.storage.s3 import S3Store

pytestmark = pytest.mark.integration

BUCKET = "stellar-backups"
NOW = datetime.now(UTC).replace(microsecond=0)


def _config(request: pytest.FixtureRequest, **fields) -> PitrConfig:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:50]
    return PitrConfig(prefix=f"t/{name}/pitr", server_name="stellar", **fields)


def _record(backup_id: str, start_wal: str) -> BaseBackupRecord:
    start = layout.backup_time(backup_id)
    return BaseBackupRecord(
        backup_id=backup_id,
        server="stellar",
        system_identifier="7400000000000000001",
        timeline=int(start_wal[:8], 16),
        pg_version_num=150010,
        start_lsn="0/28",
        start_wal=start_wal,
        start_time=start,
        stop_lsn="0/100",
        stop_wal=start_wal,
        stop_time=start + timedelta(minutes=1),
        raw_bytes=10,
        stored_bytes=4,
        sha256="0" * 64,
    )


def _put_backup(
    store: S3Store, config: PitrConfig, record: BaseBackupRecord, *, complete: bool = True
) -> None:
    store.put_bytes(layout.tar_key(config.prefix, config.server_name, record.backup_id), b"tar!")
    if complete:
        key = layout.record_key(config.prefix, config.server_name, record.backup_id)
        store.put_bytes(key, record.dumps(), "application/json")


def _put_wal(store: S3Store, config: PitrConfig, name: str) -> str:
    directory = name[:16] if not name.endswith(".history") else f"{name[:8]}00000000"
    key = f"{layout.wal_root(config.prefix, config.server_name)}{directory}/{name}.zst"
    store.put_bytes(key, b"wal")
    return key


def _ago(days: float) -> str:
    return layout.backup_id_for(NOW - timedelta(days=days))


def _names(store: S3Store, config: PitrConfig) -> set[str]:
    root = layout.server_root(config.prefix, config.server_name)
    return {o.key.removeprefix(root) for o in store.list_objects(root)}


@pytest.fixture
def store(stack) -> S3Store:
    return S3Store(stack.s3_client(), BUCKET, encryption="AES256")


def test_the_only_base_backup_and_the_wal_it_needs_stay_whatever_their_age(store, request):
    config = _config(request, base_backup_keep_days=1, base_backup_min_count=1)
    only = _record(_ago(400), "000000010000000000000005")
    _put_backup(store, config, only)
    for n in range(3, 8):
        _put_wal(store, config, f"0000000100000000000000{n:02X}")
    _put_wal(store, config, "000000010000000000000005.00000028.backup")

    decided = apply_retention(store, config, now=NOW)
    assert decided.kept_backups == [only.backup_id] and decided.deleted_backups == []
    left = _names(store, config)
    assert f"base/{only.backup_id}/backup.json" in left and f"base/{only.backup_id}/base.tar.zst" in left
    wal_left = sorted(n.rsplit("/", 1)[-1] for n in left if n.startswith("wals/"))
    assert wal_left == [
        "000000010000000000000005.00000028.backup.zst",
        "000000010000000000000005.zst",
        "000000010000000000000006.zst",
        "000000010000000000000007.zst",
    ]


def test_old_base_backups_go_with_the_wal_only_they_needed_and_history_files_stay(store, request):
    config = _config(request, base_backup_keep_days=14, base_backup_min_count=1)
    old = _record(_ago(40), "000000010000000000000010")
    kept_old = _record(_ago(10), "0000000100000001000000FE")
    newest = _record(_ago(1), "000000020000000200000001")
    for record in (old, kept_old, newest):
        _put_backup(store, config, record)
    unfinished_stale = _record(_ago(3), "000000020000000100000000")
    unfinished_fresh = replace(_record(_ago(0), "000000020000000200000005"))
    _put_backup(store, config, unfinished_stale, complete=False)
    _put_backup(store, config, unfinished_fresh, complete=False)
    needed = [
        "0000000100000001000000FE",
        "0000000100000001000000FF",
        "000000010000000200000000.partial",
        "000000020000000200000000",
        "000000020000000200000001",
    ]
    not_needed = ["000000010000000000000010", "000000010000000000000011", "0000000100000001000000FD"]
    for name in [*needed, *not_needed, "00000002.history"]:
        _put_wal(store, config, name)

    dry = apply_retention(store, config, now=NOW, dry_run=True)
    assert dry.deleted_backups == [old.backup_id] and dry.wal_deleted == len(not_needed)
    before = _names(store, config)

    decided = apply_retention(store, config, now=NOW)
    # retention's clock is NOW, but S3's LastModified of the "stale" unfinished one is now: only its age counts
    assert decided.deleted_backups == [old.backup_id]
    assert decided.kept_backups == [newest.backup_id, kept_old.backup_id]
    assert decided.wal_kept_from == kept_old.start_wal
    left = _names(store, config)
    assert before - left == {
        f"base/{old.backup_id}/backup.json",
        f"base/{old.backup_id}/base.tar.zst",
        *(f"wals/{n[:16]}/{n}.zst" for n in not_needed),
    }
    assert "wals/0000000200000000/00000002.history.zst" in left
    for name in needed:
        assert f"wals/{name[:16]}/{name}.zst" in left, name

    records = catalog.complete_base_backups(store, config.prefix, config.server_name)
    assert [r.backup_id for r in records] == [kept_old.backup_id, newest.backup_id]
    listing = catalog.list_base_backups(store, config.prefix, config.server_name)
    assert sorted(u.backup_id for u in listing.unfinished) == sorted(
        [unfinished_stale.backup_id, unfinished_fresh.backup_id]
    )
    found = catalog.window(store, config.prefix, config.server_name)
    assert found.oldest == kept_old.stop_time
    assert found.newest is not None and found.newest >= NOW - timedelta(minutes=5)
    assert found.seconds > 9 * 86400


def test_an_unfinished_base_backup_is_removed_once_it_is_a_day_old(store, request):
    config = _config(request)
    unfinished = _record(_ago(0), "000000010000000000000003")
    _put_backup(store, config, unfinished, complete=False)
    # an unfinished upload is judged by its object's age in S3: measured from now, not from when
    # this module was imported (a long session runs this test an hour or more after that)
    now = datetime.now(UTC)
    assert apply_retention(store, config, now=now).delete_keys == []
    later = apply_retention(store, config, now=now + timedelta(hours=25))
    assert later.delete_keys == [layout.tar_key(config.prefix, config.server_name, unfinished.backup_id)]
    assert _names(store, config) == set()
