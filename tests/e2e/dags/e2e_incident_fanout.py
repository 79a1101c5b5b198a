"""A test-only DAG: twenty mapped tries that fail at the same moment, each running the package's
real failure notifier, so that their incident events are written concurrently.

``fail=false`` runs the same tasks to success: the DAG's success callback (``announce_recovery``,
in the DAG processor) then closes the incident.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from stellar_ops.adapters.common.alerting import dag_callbacks, task_defaults
from stellar_ops.registry import CATALOGUE, procedure_for

DAG_ID = "e2e_incident_fanout"
WIDTH = 20
# A test DAG is no procedure of the taxonomy: it borrows db_maintenance's entry (P3, the ops
# channel) under its own id, in every process that parses this file (the scheduler's DAG processor,
# each task's worker), before the alerting conventions look it up.
ENTRY = CATALOGUE.setdefault(DAG_ID, replace(procedure_for("db_maintenance"), dag_id=DAG_ID))


@dag(
    dag_id=DAG_ID,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["e2e"],
    params={"fail": Param(True, type="boolean", description="whether every mapped try fails")},
    # retries=0: each try's failure is final, so each runs the failure notifier
    default_args={**task_defaults(DAG_ID, execution_timeout=timedelta(minutes=5)), "retries": 0},
    **dag_callbacks(DAG_ID),
)
def e2e_incident_fanout() -> None:
    @task
    def fail_at_once(index: int) -> int:
        if not get_current_context()["params"]["fail"]:
            return index
        # the tries running together (the executor's parallelism) fail on the same whole
        # 5 seconds of the clock, so their failure callbacks write at the same moment
        time.sleep(5 - time.time() % 5)
        raise RuntimeError(f"item {index} failed on purpose")

    fail_at_once.expand(index=list(range(WIDTH)))


e2e_incident_fanout()
