"""The archive's layout (keys, WAL names, the base backup record) and the retention plan, pure."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from stellar_ops.core.errors import BackupError
from stellar_ops.pitr import layout
from stellar_ops.pitr.catalog import BaseBackups, Unfinished, window_of
from stellar_ops.pitr.layout import BaseBackupRecord, parse_segment, parse_wal_key
from stellar_ops.pitr.retention import plan
from stellar_ops.postgres.pitr import PitrConfig

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
WALS = "pitr/stellar/wals/"


def record(backup_id: str, start_wal: str, *, stop_minutes: int = 2) -> BaseBackupRecord:
    start = layout.backup_time(backup_id)
    return BaseBackupRecord(
        backup_id=backup_id,
        server="stellar",
        system_identifier="7400000000000000001",
        timeline=1,
        pg_version_num=150010,
        start_lsn=f"{int(start_wal[8:16], 16):X}/{int(start_wal[16:], 16) * 0x1000000 + 0x28:X}",
        start_wal=start_wal,
        start_time=start,
        stop_lsn="0/0",
        stop_wal=start_wal,
        stop_time=start + timedelta(minutes=stop_minutes),
        raw_bytes=100,
        stored_bytes=10,
        sha256="0" * 64,
    )


def wal(name: str, suffix: str = ".zst") -> layout.WalFile:
    parsed = parse_wal_key(f"{WALS}{name[:16]}/{name}{suffix}", 1, NOW)
    assert parsed is not None
    return parsed


def test_keys_and_ids():
    assert (
        layout.tar_key("pitr", "stellar", "20261207T030000Z")
        == "pitr/stellar/base/20261207T030000Z/base.tar.zst"
    )
    assert layout.record_key("pitr/", "stellar", "20261207T030000Z").endswith("/20261207T030000Z/backup.json")
    assert layout.backup_id_for(datetime(2026, 12, 7, 4, 5, 6, tzinfo=UTC)) == "20261207T040506Z"
    assert layout.backup_id_of_key("pitr/stellar/base/20261207T030000Z/base.tar.zst", "pitr", "stellar") == (
        "20261207T030000Z"
    )
    assert layout.backup_id_of_key("pitr/stellar/base/.write-probe-1", "pitr", "stellar") is None


def test_wal_names_parse_and_order_by_position():
    assert parse_segment("000000010000000A000000FF").position == (0xA, 0xFF)
    with pytest.raises(ValueError, match="not a WAL segment"):
        parse_segment("00000001000000000000001")
    assert wal("000000010000000000000003").kind == "segment"
    assert wal("000000010000000000000003.00000028.backup").kind == "backup"
    assert wal("000000020000000000000003.partial").kind == "partial"
    history = parse_wal_key(f"{WALS}0000000200000000/00000002.history.zst")
    assert history is not None and (history.kind, history.timeline, history.position) == ("history", 2, None)
    assert parse_wal_key(f"{WALS}junk.txt") is None
    # (log, seg) ordering: 0/FF comes before 1/00 whatever the timeline
    assert wal("0000000200000000000000FF").position < wal("000000010000000100000000").position


def test_lsn_to_segment():
    assert layout.segment_of_lsn("0/2000028", 1) == "000000010000000000000002"
    assert layout.segment_of_lsn("1/3000000", 1, end=True) == "000000010000000100000002"
    assert layout.segment_of_lsn("1/3000000", 1) == "000000010000000100000003"
    assert layout.history_file_name("0/2000028", 1) == "000000010000000000000002.00000028.backup"


def test_the_record_round_trips_and_names_what_is_wrong():
    one = record("20261201T030000Z", "000000010000000000000010")
    assert BaseBackupRecord.from_json(one.to_json()) == one
    assert one.to_json()["stop_time"].endswith("Z") and one.to_json()["format_version"] == 1
    broken = {**one.to_json(), "timeline": "x"}
    with pytest.raises(BackupError, match="s3://b/k is not a valid base backup record"):
        BaseBackupRecord.from_json(broken, source="s3://b/k")
    missing = {k: v for k, v in one.to_json().items() if k != "stop_time"}
    with pytest.raises(BackupError, match="lacks stop_time"):
        BaseBackupRecord.from_json(missing)
    with pytest.raises(BackupError, match="format_version 2"):
        BaseBackupRecord.from_json({**one.to_json(), "format_version": 2})


def test_min_count_is_never_below_one():
    with pytest.raises(ValueError, match="base_backup_min_count"):
        PitrConfig(base_backup_min_count=0)


def _plan(records, wals, *, keep_days=14, min_count=2, unfinished=()):
    backups = BaseBackups(complete=list(records), unfinished=list(unfinished))
    for r in records:
        backups.keys[r.backup_id] = [
            layout.record_key("pitr", "stellar", r.backup_id),
            layout.tar_key("pitr", "stellar", r.backup_id),
        ]
    return plan(
        backups,
        list(wals),
        now=NOW,
        keep_days=keep_days,
        min_count=min_count,
        unfinished_hours=24,
        prefix="pitr",
        server="stellar",
    )


def test_the_only_base_backup_is_never_deleted_whatever_its_age_or_the_config():
    old = record("20250101T030000Z", "000000010000000000000005")
    segments = [wal(f"0000000100000000000000{n:02X}") for n in range(3, 8)]
    decided = _plan([old], segments, keep_days=1, min_count=0)
    assert decided.kept_backups == [old.backup_id] and decided.deleted_backups == []
    # WAL from its start on is kept; what is before it no base backup can use
    deleted = {k.rsplit("/", 1)[-1] for k in decided.delete_keys}
    assert deleted == {"000000010000000000000003.zst", "000000010000000000000004.zst"}


def test_retention_keeps_every_segment_a_kept_backup_needs_and_the_history_files():
    old = record("20261101T030000Z", "000000010000000000000010")
    middle = record("20261124T030000Z", "0000000100000001000000F0")
    new = record("20261206T030000Z", "000000020000000200000001")
    wals = [
        wal("00000001000000000000000F"),
        wal("000000010000000000000010"),
        wal("000000010000000000000010.00000028.backup"),
        wal("0000000100000001000000EF"),
        wal("0000000100000001000000F0.00000028.backup"),
        wal("0000000100000001000000F0"),
        wal("0000000100000001000000F1.partial"),
        wal("000000020000000200000000"),
        parse_wal_key(f"{WALS}0000000200000000/00000002.history.zst"),
    ]
    decided = _plan([old, middle, new], wals, keep_days=14, min_count=1)
    assert decided.deleted_backups == [old.backup_id]
    assert decided.kept_backups == [new.backup_id, middle.backup_id]
    assert decided.wal_kept_from == middle.start_wal
    deleted = [k.rsplit("/", 1)[-1] for k in decided.delete_keys]
    # the old backup's record goes before its tar
    assert deleted[:2] == ["backup.json", "base.tar.zst"]
    assert sorted(deleted[2:]) == [
        "00000001000000000000000F.zst",
        "000000010000000000000010.00000028.backup.zst",
        "000000010000000000000010.zst",
        "0000000100000001000000EF.zst",
    ]
    assert not any("history" in k for k in deleted)


def test_no_complete_base_backup_deletes_no_wal_and_a_stale_unfinished_one_goes():
    stale = Unfinished(
        "20261201T030000Z", ("pitr/stellar/base/20261201T030000Z/base.tar.zst",), NOW - timedelta(days=2)
    )
    fresh = Unfinished("20261207T025000Z", ("pitr/stellar/base/20261207T025000Z/base.tar.zst",), NOW)
    decided = _plan([], [wal("000000010000000000000003")], unfinished=[stale, fresh])
    assert decided.delete_keys == list(stale.keys)
    assert decided.wal_deleted == 0 and decided.wal_kept == 1


def test_the_window_runs_from_the_oldest_stop_to_the_newest_archived_wal():
    old = record("20261130T030000Z", "000000010000000000000010")
    new = replace(record("20261206T030000Z", "000000010000000000000020"))
    newest = replace(wal("000000010000000000000030"), last_modified=NOW)
    found = window_of([new, old], [wal("000000010000000000000010"), newest])
    assert found.oldest == old.stop_time and found.newest == NOW
    assert found.seconds == (NOW - old.stop_time).total_seconds()
    assert found.newest_wal == "000000010000000000000030"
    archived = NOW - timedelta(minutes=1)
    assert window_of([old], [newest], archived).newest == archived
    empty = window_of([], [newest])
    assert (empty.oldest, empty.seconds) == (None, 0.0)
