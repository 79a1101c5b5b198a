"""Concurrent failure callbacks under a live scheduler: no incident event is lost.

Each event is a Variable of its own (``stellar_ops.adapters.common.incident_store``): the
executor runs several mapped tries at once (``AIRFLOW__CORE__PARALLELISM=4`` in the harness), and
with the one-Variable incident updated by read-modify-write their events overwrote each other.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest

from stellar_ops.cli.incident import read_open_incident
from stellar_ops.core.incidents import Incident
from stellar_ops.registry import procedure_for
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

DAG_ID, WIDTH = "e2e_incident_fanout", 20  # tests/e2e/dags/e2e_incident_fanout.py
ENTRY = replace(procedure_for("db_maintenance"), dag_id=DAG_ID)


def incident(api) -> Incident | None:
    return read_open_incident(api.session, api.base_url, ENTRY)


def failures(api) -> list:
    found = incident(api)
    return [e for e in found.events if e.kind == "failure"] if found else []


def test_twenty_mapped_tries_failing_at_once_leave_twenty_events_and_a_recovery_closes_them(
    api, receiver, e2e_prefix
):
    api.unpause(DAG_ID)
    failed = api.trigger(DAG_ID, conf={"fail": True})
    assert api.wait_run(DAG_ID, failed) == "failed"
    assert api.task_states(DAG_ID, failed) and set(api.task_states(DAG_ID, failed).values()) == {"failed"}
    # the callbacks may still be writing when the run shows as failed
    with contextlib.suppress(AssertionError):  # the assertions below say what is missing
        wait_for(lambda: len(failures(api)) >= WIDTH, 60, f"{WIDTH} failure events")
    events = incident(api).events
    indexes = sorted(e.map_index for e in events if e.kind == "failure" and e.map_index is not None)
    assert indexes == list(range(WIDTH)), (
        f"{len([e for e in events if e.kind == 'failure'])} failure events for {WIDTH} failed tries: "
        f"map indexes {indexes}"
    )
    assert all(e.run_id == failed and e.task_id == "fail_at_once" for e in events if e.kind == "failure")
    assert len([e for e in events if e.kind == "alert"]) == WIDTH
    assert [e.moment for e in events] == sorted(e.moment for e in events), "the events read are in time order"
    alerts = wait_for(
        lambda: [
            t for t in receiver.texts() if "MaintenanceFailed" in t and failed in t and "fail_at_once" in t
        ],
        30,
        "failure alerts",
    )
    assert len(alerts) == WIDTH

    # a run in which every mapped try succeeds resolves it: the DAG processor reads and closes it
    recovered = api.trigger(DAG_ID, conf={"fail": False})
    assert api.wait_run(DAG_ID, recovered) == "success"
    (resolution,) = wait_for(
        lambda: [t for t in receiver.texts() if "RESOLVED" in t and DAG_ID in t], 90, "resolution"
    )
    assert failed in resolution and recovered in resolution
    wait_for(lambda: incident(api) is None, 30, "the incident closed")
