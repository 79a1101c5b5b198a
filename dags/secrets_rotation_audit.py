"""
# secrets_rotation_audit: the rotation ledger, and which secrets are overdue

**Schedule:** Mondays 08:00 UTC. **Severity:** P3 (SecretRotationOverdue), P2 (SecretRotationStuck).
**Owner:** platform.
**Runbook:** SEC-3.3 (docs/runbooks.md).

## What it does
1. `audit_rotation_ledger`: reads the ledger, a JSON document in the backups bucket
   (`rotation.ledger_key`), with each secret's last rotation, and finds the secrets past their
   period (`rotation.periods_days`): `POSTGRES_PASSWORD` and `REDIS_PASSWORD` yearly; `API_KEYS`,
   `ADMIN_KEYS` and `GRAFANA_ADMIN_PASSWORD` quarterly; `S3_CREDENTIALS` as configured. It sends
   one P3 alert per run (SecretRotationOverdue) listing every overdue secret: when it was last
   rotated, how long it has been overdue, and the procedure of section 3.3 that rotates it. A run
   with nothing overdue sends nothing. Then, for each secret `secret_rotation` rotates, it reads
   where its rotation stands (`<rotation.secret_audit_prefix><SECRET>/progress.json`): one that has
   waited for its removal approval more than `rotation.stuck_after_hours` after its window ended
   sends a P2 alert of its own (SecretRotationStuck), naming the rotation and the run to answer.
2. `confirm_success`: the run's verdict: green when the ledger was read (overdue secrets are
   findings, not a failure), red when it could not be.

The ledger is in S3 rather than an Airflow Variable: it must outlive the metadata DB and be
read and written by `stellar-ops` when Airflow is down. `api_key_rotation` records its own
rotations; record a manual one with `stellar-ops secrets record NAME`.

## Is it safe to re-run?
Yes: it only reads the ledger and alerts; a re-run sends the same list again. A backfilled run
audits the ledger as it is now, not as it was on its date.

## When it fails
- *is not a secrets ledger*: the object at `rotation.ledger_key` is not the ledger: restore it
  from the bucket's versions, or delete it (every secret then shows as overdue until recorded).
- *S3 ... failed*: check the `stellar_s3` connection and the bucket.
- *the rotation progress of SECRET cannot be read*: the record under `rotation.secret_audit_prefix`
  is not a progress record; the other secrets were audited and alerted. Restore it from the
  bucket's versions (`stellar-ops secrets status` shows every secret's state).

## Triage
P3: rotate the named secret this week, then `stellar-ops secrets record NAME`.
P2 (SecretRotationStuck): answer the named run's `approve_removal` today; until then the old and
the new secret are both valid (SEC-3.3).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import task

from stellar_ops.adapters import rotation as steps
from stellar_ops.adapters.common.dag import procedure_dag


@procedure_dag(
    "secrets_rotation_audit", schedule="0 8 * * 1", doc=__doc__, execution_timeout=timedelta(minutes=10)
)
def secrets_rotation_audit() -> None:
    @task
    def audit_rotation_ledger() -> dict:
        return steps.audit_rotation_ledger()

    audit_rotation_ledger()


secrets_rotation_audit()
