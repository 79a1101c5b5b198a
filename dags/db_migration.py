"""
# db_migration: a database migration rehearsed on a fresh restore, approved, applied, verified

**Schedule:** none: triggered by hand for each migration. **Severity:** P2 (MigrationFailed; P1
once production was changed and must be rolled back). **Owner:** platform. **Runbook:**
CHG-MIGRATION (docs/runbooks.md). Operations manual 6.1: a platform lead approves what the
rehearsal showed, never the one who triggered the run.

## What it does
1. `check_script`: reads the `migration` param (required: empty fails here, naming it) (a path on the worker, a key in the backups bucket,
   or `git:<rev>:<path>` of the checkout `changes.git_dir`) and the optional `rollback` the same
   way; parses them with PostgreSQL's own parser; refuses `DROP DATABASE` and transaction control
   (the procedure owns the transactions); warns on statements that lock a large table for a long
   time (a rewrite by `ALTER COLUMN TYPE`, a non-concurrent `CREATE INDEX`, a volatile default).
   Both scripts are kept in the change log (`changes.log_prefix`) with their sha256.
2. `take_pre_change_backup`: a backup now, through `db_backup`'s steps (dumped, checked, verified,
   published). Its key is named in every message that follows.
3. `rehearse_migration`: that very backup restored into a scratch server on this worker; the
   migration run there exactly as in production, while `pg_locks` is sampled: its duration, the
   locks and how long each was held, the rows touched, the schema diff; then the rollback script,
   which must give back the schema before. A migration or rollback that fails here fails the run:
   nobody is asked to approve it and production is never touched.
4. `approve_migration`: a platform lead (four eyes) approves the rehearsal's report and the
   pre-change backup's key, under *Required Actions*. Reject: nothing is applied.
5. `apply_migration`: production, only if its schema is still the one rehearsed, with
   `changes.lock_timeout` and `changes.statement_timeout`, consecutive statements in one
   transaction (a statement that cannot run in one, such as `CREATE INDEX CONCURRENTLY`, runs
   alone). A failure inside the transaction leaves production as it was.
6. `verify_migration`: the database answers, the sanity queries (`dr.sanity_queries`) pass, and the
   schema fingerprint is the one the rehearsal ended with.
7. `page_way_back` (only when 5 or 6 failed): pages with the way back. When production was not
   changed (the transaction was rolled back) it says so and stops there.
8. `approve_rollback`, `roll_back`: a platform lead approves the way back; `roll_back` runs the
   rehearsed rollback script (the schema must be the one before again), or, without a script,
   starts a `db_restore` run of the pre-change backup over production, filled in
   (`changes.restore_conn_id`), which asks its own approvals.
9. `record_migration`: the change log's record (who asked, who approved, the rehearsal, what was
   applied, the result), whatever happened: `stellar-ops changes list`.
10. `confirm_success`: the run's verdict: red when the check, the backup, the rehearsal, the apply
    or the verification failed (even when the rollback then succeeded); green when the migration
    was applied and verified, or when the approval was rejected.

## Is it safe to re-run?
Clearing a task resumes the same change (its id comes from the run). Clearing `apply_migration`
after it succeeded refuses, because production's schema is no longer the rehearsed one. To run
the migration again, trigger a new run: it is backed up and rehearsed again.

## When it fails
- *failed in the rehearsal*: the message gives PostgreSQL's error on the restored copy; fix the
  script and trigger again. Production was not touched.
- *does not give back the schema before*: the rollback script is wrong; fix it.
- *production's schema changed since the pre-change backup*: something changed production after
  the backup; trigger again so the rehearsal is on what production is now.
- *failed in production ... lock timeout*: another session held a lock longer than
  `changes.lock_timeout`; production is as it was. Find the session (`pg_stat_activity`), then
  trigger again at a quieter time.
- *fails its checks*: applied, but the database, a sanity query or the schema is not as
  rehearsed: approve the rollback offered under *Required Actions*.
- If Airflow is down: `stellar-ops migrate FILE --rollback FILE` runs the same steps, the approval
  asked on the terminal.

## Triage
P2 while production is as it was; P1 once it was changed and failed its checks. Follow CHG-MIGRATION.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, TriggerRule, task

from stellar_ops.adapters import changes as steps
from stellar_ops.adapters.common.approvals import Approval
from stellar_ops.adapters.common.dag import procedure_dag

REHEARSED = "ti.xcom_pull(task_ids='rehearse_migration')"
WAY_BACK = "ti.xcom_pull(task_ids='page_way_back')"


@procedure_dag(
    "db_migration",
    schedule=None,
    doc=__doc__,
    execution_timeout=timedelta(hours=4),
    params={
        "migration": Param(
            None,
            type=["null", "string"],
            examples=["migrations/0042_trades_note.sql", "git:main:migrations/0042.sql"],
            description="The migration's SQL: a key in the backups bucket, an absolute path on the worker, "
            "or git:<rev>:<path> of the checkout changes.git_dir names",
        ),
        "rollback": Param(
            None,
            type=["null", "string"],
            description="Its rollback script, named the same way; rehearsed after the migration, it must "
            "give back the schema before. Empty: the way back is a restore of the pre-change backup",
        ),
        "reason": Param(
            None, type=["null", "string"], description="Why (a ticket, a release): kept in the change log"
        ),
    },
)
def db_migration() -> None:
    @task
    def check_script(params: dict | None = None) -> dict:
        return steps.check_script(params or {})

    @task(pool="stellar_db_heavy")
    def take_pre_change_backup(checked: dict) -> dict:
        return steps.take_pre_change_backup(checked)

    @task
    def rehearse_migration(checked: dict, backup: dict) -> dict:
        return steps.rehearse_migration(checked, backup)

    approve_migration = Approval(
        task_id="approve_migration",
        subject="Apply {{ " + REHEARSED + "['change_id'] }} to production?",
        body="{{ " + REHEARSED + "['approval'] }}",
    )

    # a failed apply (ChangeFailed) is not retried: it pages; production is as it was, or rolled back
    @task
    def apply_migration(checked: dict, rehearsed: dict) -> dict:
        return steps.apply_migration(checked, rehearsed)

    @task(retries=2)
    def verify_migration(checked: dict, rehearsed: dict) -> list:
        return steps.verify_migration(checked, rehearsed)

    @task(trigger_rule=TriggerRule.ONE_FAILED)
    def page_way_back() -> dict:
        return steps.page_way_back()

    approve_rollback = Approval(
        task_id="approve_rollback",
        subject="Roll back {{ " + REHEARSED + "['change_id'] }} in production?",
        body="{{ " + WAY_BACK + "['lines'] | join('\n') }}",
    )

    @task
    def roll_back(checked: dict, rehearsed: dict, backup: dict) -> dict:
        return steps.roll_back(checked, rehearsed, backup)

    @task(trigger_rule=TriggerRule.ALL_DONE, execution_timeout=timedelta(minutes=10))
    def record_migration() -> dict:
        return steps.record_migration()

    checked = check_script()
    backup = take_pre_change_backup(checked)
    rehearsed = rehearse_migration(checked, backup)
    applied = apply_migration(checked, rehearsed)
    rehearsed >> approve_migration >> applied
    verified = verify_migration(checked, rehearsed)
    applied >> verified
    paged = page_way_back()
    [applied, verified] >> paged >> approve_rollback
    rolled = roll_back(checked, rehearsed, backup)
    approve_rollback >> rolled
    [verified, rolled] >> record_migration()


db_migration()
