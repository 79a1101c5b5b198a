"""db_base_backup's metrics and the ``stellar-ops pitr`` commands, pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stellar_ops.cli.main import build_parser
from stellar_ops.pitr.catalog import Window
from stellar_ops.pitr.flow import metrics_of
from stellar_ops.pitr.layout import BaseBackupRecord

STOP = datetime(2026, 12, 6, 3, 2, tzinfo=UTC)
RECORD = BaseBackupRecord(
    backup_id="20261206T030000Z",
    server="stellar",
    system_identifier="1",
    timeline=1,
    pg_version_num=150010,
    start_lsn="0/2000028",
    start_wal="000000010000000000000002",
    start_time=STOP - timedelta(minutes=2),
    stop_lsn="0/2000100",
    stop_wal="000000010000000000000002",
    stop_time=STOP,
    raw_bytes=1000,
    stored_bytes=100,
    sha256="0" * 64,
)


def test_a_success_reports_the_base_backup_and_the_window():
    window = Window(STOP, STOP + timedelta(hours=5), 1, "000000010000000000000009")
    points = {m.name: m.value for m in metrics_of(RECORD, window, 12.5)}
    assert points == {
        "stellar_pitr_base_backup_success": 1.0,
        "stellar_pitr_base_backup_last_success_timestamp_seconds": STOP.timestamp(),
        "stellar_pitr_base_backup_size_bytes": 100.0,
        "stellar_pitr_base_backup_duration_seconds": 12.5,
        "stellar_pitr_window_seconds": 5 * 3600.0,
    }


def test_a_failure_reports_success_zero_and_the_window_it_still_has():
    points = {m.name: m.value for m in metrics_of(None, Window(None, None, 0, None), None)}
    assert points == {"stellar_pitr_base_backup_success": 0.0, "stellar_pitr_window_seconds": 0.0}


def test_the_pitr_commands_parse():
    parser = build_parser()
    assert parser.parse_args(["pitr", "list", "--json"]).json is True
    assert parser.parse_args(["pitr", "prune", "--dry-run"]).dry_run is True
    assert parser.parse_args(["pitr", "base-backup"]).action == "base-backup"
    assert parser.parse_args(["pitr", "window"]).action == "window"
