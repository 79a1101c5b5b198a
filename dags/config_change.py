"""
# config_change: a config-only change, approved, rolled out service by service, reverted if unhealthy

**Schedule:** none: triggered by hand for each change. **Severity:** P2 (ConfigChangeFailed).
**Owner:** platform. **Runbook:** CHG-CONFIG (docs/runbooks.md). Operations manual 6.1: the on-call
lead approves (an on-call engineer or a platform lead, never the one who triggered the run).

## What it does
1. `check_change`: the `set` (variables and their values) and `remove` (variable names) params
   against what the store (`changes.config_store`: the API's `.env`, or one JSON secret in
   Secrets Manager) holds now, as one line per variable; the `reason` is required. Names that
   look like secrets are refused: a run's params are kept and shown by Airflow.
2. `approve_change`: the on-call lead approves those lines under *Required Actions*. Reject:
   nothing changes.
3. `write_change`: the change written through the store, the version before it kept.
4. `restart_services`: the services of `changes.services` restarted one after another, through the
   restart backends of the key rotation (`changes.restart`, else `rotation.restart`); each must be
   healthy before the next is restarted.
5. `check_health`: the health checks of `changes.health_checks` must pass after
   `changes.health_settle_seconds`.
6. `revert_change` (only when 4 or 5 failed): the version before written back, the services
   restarted again and checked. The run stays red: the change did not hold.
7. `record_change`: the change log's record (who asked, who approved, what changed, the versions
   before and after, the result), whatever happened: `stellar-ops changes list`.
8. `confirm_success`: the run's verdict: red when the check, the write, a restart or the health
   checks failed (even though the change was reverted); green when the change holds, or when the
   approval was rejected.

## Is it safe to re-run?
Clearing a task resumes the same change: `write_change` does not write twice, and refuses when
the store changed since the check. To change something else, trigger a new run.

## When it fails
- *look like a secret*: rotate secrets with their own procedures (`api_key_rotation`, SEC-3.3).
- *changed since ... was checked*: someone else changed the store; trigger again.
- *not healthy after its restart* / *health checks fail*: the change was reverted (the message
  says so, and `revert_change` is green); read the health detail, fix the value, trigger again.
- *was reverted ... but a service is still not healthy*: the revert did not bring it back: follow
  RB-001 for that service.
- If Airflow is down: `stellar-ops config-change --set NAME=VALUE --reason WHY` runs the same steps.

## Triage
P2: the services run on the version before once reverted. Follow CHG-CONFIG.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, TriggerRule, task

from stellar_ops.adapters import changes as steps
from stellar_ops.adapters.common.approvals import Approval
from stellar_ops.adapters.common.dag import procedure_dag
from stellar_ops.adapters.common.queues import docker_queue

CHECKED = "ti.xcom_pull(task_ids='check_change')"


@procedure_dag(
    "config_change",
    schedule=None,
    doc=__doc__,
    execution_timeout=timedelta(minutes=30),
    params={
        "set": Param(
            {},
            type="object",
            examples=[{"INDEXER_LAG_SECONDS": "5"}],
            description="Variables to set, name to value (no secrets)",
        ),
        "remove": Param([], type="array", items={"type": "string"}, description="Variables to remove"),
        "reason": Param(
            None,
            type=["null", "string"],
            description="Required: why (a ticket, an incident); kept in the change log",
        ),
    },
)
def config_change() -> None:
    @task
    def check_change(params: dict | None = None) -> dict:
        return steps.check_change(params or {})

    approve_change = Approval(
        task_id="approve_change",
        subject="Change the config ({{ " + CHECKED + "['change_id'] }})?",
        body="{{ " + CHECKED + "['lines'] | join('\n') }}\n\nReason: {{ " + CHECKED + "['reason'] }}",
    )

    @task
    def write_change(checked: dict) -> dict:
        return steps.write_change(checked)

    @task(**docker_queue())  # the Docker restart backend
    def restart_services(checked: dict) -> dict:
        return steps.restart_services(checked)

    @task
    def check_health(checked: dict) -> dict:
        return steps.check_health(checked)

    @task(trigger_rule=TriggerRule.ONE_FAILED, **docker_queue())
    def revert_change() -> dict:
        return steps.revert_change()

    @task(trigger_rule=TriggerRule.ALL_DONE, execution_timeout=timedelta(minutes=10))
    def record_change() -> dict:
        return steps.record_change()

    checked = check_change()
    written = write_change(checked)
    checked >> approve_change >> written
    restarted = restart_services(checked)
    healthy = check_health(checked)
    written >> restarted >> healthy
    reverted = revert_change()
    [restarted, healthy] >> reverted
    [healthy, reverted] >> record_change()


config_change()
