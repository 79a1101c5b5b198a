"""
# db_backup: the daily PostgreSQL backup to S3

**Schedule:** daily 02:00 UTC. **Severity:** P2 (BackupFailed). **Owner:** platform.

A backup that cannot be restored is worth nothing, so every backup is checked on its way to S3
before it counts, and a failed run never replaces or deletes a good backup.

Backups are `<prefix>stellar_escrow_<YYYYmmddTHHMMSSZ>.<ext>`, named by the time of the dump's
snapshot: when the data is from, never the run's slot. The manifest records both the snapshot
time (`snapshot_at`) and the run's slot (its logical date, or `run_after` for a manual run).

## What it does
1. `check_prerequisites`: the database answers; its major is in `backup.supported_server_majors`
   and pg_dump is at least that major; the bucket exists and is writable; the local backup
   directory (if any) is writable. Then it looks for a verified backup that covers this run's
   slot: one whose manifest's slot is this slot, or whose snapshot was taken within the slot's
   period (from the slot up to the next 02:00 slot, 24 hours). If there is one the run skips,
   naming it in the task log, unless `force` is set.
2. `dump_to_s3`: exports a snapshot of the database; its time names the backup. `pg_dump
   --snapshot` (custom format through zstd, or plain SQL through gzip) streams straight into an
   S3 multipart upload at that final key, with the optional local copy written in the same pass.
   On the way every part carries its Content-MD5, the compressed stream is hashed (sha256) and
   read whole by `pg_restore` (or, for `.sql.gz`, decompressed to pg_dump's completion trailer),
   and the server's part list is compared with what was sent. Row counts of every table and the
   schema are read in the dump's own snapshot; the roles go beside it as `<key>.globals.sql`. The
   upload is completed only when pg_dump exited 0 and every check passed; a failure aborts it, so
   nothing appears under the key. A key already in use (a backup taken in the same second) is
   never written over: the snapshot is taken again in the next second. The draft manifest (every
   table's schema and row count) goes to `<prefix>.incoming/<name>.draft.json`; the task's XCom is
   its key and a few fields, whatever the number of tables.
3. `verify_backup`: confirms that the completed object is the size that was sent and checked, and
   reads the roles back against their sha256. With `backup.verify_read_back` it also downloads
   the whole backup and reads it again.
4. `publish_backup`: writes `<key>.manifest.json` from the draft, last: its presence is what
   makes the backup verified; then deletes the draft. It emits the `stellar_escrow_backup` Asset
   with the backup's key, its manifest's key, sha256, size and a summary (tables, rows, schema
   fingerprint) in its extra; the per-table sections stay in the manifest. A draft that a failed run leaves under `.incoming/` is
   never taken for a backup; retention removes it once it is older than
   `backup.stale_upload_hours`.
5. `apply_retention` (after a successful backup only): S3 backups older than
   `backup.retention_days` before this backup's snapshot time, always keeping the newest
   `backup.min_keep` restorable ones and never touching a newer one; local copies older than
   `backup.local_retention_days`; unfinished uploads older than `backup.stale_upload_hours`.
   `dry_run` only logs.
6. `notify_success`: the success message, with the backup's key, size and duration.
7. `publish_metrics` (whatever happened upstream): `stellar_backup_*` on the Pushgateway and the
   API, or `stellar_backup_success=0` when the backup failed.
8. `trigger_drill`: when `dr.trigger_on_new_backup` is set, starts a `dr_restore_test` run of the
   new backup (run id `drill_of__<this run's id>`, one per run even when cleared); skipped
   otherwise.
9. `confirm_success`: the run's verdict: red when any step above failed, green when they all
   succeeded or were skipped on purpose (a verified backup covers the slot, no drill asked for).

## Backfill
A backup cannot be taken of the past. A backfilled run (or a re-run long after its slot) for a
past slot S skips when a verified backup covers S. Otherwise it takes a backup now, named by its
snapshot time, records S as its slot, and says so: the task log, the manifest's `note` and the
success message read "This backup holds the data of <snapshot time>, not of its slot <S>". Restore
by the time you need, from the key's timestamp (`stellar-ops backups list`), never by the slot.

## Is it safe to re-run?
Yes. A re-run of a slot that a verified backup covers skips, so backfills and clears never make
duplicates. With `force` it takes a new backup under a key of its own; the earlier backups stay
byte for byte as they were, whatever happens to the new one.

## When it fails
- *cannot connect to PostgreSQL*: check `stellar_db` and the server; the password is never
  logged, so check it in the connection.
- *pg_dump N is older than the server*: install the matching postgresql-client, or set
  `backup.pg_bin_dir`.
- *S3 bucket ... does not exist / is not writable*: check `backup.bucket` and `stellar_s3`.
- *pg_dump was killed / exited with code N*: see the task log for pg_dump's own error; clear
  `dump_to_s3` to retry. The previous backups are untouched; an upload the failed try could not
  abort is aborted by retention once it is stale.
- *upload of part N ... BadDigest*, *cannot read the archive*, *trailer is missing*: the bytes
  were damaged on their way or the dump is incomplete; nothing was published. Clear `dump_to_s3`.
- *refusing to write over ... which is in use* or *another upload into ... started in the same
  second*: backups are being started faster than one a second (a loop, a second scheduler, the
  CLI at the same moment); nothing was written. Find the other starter, then clear `dump_to_s3`.
- *... is gone* / *is not the object that was verified* (in `verify_backup` or
  `publish_backup`): the object changed after the dump; clear `dump_to_s3`.

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
            description="Take a new backup even if a verified backup already covers this slot",
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

    @task(execution_timeout=timedelta(minutes=5))
    def trigger_drill(published: dict) -> None:
        steps.trigger_drill(published)

    checked = check_prerequisites()
    draft = dump_to_s3()
    checked >> draft
    published = publish_backup(draft, verify_backup(draft))
    apply_retention(published) >> publish_metrics()
    notify_success(published)
    trigger_drill(published)


db_backup()
