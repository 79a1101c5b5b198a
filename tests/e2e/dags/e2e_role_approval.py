"""A test-only DAG with one approval assigned by role, with one lead excluded (tests/e2e/test_roles.py):
any platform lead may answer it, except lead2; an on-call engineer may not."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["e2e"])
def e2e_role_approval() -> None:
    approve_by_lead = ApprovalOperator(
        task_id="approve_by_lead",
        subject="Proceed?",
        body="Any platform lead but lead2 may answer.",
        assigned_users=[
            {"id": "role:Platform lead", "name": "any Platform lead"},
            {"id": "not:lead2", "name": "not lead2"},
        ],
        execution_timeout=timedelta(minutes=5),
    )

    @task
    def after_approval() -> str:
        return "approved"

    approve_by_lead >> after_approval()


e2e_role_approval()
