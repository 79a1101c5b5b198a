"""
# dr_restore_test: prove the backups restore

**Schedule:** 04:00 UTC on the 1st of each month. When `dr.trigger_on_new_backup` is true,
`db_backup` also starts a run for each backup it publishes (its `backup` param set to the new
key); otherwise no run is started, so no run does nothing.
**Severity:** P2 (DisasterRecoveryTestFailed). **Owner:** platform.

## What it does
1. `resolve_backup`: the `backup` param: `latest`, an S3 key, or an absolute local path. A
   scheduled or backfilled run for month M tests the newest backup taken before the end of M.
   An unknown key fails with the nearest existing keys.
2. `check_backup`: streams the backup: size and sha256 against its manifest (a mismatch fails
   here, before any restore), compression frames, and a full `pg_restore` read. A legacy
   `.sql.gz` without manifest gets its gzip integrity and dump trailer checked, with a warning.
3. `create_scratch` (setup): `local` reserves a scratch server that `restore_backup` runs on its
   own worker (initdb on a free port); `docker` starts a `postgres:<major>` container.
4. `restore_backup`: downloads the backup again (checked on the way), restores it
   (`pg_restore -j`, or `psql -v ON_ERROR_STOP=1`), and records exact row counts, the schema
   and the sanity queries' outcome, which wait in the bucket (`<backup.prefix>.incoming/`, or
   `dr.work_dir` for a local backup) for the checks; XCom carries where. RTO = download + restore.
5. `verify_row_counts`, `verify_schema`, `verify_sanity_queries`: each compares the restored
   database with the manifest and fails with a verdict naming what differs.
6. `restore_to_moment`: the point-in-time rehearsal, when `dr.pitr_rehearsal` is `on`, or `auto`
   (the default) and a complete base backup is in the archive (otherwise it says why it skipped).
   It commits a canary, closes its WAL segment and waits until it is archived (the newest moment
   surely in the archive), chooses a random second from then back to `dr.pitr_lookback_hours`
   (24) ago or the oldest base backup's end, and recovers the base backup before it plus the WAL
   up to it into a scratch server of its own, on the worker (barman-cloud-wal-restore from
   `pitr.tools_dir`). RTO = fetch + replay + promote.
7. `verify_canaries`: every canary row (`stellar_ops_canary`, one every few seconds from
   `stellar-ops pitr canary`) committed at or before that second is in the recovered server, and
   none after it; the verdict names the first missing or extra ids and their commit times.
8. `drop_scratch` (teardown): always removes the scratch server, failures included, unless
   `keep_scratch_on_failure` is set, and whatever a dead worker left of the rehearsal's (which
   `restore_to_moment` removes itself, failures included: its error quotes the recovery's log).
9. `publish_report`: `<backup key>.dr_report.json` beside the backup (with a `pitr` section:
   moment, time reached, base backup, RTO, RPO reached), metrics `stellar_dr_test_success`,
   `stellar_dr_restore_seconds` (RTO), `stellar_dr_backup_age_seconds` (RPO),
   `stellar_dr_pitr_success`, `stellar_dr_pitr_rto_seconds`, `stellar_dr_pitr_rpo_seconds`, and a
   one-line summary when it passed.
10. `confirm_success`: the run's verdict: green only when every step above succeeded, red when
   any of them failed, whatever the report says.

A backfilled run for month M tests the newest backup taken before the end of M (as a scheduled
run does); a manual run tests the `backup` param (`latest` by default).

## Is it safe to re-run?
Yes. It only reads the backup and writes its report; the scratch server is private to the run.

## When it fails
- *checksum mismatch / size mismatch*: the object in S3 is not what was backed up. Treat that
  backup as lost: check the previous one with `stellar-ops backups verify KEY` and take a new
  backup now.
- *row counts / schema failed*: the restore is incomplete: read the verdict for the tables.
- *pg_restore failed / psql stopped at the first failing statement*: the message quotes it.
- *did not start*: the scratch server could not start (disk, port, `dr.scratch_settings`).
- *point-in-time canaries failed*: the recovery stopped short of its moment (canaries missing:
  a WAL segment missing from the archive, or archiving lagging) or went past it (canaries after
  it present). The verdict names the ids and commit times; check `wal_archive` in the health
  check and the archive under `pitr.prefix`.
- *not archived within ...*: the segment the rehearsal closed did not reach the archive in
  `dr.pitr_archive_wait_seconds`: WAL archiving is broken or slow (see the `wal_archive` check).

## Triage
P2: the safety net is unproven. Fix today; if the newest backup does not restore, escalate to P1.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import CronTriggerTimetable, Param, TriggerRule, setup, task, teardown

from stellar_ops.adapters import dr as steps
from stellar_ops.adapters.common.dag import procedure_dag
from stellar_ops.adapters.common.queues import docker_queue


@procedure_dag(
    "dr_restore_test",
    schedule=CronTriggerTimetable("0 4 1 * *", timezone="UTC"),
    doc=__doc__,
    execution_timeout=timedelta(hours=2),
    params={
        "backup": Param(
            "latest",
            type="string",
            minLength=1,
            description="'latest', an S3 key (or file name) of a backup, or an absolute local path",
        ),
        "scratch_backend": Param(
            "local",
            type="string",
            enum=["local", "docker"],
            description="local: initdb on the worker; docker: a postgres container",
        ),
        "keep_scratch_on_failure": Param(
            False, type="boolean", description="Keep the scratch server after a failure, for debugging"
        ),
    },
)
def dr_restore_test() -> None:
    @task
    def resolve_backup(params: dict | None = None) -> dict:
        return steps.resolve_backup((params or {})["backup"])

    @task
    def check_backup(resolved: dict) -> dict:
        return steps.check_backup(resolved)

    @setup
    @task(**docker_queue())
    def create_scratch(params: dict | None = None) -> dict:
        return steps.create_scratch((params or {})["scratch_backend"])

    @task(**docker_queue())
    def restore_backup(resolved: dict, handle: dict, params: dict | None = None) -> dict:
        return steps.restore_backup(resolved, handle, (params or {})["keep_scratch_on_failure"])

    @task
    def verify_row_counts(resolved: dict, restored: dict) -> dict:
        return steps.verify_row_counts(resolved, restored)

    @task
    def verify_schema(resolved: dict, restored: dict) -> dict:
        return steps.verify_schema(resolved, restored)

    @task
    def verify_sanity_queries(resolved: dict, restored: dict) -> dict:
        return steps.verify_sanity_queries(resolved, restored)

    @task
    def restore_to_moment(handle: dict) -> dict:
        return steps.restore_to_moment(handle)

    @task
    def verify_canaries(recovered: dict) -> dict | None:
        return steps.verify_canaries(recovered)

    @teardown
    @task(**docker_queue())
    def drop_scratch(handle: dict, params: dict | None = None) -> list:
        return steps.drop_scratch(handle, (params or {})["keep_scratch_on_failure"])

    @task(trigger_rule=TriggerRule.ALL_DONE, execution_timeout=timedelta(minutes=10))
    def publish_report(params: dict | None = None) -> dict:
        return steps.publish_report((params or {})["scratch_backend"])

    resolved = resolve_backup()
    checked = check_backup(resolved)
    scratch = create_scratch()
    checked >> scratch
    restored = restore_backup(resolved, scratch)
    recovered = restore_to_moment(scratch)
    restored >> recovered
    verdicts = [
        verify_row_counts(resolved, restored),
        verify_schema(resolved, restored),
        verify_sanity_queries(resolved, restored),
        verify_canaries(recovered),
    ]
    removed = drop_scratch(scratch)
    verdicts >> removed >> publish_report()


dr_restore_test()
