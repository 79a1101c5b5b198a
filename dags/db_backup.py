"""
# db_backup: the daily PostgreSQL backup to S3

**Schedule:** daily 02:00 UTC. **Severity:** P2 (BackupFailed). **Owner:** platform.

A backup that cannot be restored is worth nothing, so every backup is read back and checked
before it counts, and a failed run never replaces or deletes a good backup.

## What it does
1. `check_prerequisites`: the database answers; pg_dump is at least the server's major version;
   the bucket exists and is writable; the local backup directory (if any) is writable. If a
   verified backup for this run's slot already exists the run skips, unless `force` is set.
2. `dump_to_s3`: `pg_dump` (custom format through zstd, or plain SQL through gzip) streamed into
   an S3 multipart upload under `<prefix>.incoming/`, hashed (sha256) on the fly, with the
   optional local copy written in the same pass. Row counts of every table and the schema are
   read in the dump's own snapshot. A failure aborts the upload: nothing appears as a backup.
3. `verify_backup`: reads the upload back: size, sha256, compression frames, and
   `pg_restore --list` plus a full `pg_restore` read (or, for `.sql.gz`, full decompression
   and pg_dump's completion trailer).
4. `publish_backup`: copies the verified upload to
   `<prefix>stellar_escrow_<YYYYmmddTHHMMSSZ>.<ext>`, writes `<key>.manifest.json`, and emits
   the `stellar_escrow_backup` Asset with the key and manifest in its extra.
5. `apply_retention` (after a successful backup only): S3 backups older than
   `backup.retention_days`, always keeping the newest `backup.min_keep` restorable ones; local
   copies older than `backup.local_retention_days`; unfinished uploads. `dry_run` only logs.
6. `notify_success` and `publish_metrics` (`stellar_backup_*` on the Pushgateway and the API).

The slot is the run's logical date (`run_after` for manual runs), so a re-run or a backfill of
the same slot writes the same key.

## Is it safe to re-run?
Yes. A re-run of a slot that has a verified backup skips; with `force` it takes a new backup
and replaces the slot's object only after the new one is verified.

## When it fails
- *cannot connect to PostgreSQL*: check `stellar_db` and the server; the password is never
  logged, so check it in the connection.
- *pg_dump N is older than the server*: install the matching postgresql-client, or set
  `backup.pg_bin_dir`.
- *S3 bucket ... does not exist / is not writable*: check `backup.bucket` and `stellar_s3`.
- *pg_dump was killed / exited with code N*: see the task log for pg_dump's own error; clear
  `dump_to_s3` to retry. The previous backups are untouched.
- *checksum mismatch / cannot read the archive*: the upload is corrupt; clear `dump_to_s3`.

## Triage
P2: fix today. Check `stellar-ops backups list` (or the bucket) for the newest verified
backup's age; if it is over 26 hours, escalate.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, TriggerRule, task

from stellar_ops.adapters import backup as steps
from stellar_ops.adapters.common.assets import BACKUP_ASSET
from stellar_ops.adapters.common.dag import procedure_dag


@procedure_dag(
    "db_backup",
    schedule="0 2 * * *",
    doc=__doc__,
    execution_timeout=timedelta(hours=3),
    params={
        "force": Param(
            False,
            type="boolean",
            description="Take a new backup even if a verified backup for this slot already exists",
        ),
        "dry_run": Param(False, type="boolean", description="Retention only logs what it would delete"),
    },
)
def db_backup() -> None:
    @task
    def check_prerequisites(params: dict | None = None) -> dict:
        return steps.check_prerequisites(force=bool((params or {}).get("force")))

    @task(pool="stellar_db_heavy")
    def dump_to_s3() -> dict:
        return steps.dump_to_s3()

    @task(execution_timeout=timedelta(hours=1))
    def verify_backup(draft: dict) -> dict:
        return steps.verify_backup(draft)

    @task(outlets=[BACKUP_ASSET], execution_timeout=timedelta(minutes=30))
    def publish_backup(draft: dict, verification: dict) -> dict:
        return steps.publish_backup(draft, verification)

    @task(execution_timeout=timedelta(minutes=30))
    def apply_retention(published: dict, params: dict | None = None) -> dict:
        return steps.apply_retention(published, dry_run=bool((params or {}).get("dry_run")))

    @task(execution_timeout=timedelta(minutes=5))
    def notify_success(published: dict) -> None:
        steps.notify_success(published)

    @task(trigger_rule=TriggerRule.ALL_DONE, execution_timeout=timedelta(minutes=5))
    def publish_metrics() -> dict | None:
        return steps.publish_metrics()

    checked = check_prerequisites()
    draft = dump_to_s3()
    checked >> draft
    published = publish_backup(draft, verify_backup(draft))
    apply_retention(published) >> publish_metrics()
    notify_success(published)


db_backup()
