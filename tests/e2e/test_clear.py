"""Clear under a live scheduler: a failed run of a DAG with a queued-at deadline is cleared as the
UI clears it, runs again, and keeps its deadline, moved to the run's new queued time.

db_maintenance is asked to vacuum a table that does not exist yet (a migration not applied); the
table is then created and the failure cleared, as the runbook says. The run's deadline
(:data:`~tests.support.airflow_server.DEADLINE_MINUTES` here) must still be pending when it is
cleared: that is when Airflow 3.3.0 to 3.3.2 answered Clear with HTTP 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

from stellar_ops.postgres.target import connect
from tests.support.airflow_server import DEADLINE_MINUTES

pytestmark = pytest.mark.e2e

DAG_ID = "db_maintenance"


def run_deadlines(api, run_id: str) -> list[dict[str, Any]]:
    """The run's deadlines, as the UI's run page reads them."""
    response = api.session.get(
        f"{api.base_url}/ui/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/deadlines", timeout=30
    )
    assert response.status_code == 200, f"deadlines of {run_id}: {response.status_code} {response.text}"
    return list(response.json()["deadlines"])


def dag_run(api, run_id: str) -> dict[str, Any]:
    return dict(api.request("GET", f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}"))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def missing_table(stack) -> Iterator[str]:
    """A table the run names before it exists; dropped after the test."""
    name = "public.settlement_audit"
    with connect(stack.db) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")
    yield name
    with connect(stack.db) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")


def fail_for_a_missing_table(api, stack, table: str) -> tuple[str, dict[str, Any]]:
    """A db_maintenance run failed at vacuum_analyze for ``table``, with its deadline pending."""
    api.unpause(DAG_ID)
    run_id = api.trigger(DAG_ID, conf={"tables": [table]})
    assert api.wait_run(DAG_ID, run_id) == "failed"
    assert api.task_states(DAG_ID, run_id)["vacuum_analyze"] == "failed"
    assert table in api.task_log(DAG_ID, run_id, "vacuum_analyze")
    (deadline,) = run_deadlines(api, run_id)
    assert not deadline["missed"], (
        f"the run took longer than its {DEADLINE_MINUTES:g}-minute deadline to fail: "
        "Clear can only be tested on a run whose deadline is still pending"
    )
    with connect(stack.db) as conn:  # the fix the runbook asks for
        conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, note text)")
    return run_id, deadline


def assert_deadline_moved_with_the_run(api, run_id: str, before: dict[str, Any], queued_before: str) -> None:
    run = dag_run(api, run_id)
    assert at(run["queued_at"]) > at(queued_before), "Clear queues the run again"
    (after,) = run_deadlines(api, run_id)
    assert after["id"] == before["id"] and not after["missed"]
    assert at(after["deadline_time"]) > at(before["deadline_time"])
    # Airflow stamps queued_at once for the deadline and again when the run's state becomes queued
    expected = at(run["queued_at"]) + timedelta(minutes=DEADLINE_MINUTES)
    assert abs(at(after["deadline_time"]) - expected) < timedelta(seconds=1), (after, run["queued_at"])


def test_clearing_a_failed_task_reruns_it_and_the_run_keeps_its_deadline(
    api, stack, e2e_prefix, missing_table
):
    run_id, deadline = fail_for_a_missing_table(api, stack, missing_table)
    queued_before = dag_run(api, run_id)["queued_at"]

    cleared = api.clear_tasks(DAG_ID, run_id, ["vacuum_analyze"])

    assert {"vacuum_analyze", "report_bloat"} <= {ti["task_id"] for ti in cleared}
    assert_deadline_moved_with_the_run(api, run_id, deadline, queued_before)
    assert api.wait_run(DAG_ID, run_id) == "success", api.task_states(DAG_ID, run_id)
    assert api.task_tries(DAG_ID, run_id)["vacuum_analyze"] == 2
    vacuumed = api.xcom(DAG_ID, run_id, "vacuum_analyze")  # a summary: the count, total, slowest table
    assert vacuumed["tables"] == 1 and vacuumed["slowest"] == missing_table


def test_clearing_the_whole_run_keeps_its_deadline(api, stack, e2e_prefix, missing_table):
    run_id, deadline = fail_for_a_missing_table(api, stack, missing_table)
    queued_before = dag_run(api, run_id)["queued_at"]

    # the body the UI's Clear button on a run sends, with its defaults
    api.request(
        "POST",
        f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/clear",
        json={"dry_run": False, "only_failed": False, "only_new": False, "run_on_latest_version": False},
    )

    assert_deadline_moved_with_the_run(api, run_id, deadline, queued_before)
    assert api.wait_run(DAG_ID, run_id) == "success", api.task_states(DAG_ID, run_id)
    assert api.task_tries(DAG_ID, run_id)["vacuum_analyze"] == 2
