"""A test-only daily DAG with one instant task, to exercise the UI's backfill dialog."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["e2e"])
def e2e_backfill_probe() -> None:
    @task
    def stamp(dag_run=None) -> str:
        return str(dag_run.logical_date)

    stamp()


e2e_backfill_probe()
