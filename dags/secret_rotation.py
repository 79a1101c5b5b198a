"""
# secret_rotation: the database, Redis, Grafana and S3 secrets replaced with no failed request

**Schedule:** 09:30 UTC every Monday: the run rotates the most overdue of these secrets by the
ledger (`secrets_rotation_audit`), or nothing. **Severity:** P2 (SecretRotationFailed).
**Owner:** platform. **Runbook:** SEC-3.4 (docs/runbooks.md). Two approvals, under *Required
Actions*, each by an on-call engineer or a platform lead (`approvals.steps`); the removal by a
second person, neither the first approver nor the one who triggered the run.

| secret | old and new valid together | removal |
|---|---|---|
| `POSTGRES_PASSWORD` | two twin login roles `<app>_blue`/`_green` (`stellar-ops secrets setup-twins`, once) | the old twin: NOLOGIN, once its sessions ended |
| `REDIS_PASSWORD` | the ACL user holds both passwords | the old password |
| `GRAFANA_ADMIN_PASSWORD` | no: one password, changed through the admin API | nothing left |
| `S3_CREDENTIALS` | a second IAM access key | the old key deactivated, then deleted |

## What it does
1. `check_rotation_due`: `secret` *auto* (the schedule) picks the most overdue secret; a named
   secret rotates now; `reason` *compromise* pages and shortens the window
   (`rotation.compromise_transition_hours`). Refused while another rotation of that secret is
   under way, or when one of this package's connections of it is defined in the environment.
2. `generate_secret`: the new credential, kept as *pending* in the key store (`rotation.key_store`);
   only identities and fingerprints appear anywhere.
3. `approve_rollout`: reject, and nothing changes (the pending one is discarded).
4. `add_new_secret`: the new credential made valid beside the old one, and a real login with it.
5. `switch_consumers`: the key store, a restart of the API, then this package's own connections
   (through Airflow's REST API as `rotation.airflow_api_conn_id`).
6. `test_new_secret`: the new one logs in, every connection holds it, the old one still logs in;
   otherwise every consumer goes back to the old one (rolled back, alert P2).
7. `wait_transition_window`: a deferred sensor until the window after the switch ends.
8. `approve_removal` (four eyes), `remove_old_secret`: refused while a connection still holds the
   old one, or (PostgreSQL) while the old twin has sessions after `rotation.postgres.drain_seconds`.
9. `verify_rotation`: the old one refused, the new one accepted.
10. `finish_rotation`: the key store keeps the old one as previous; the ledger records it.
11. `discard_rejected_rotation`: a rejected roll-out forgets the pending credential; a rejected
    removal leaves both valid and the ledger unchanged (`stellar-ops secrets status` shows it,
    and the audit alerts SecretRotationStuck after the window and `rotation.stuck_after_hours`).
12. `record_audit`: who approved what and when, to S3, whatever happened.
13. `confirm_success`: red when any step failed (a rollback included); green when it finished,
    when nothing was due, or when an approval was rejected.

## Is it safe to re-run?
Yes. Each step reads where the rotation stands from the key store, the server and the progress
record (`audit/secret-rotation/<SECRET>/progress.json`), and does only what is left: clearing a
failed task resumes with the same secret.

## When it fails
- *twins are not set up*: run `stellar-ops secrets setup-twins` once, then trigger again.
- *is defined in the environment*: move that connection to Airflow's metadata DB or the secrets backend.
- *still in use*: a consumer holds the old credential: restart it, then clear `remove_old_secret`.
- *rolled back*: the new credential was refused: see the alert; both servers work with the old one.

## Triage
P2: no customer impact while both are valid. Respond within 1 hour; follow SEC-3.4.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, TriggerRule, task

from stellar_ops.adapters import secret_rotation as steps
from stellar_ops.adapters.common.approvals import Approval
from stellar_ops.adapters.common.dag import procedure_dag
from stellar_ops.adapters.common.queues import docker_queue
from stellar_ops.adapters.common.schedules import CronFromNextSlot

GENERATED = "ti.xcom_pull(task_ids='generate_secret')"
PLAN = "ti.xcom_pull(task_ids='check_rotation_due')"


@procedure_dag(
    "secret_rotation",
    schedule=CronFromNextSlot("30 9 * * 1", timezone="UTC"),
    doc=__doc__,
    max_active_runs=2,
    execution_timeout=timedelta(minutes=30),
    params={
        "secret": Param(
            "auto",
            type="string",
            enum=["auto", *steps.SECRETS],
            description="Which secret to rotate; 'auto' picks the most overdue one by the ledger",
        ),
        "reason": Param(
            "scheduled",
            type="string",
            enum=["scheduled", "compromise"],
            description="'compromise' (suspected leak) needs a named secret, pages, and shortens the window",
        ),
        "transition_hours": Param(
            None,
            type=["null", "number"],
            minimum=0,
            description="Hours both stay valid after the switch (empty: rotation.secret_transition_hours)",
        ),
    },
)
def secret_rotation() -> None:
    @task
    def check_rotation_due(params: dict | None = None) -> dict:
        return steps.check_rotation_due(params or {})

    @task
    def generate_secret(plan: dict) -> dict:
        return steps.generate_secret(plan)

    approve_rollout = Approval(
        task_id="approve_rollout",
        subject="Rotate {{ " + PLAN + "['secret'] }}?",
        body="{{ " + GENERATED + "['summary'] }}",
    )

    @task
    def add_new_secret(plan: dict) -> dict:
        return steps.add_new_secret(plan)

    @task(**docker_queue())  # the Docker restart backend
    def switch_consumers(plan: dict) -> dict:
        return steps.switch_consumers(plan)

    @task(**docker_queue())  # a rollback restarts through the Docker backend
    def test_new_secret(plan: dict) -> dict:
        return steps.test_new_secret(plan)

    wait = steps.transition_window("wait_transition_window")
    approve_removal = Approval(
        task_id="approve_removal",
        subject="Remove the old {{ " + PLAN + "['secret'] }}?",
        body="The window has ended. Old: {{ "
        + GENERATED
        + "['old'] }}; new: {{ "
        + GENERATED
        + "['new'] }}. "
        "After the removal only the new one logs in; every consumer of this package already uses it.",
    )

    @task
    def remove_old_secret(plan: dict) -> dict:
        return steps.remove_old_secret(plan)

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
    generated = generate_secret(plan)
    added = add_new_secret(plan)
    generated >> approve_rollout >> added
    switched = switch_consumers(plan)
    tested = test_new_secret(plan)
    added >> switched >> tested >> wait >> approve_removal
    removed = remove_old_secret(plan)
    approve_removal >> removed
    verified = verify_rotation(plan)
    removed >> verified
    verified >> finish_rotation(plan) >> discard_rejected_rotation() >> record_audit()


secret_rotation()
