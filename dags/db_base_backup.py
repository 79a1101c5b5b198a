"""
# db_base_backup: the weekly physical base backup that point-in-time recovery replays WAL onto

**Schedule:** weekly, Sunday 03:00 UTC, and on demand. **Severity:** P2 (BaseBackupFailed).
**Owner:** platform. **Runbook:** PITR-BASE.

Point-in-time recovery needs a physical base backup older than the moment to recover to, and the
WAL archived since (barman-cloud archives it continuously under `pitr.prefix`). This DAG takes the
base backup: `pg_basebackup` over a replication connection of the `stellar_db` connection's role
(which needs REPLICATION), streamed through zstd into the backups bucket the way `db_backup`
streams pg_dump. No access to the data directory is needed. The daily logical backup is unchanged.

Base backups are `<pitr.prefix>/<pitr.server_name>/base/<YYYYmmddTHHMMSSZ>/base.tar.zst` with
`backup.json` beside it, written last: only a base backup with its `backup.json` is complete and
used by a recovery.

## What it does
1. `check_prerequisites`: the server archives its WAL (`archive_mode` on, `wal_level` replica),
   has no tablespace but the default ones, the role has REPLICATION, pg_basebackup is at least the
   server's major; the bucket exists and is writable.
2. `take_base_backup`: `pg_basebackup -D - -Ft -X none --checkpoint=fast` streams the cluster as
   one tar through zstd into an S3 multipart upload, hashed (sha256) on the way. `-X none` makes
   the server wait until the backup's last WAL segment is archived, so a backup that completes is
   restorable from the archive. Its start comes from the tar's `backup_label`, its stop (LSN and
   time: the earliest moment it recovers to) from the backup history file the server archived.
   Then `backup.json`. A failure aborts the upload and writes no `backup.json`.
3. `verify_base_backup`: reads the stored tar back whole: size and sha256 as recorded, a valid
   zstd stream, the recorded tar size, a tar's end.
4. `apply_retention` (after a verified base backup only): keeps the newest
   `pitr.base_backup_min_count` (at least one: the only base backup is never deleted) and those
   younger than `pitr.base_backup_keep_days`; deletes the others and every WAL segment before the
   oldest kept base backup's start (never a `.history` file, never one a kept backup needs);
   removes unfinished base backups older than `pitr.unfinished_base_backup_hours`. `dry_run` only
   logs.
5. `notify_success`: the success message with the key, size and the moment it recovers from.
6. `publish_metrics` (whatever happened upstream): `stellar_pitr_base_backup_*` and
   `stellar_pitr_window_seconds` (oldest complete base backup's stop to the newest archived WAL).
7. `confirm_success`: the run's verdict.

## Is it safe to re-run?
Yes. Each run takes a new base backup under a key of its own (its start second); earlier ones stay
untouched. A backfilled run takes a base backup now: a base backup of the past cannot be taken.

## When it fails
- *lacks REPLICATION* / *no pg_hba.conf entry for replication connection*: grant REPLICATION to
  the `stellar_db` role and admit it in pg_hba.conf.
- *does not archive its WAL*: fix WAL archiving first (runbook PITR-ARCHIVE).
- *still ran after pitr.base_backup_timeout_seconds*: the server waits for WAL to be archived:
  archiving is failing.
- *pg_basebackup exited with code N* / an S3 error: see the log's last lines; clear
  `take_base_backup`. Nothing half-written is ever taken for a base backup.

## Triage
P2: fix today. Recovery still works from the older base backups while the WAL archive runs;
`stellar-ops pitr window` shows how far back it reaches.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, TriggerRule, task

from stellar_ops.adapters import pitr as steps
from stellar_ops.adapters.common.dag import procedure_dag


@procedure_dag(
    "db_base_backup",
    schedule="0 3 * * 0",
    doc=__doc__,
    execution_timeout=timedelta(hours=1),
    params={
        "dry_run": Param(False, type="boolean", description="Retention only logs what it would delete"),
    },
)
def db_base_backup() -> None:
    @task
    def check_prerequisites() -> dict:
        return steps.check_prerequisites()

    @task(pool="stellar_db_heavy", execution_timeout=timedelta(hours=7))
    def take_base_backup() -> dict:
        return steps.take_base_backup()

    @task(execution_timeout=timedelta(hours=2))
    def verify_base_backup(taken: dict) -> dict:
        return steps.verify_base_backup(taken)

    @task(execution_timeout=timedelta(minutes=30))
    def apply_retention(verified: dict, params: dict | None = None) -> dict:
        return steps.apply_retention(verified, dry_run=bool((params or {}).get("dry_run")))

    @task(execution_timeout=timedelta(minutes=5))
    def notify_success(taken: dict, verified: dict) -> None:
        steps.notify_success(taken)

    @task(trigger_rule=TriggerRule.ALL_DONE, execution_timeout=timedelta(minutes=10))
    def publish_metrics() -> dict:
        return steps.publish_metrics()

    taken = take_base_backup()
    check_prerequisites() >> taken
    verified = verify_base_backup(taken)
    apply_retention(verified) >> publish_metrics()
    notify_success(taken, verified)


db_base_backup()
