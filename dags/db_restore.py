"""
# db_restore: the real recovery, into a server you name

**Schedule:** none: triggered by hand when the database is lost or must be rebuilt.
**Severity:** P1 (DatabaseRestoreFailed). **Owner:** platform. **Runbook:** RB-001.

## What it does
From a logical backup (`target_time` empty), or to a moment of the WAL archive (`target_time`: an
ISO-8601 time such as `2026-12-07T06:30:00Z`, or `latest`; the `backup` param is then not used).
1. `resolve_backup`: the `backup` param: `latest`, an S3 key (wherever it is in the bucket, legacy
   ones at the bucket root included), or an absolute local path. With `target_time`: the newest
   base backup that ends before it (`latest`: the newest); a time outside the recoverable window
   (the oldest base backup's end to the newest archived WAL) fails naming the window.
2. `check_backup`: streams it once: size and sha256 against its manifest, frames, the archive.
   With `target_time`: the base backup is there at its recorded size, and no WAL segment it needs
   up to the target is missing (else it fails naming the segment). Nothing touches the target
   before this passes.
3. `check_target`: everything the restore will need from the `target_conn_id` connection's
   server (default `stellar_restore`), each missing one named on its own line, before anyone is
   asked to approve: a server at least the backup's pg_dump major, the extensions it needs, a
   role that may create the database (CREATEDB) and the backup's roles it lacks (CREATEROLE), for
   `replace` a role that may rename the old database aside (its owner, or a superuser), and free
   space when the server is on this machine. The target database (`target_database`, default a
   new one named after the backup's time) is not the backup's own source and does not exist,
   unless `replace` is set: then it will be renamed aside to `<name>_before_<time>`, never
   dropped. A missing privilege or setting fails at once, without retries.
4. `approve_restore`: a platform lead approves the plan (backup, age, size, target, database,
   what is renamed) under *Required Actions*. Reject, and nothing changes. The leads' route is
   told when it opens, with a link; reminded after `approvals.remind_after_hours`; the next
   severity's route is told before it times out, and with no answer in 24 hours the run fails.
5. `approve_replace`: only with `replace`: a second platform lead, neither the one who triggered
   the run nor the first approver, approves restoring over the existing database. Skipped
   otherwise. Who answers each approval comes from `approvals.steps`.
6. `restore_backup`: renames the old database aside if asked, creates the backup's roles, and
   restores it with `pg_restore -j` (`dr.restore_jobs`), as the drill does. With `target_time`:
   the base backup is fetched into a temporary server on this worker (`dr.work_dir`), the WAL is
   replayed to the target and the server promoted; its database (the `stellar_db` connection's)
   is copied into the target with `pg_dump -Fc` and the same `pg_restore -j`, then the temporary
   server is removed.
7. `verify_row_counts`, `verify_schema`, `verify_sanity_queries`: the drill's checks, on the
   restored database (with `target_time`: the copy against the recovered server it came from).
8. `publish_report`: `<backup key>.restore_report.json` (with `target_time`:
   `<pitr.prefix>/<server>/restores/<time>.restore_report.json`, with the time actually reached),
   `stellar_restore_seconds`, a message.
9. `confirm_success`: the run's verdict: red when the restore or any check failed, even though
   the report is published; green when it passed, or when an approval was rejected.

## Is it safe to re-run?
Yes. It writes nothing before the approval, and never drops a database: with `replace`, what
was there is renamed aside each time.

## When it fails
- *cannot take this restore*: each line names what the target lacks: a newer server, an
  extension, a privilege (grant the connection's role CREATEDB/CREATEROLE, or name a connection
  whose role has them), free space. Nothing was written; fix it and trigger again.
- *is the backup's own source* / *already exists*: choose another database, or set `replace`.
- *no answer within 24 hours*: nobody approved in time; trigger again when a lead is available.
  An approval can be answered only by the people named in it: ask one of them.
- *is before the oldest base backup ends* / *is after the newest archived WAL*: the message gives
  the recoverable window; choose a moment inside it (or run `db_base_backup` for a newer start).
- *WAL segment ... is missing*: the archive has a hole; no moment after the segment before it can
  be reached from that base backup. Choose an earlier moment, or restore the segment (RB-001).
- *restore stopped*: the message says what was written: nothing (the database was not created),
  or a partly restored database left for inspection; the previous one (if `replace`) is intact
  under its `_before_` name. Fix the cause, then Clear `restore_backup` (or trigger again).

A backfill does not apply: the DAG has no schedule.
- If Airflow itself is down, run the same steps from a terminal:
  `stellar-ops restore --backup KEY --target postgresql://user@host:5432/postgres` (docs/restore.md,
  "Disaster recovery"), or `stellar-ops restore --target-time ISO|latest --target URL` (or
  `--data-dir DIR` on the database host: the whole recovered server, stopped cleanly).

## Triage
P1: the database is down or lost. Respond within 15 minutes; follow RB-001.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, TriggerRule, task

from stellar_ops.adapters import recovery as steps
from stellar_ops.adapters.common.approvals import Approval
from stellar_ops.adapters.common.dag import procedure_dag

CHECKS = ("verify_row_counts", "verify_schema", "verify_sanity_queries")


@procedure_dag(
    "db_restore",
    schedule=None,
    doc=__doc__,
    execution_timeout=timedelta(hours=6),
    params={
        "backup": Param(
            "latest", type="string", minLength=1, description="'latest', an S3 key, or an absolute local path"
        ),
        "target_conn_id": Param(
            "stellar_restore",
            type="string",
            minLength=1,
            examples=["stellar_restore", "stellar_db"],
            description="Postgres connection (Admin > Connections) of the server to restore into; its "
            "role needs CREATEDB (and CREATEROLE for the backup's roles). stellar_restore is the "
            "restore role's connection",
        ),
        "target_database": Param(
            None,
            type=["null", "string"],
            description="Database to restore into; empty: a new one named after the backup",
        ),
        "replace": Param(
            False,
            type="boolean",
            description="Restore over an existing database (or the source): it is renamed aside",
        ),
        "target_time": Param(
            None,
            type=["null", "string"],
            examples=["latest", "2026-12-07T06:30:00Z"],
            description="Point-in-time recovery: an ISO-8601 time (UTC unless it says) or 'latest', "
            "from a base backup and the WAL archive (backup is then not used); empty: restore the "
            "logical backup named by backup",
        ),
    },
)
def db_restore() -> None:
    @task
    def resolve_backup(params: dict | None = None) -> dict:
        return steps.resolve_backup(params or {})

    @task
    def check_backup(resolved: dict) -> dict:
        return steps.check_backup(resolved)

    @task
    def check_target(resolved: dict, params: dict | None = None) -> dict:
        return steps.check_target(resolved, params or {})

    approve_restore = Approval(
        task_id="approve_restore",
        subject="Restore a backup into {{ ti.xcom_pull(task_ids='check_target')['target'] }}?",
        body="{{ ti.xcom_pull(task_ids='check_target')['summary'] }}",
    )
    approve_replace = Approval(
        task_id="approve_replace",
        ask_only_if="replace",
        subject="Second approval: restore over {{ ti.xcom_pull(task_ids='check_target')['target'] }}?",
        body="{{ ti.xcom_pull(task_ids='check_target')['summary'] }}",
    )

    # runs after approve_replace approved, or skipped because replace is off; a rejection skips it
    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def restore_backup(resolved: dict, plan: dict, params: dict | None = None) -> dict:
        return steps.restore_backup(resolved, plan, params or {})

    @task(trigger_rule=TriggerRule.ALL_DONE, execution_timeout=timedelta(minutes=10))
    def publish_report() -> dict:
        return steps.publish_report()

    resolved = resolve_backup()
    plan = check_target(resolved)
    check_backup(resolved) >> plan >> approve_restore
    restored = restore_backup(resolved, plan)
    approve_restore >> [approve_replace, restored]
    approve_replace >> restored
    verdicts = [task(task_id=check)(steps.verify)(check, resolved, restored) for check in CHECKS]
    verdicts >> publish_report()


db_restore()
