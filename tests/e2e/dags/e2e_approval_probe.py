"""A test-only DAG with one human approval, to exercise the harness's approval helpers."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["e2e"])
def e2e_approval_probe() -> None:
    approve_change = ApprovalOperator(
        task_id="approve_change",
        subject="Proceed?",
        body="The e2e harness answers this.",
        execution_timeout=timedelta(minutes=5),
    )

    @task
    def after_approval() -> str:
        return "approved"

    approve_change >> after_approval()


e2e_approval_probe()
