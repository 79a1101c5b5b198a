"""
# api_key_rotation: new API keys, served alongside the old ones, then the old ones removed

**Schedule:** 09:00 UTC on the first day of each quarter; a new deployment waits for the next
quarter's slot (it never starts a rotation the day it is installed). **Severity:** P2 (KeyRotationFailed).
**Owner:** platform. **Runbook:** SEC-3.2 (docs/runbooks.md). Two approvals (section 6.1), under
*Required Actions*, each by an on-call engineer or a platform lead (`approvals.steps`); the
removal by a second person, neither the first approver nor the one who triggered the run. Each
approval is announced on the ops route with a link, reminded, and escalated before it times out.

## What it does
1. `check_rotation_due`: a scheduled run rotates each key set once a quarter (the ledger says
   when it last did); `reason` *compromise* rotates anyway, with a short window, and pages.
   While another run of this DAG is rotating (waiting for an approval or its window), this run
   waits here (*up for reschedule*): its log and a message on the ops channel name that run,
   and it looks again every `rotation.wait_poll_seconds`.
2. `generate_keys`: `count` keys from `secrets`, kept as *pending* in the key store
   (`rotation.key_store`); only fingerprints (sha256, 8 hex) appear anywhere.
3. `notify_consumers`: when the new keys start and the old ones stop.
4. `approve_rollout`: approve the fingerprints, dates and key set. Reject: nothing served changes.
5. `add_new_keys`, `restart_api`, `test_new_keys`: both sets served; every new and old key must
   be accepted, else the old set is served again (rolled back, alert P2).
6. `wait_transition_window`: a deferred sensor until the window ends (no worker slot).
7. `approve_removal` (four eyes, 14 days to answer), `remove_old_keys`, `restart_api_after_removal`, `verify_rotation`: old keys
   refused, new ones accepted.
8. `finish_rotation`: pending becomes current, the old set is kept as previous; the ledger
   (`secrets_rotation_audit`) records it.
9. `discard_rejected_rotation`: when an approval was rejected, forgets the pending keys (the
   served set is untouched).
10. `record_audit`: who approved what and when, to S3, whatever happened.
11. `confirm_success`: the run's verdict: red when any step of the rotation failed (a rollback
    included), even though the audit record is written; green when it finished, or when
    nothing was due or an approval was rejected.

## Is it safe to re-run?
Yes. Each step reads where the rotation stands from the key store and does only what is left, so
clearing a failed task (or the run) resumes it with the same keys. A second scheduled run in
the same quarter does nothing, and a backfilled run is a scheduled run of its quarter: it does
nothing when that quarter's rotation is done (rotation never rotates twice for one quarter).

## When it fails
- *rolled back after add*: the API refused a key: see the alert, fix the API's key loading, run again.
- *did not answer /health*: the restart backend (`rotation.restart`) or the API itself; both
  sets stay served, so no consumer is cut off. Clear `restart_api` once the API is up.
- *pending keys of another rotation*: an earlier rotation was left half-way: clear its run, or
  `stellar-ops keys discard --key-set KEY_SET` if it was abandoned before `add_new_keys`.
- If Airflow is down: `stellar-ops keys rotate --key-set API_KEYS` runs the same steps.

## Triage
P2: no customer impact while both key sets are served. Respond within 1 hour; follow SEC-3.2.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, TriggerRule, task

from stellar_ops.adapters import rotation as steps
from stellar_ops.adapters.common.approvals import Approval
from stellar_ops.adapters.common.dag import procedure_dag
from stellar_ops.adapters.common.queues import docker_queue
from stellar_ops.adapters.common.schedules import CronFromNextSlot

PLAN = "ti.xcom_pull(task_ids='check_rotation_due')"
NOTICE = "ti.xcom_pull(task_ids='notify_consumers')"


@procedure_dag(
    "api_key_rotation",
    schedule=CronFromNextSlot("0 9 1 1,4,7,10 *", timezone="UTC"),
    doc=__doc__,
    # a rotation lasts days (approvals, the transition window): a second run starts and says in
    # check_rotation_due why it waits, instead of sitting queued without a word
    max_active_runs=2,
    execution_timeout=timedelta(minutes=30),
    params={
        "key_set": Param(
            "API_KEYS", type="string", enum=["API_KEYS", "ADMIN_KEYS"], description="Which keys to rotate"
        ),
        "count": Param(
            2, type="integer", minimum=1, maximum=50, description="How many new keys (one per consumer)"
        ),
        "transition_days": Param(
            7, type="number", exclusiveMinimum=0, description="Days both key sets are served before removal"
        ),
        "reason": Param(
            "scheduled",
            type="string",
            enum=["scheduled", "compromise"],
            description="'compromise' (suspected leak) rotates even if done this quarter, with a short window, and pages",
        ),
        "dry_run": Param(False, type="boolean", description="Only show what would be rotated"),
    },
)
def api_key_rotation() -> None:
    @task
    def check_rotation_due(params: dict | None = None) -> dict:
        return steps.check_rotation_due(params or {})

    @task
    def generate_keys(plan: dict) -> dict:
        return steps.generate_keys(plan)

    @task
    def notify_consumers(plan: dict, generated: dict) -> dict:
        return steps.notify_consumers(plan, generated)

    approve_rollout = Approval(
        task_id="approve_rollout",
        subject="Serve new {{ " + PLAN + "['key_set'] }} alongside the old ones?",
        body="{{ " + NOTICE + "['summary'] }}",
    )

    @task
    def add_new_keys(plan: dict) -> dict:
        return steps.add_new_keys(plan)

    @task(**docker_queue())  # the Docker restart backend
    def restart_api(plan: dict) -> dict:
        return steps.restart_api(plan, "add")

    @task(retries=2, **docker_queue())  # the Docker restart backend
    def test_new_keys(plan: dict) -> dict:
        return steps.test_new_keys(plan)

    wait = steps.transition_window("wait_transition_window")
    approve_removal = Approval(
        task_id="approve_removal",
        subject="Remove the old {{ " + PLAN + "['key_set'] }}?",
        body="The transition window has ended. Old keys: {{ " + NOTICE + "['old'] | join(', ') }}; "
        "new keys: {{ " + NOTICE + "['new'] | join(', ') }}. After removal only the new keys are accepted.",
    )

    @task
    def remove_old_keys(plan: dict) -> dict:
        return steps.remove_old_keys(plan)

    @task(**docker_queue())  # the Docker restart backend
    def restart_api_after_removal(plan: dict) -> dict:
        return steps.restart_api(plan, "remove")

    @task
    def verify_rotation(plan: dict) -> dict:
        return steps.verify_rotation(plan)

    @task
    def finish_rotation(plan: dict) -> dict:
        return steps.finish_rotation(plan)

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def discard_rejected_rotation() -> dict:
        return steps.discard_rejected_rotation()

    @task(trigger_rule=TriggerRule.ALL_DONE, execution_timeout=timedelta(minutes=10))
    def record_audit() -> dict:
        return steps.record_audit()

    plan = check_rotation_due()
    notice = notify_consumers(plan, generate_keys(plan))
    added = add_new_keys(plan)
    notice >> approve_rollout >> added
    restarted = restart_api(plan)
    tested = test_new_keys(plan)
    added >> restarted >> tested >> wait >> approve_removal
    removed = remove_old_keys(plan)
    approve_removal >> removed
    verified = verify_rotation(plan)
    removed >> restart_api_after_removal(plan) >> verified
    verified >> finish_rotation(plan) >> discard_rejected_rotation() >> record_audit()


api_key_rotation()
