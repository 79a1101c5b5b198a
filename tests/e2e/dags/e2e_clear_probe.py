"""A test-only DAG whose first task fails until a Variable allows it, to exercise Clear in the UI.

No deadline: clearing a task of a DAG with a queued-at deadline is a separate concern.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Variable, dag, task
from airflow.sdk.exceptions import AirflowFailException

GATE = "e2e_clear_probe_gate"


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["e2e"])
def e2e_clear_probe() -> None:
    @task(retries=0)
    def gated() -> str:
        if Variable.get(GATE, default="closed") != "open":
            raise AirflowFailException(f"the Variable {GATE} is not 'open'")
        return "passed"

    @task
    def after_gate(value: str) -> str:
        return value

    after_gate(gated())


e2e_clear_probe()
