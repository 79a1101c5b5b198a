"""What a platform lead reads in db_migration's approval: the rehearsal, the backup, the way back."""

from __future__ import annotations

from stellar_ops.changes.migration import APPROVAL_REPORT_CHARS, approval_body

CHECKED = {
    "change_id": "migration-20261207T101500Z-1a2b3c",
    "migration": {"name": "migrations/0042.sql", "statements": 2, "sha256": "ab" * 32, "warnings": ["w1"]},
    "rollback": {"name": "migrations/0042_down.sql", "statements": 2, "sha256": "cd" * 32, "warnings": []},
}
BACKUP = {"key": "backups/k.dump.zst", "url": "s3://stellar-backups/backups/k.dump.zst"}


def test_the_body_names_the_backup_the_report_the_warnings_and_the_rollback():
    body = approval_body(CHECKED, BACKUP, {"summary": "Duration: 0.20 s\nLocks: AccessExclusiveLock"})
    assert "s3://stellar-backups/backups/k.dump.zst" in body
    assert "AccessExclusiveLock" in body and "- w1" in body
    assert "rollback script migrations/0042_down.sql" in body


def test_without_a_rollback_script_the_way_back_is_the_restore():
    body = approval_body({**CHECKED, "rollback": None}, BACKUP, {"summary": "ok"})
    assert "no rollback script; a db_restore of the pre-change backup" in body


def test_a_long_report_is_cut_and_points_at_the_whole_one():
    report = "\n".join(f"+ column public.t{i}.c{i} text" for i in range(500))
    body = approval_body(CHECKED, BACKUP, {"summary": report}, record_url="s3://b/changes/x/record.json")
    assert len(body) < APPROVAL_REPORT_CHARS + 1000
    assert "+ column public.t0.c0 text" in body and "public.t499" not in body
    assert "(the whole report: s3://b/changes/x/record.json)" in body
