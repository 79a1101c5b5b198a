"""Approvals answered by the right people, who are told, on a live scheduler with real users.

The harness's people (password = name): ``admin`` (Admin), ``oncall`` and ``oncall2`` (On-call
engineer), ``lead`` and ``lead2`` (Platform lead).
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest

from stellar_ops.postgres.target import connect
from tests.support.fixtures import reachable_dir
from tests.support.operator_ui import OperatorUIError, browser_sessions
from tests.support.restore_target import databases, serve_restore_target
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

DAG = "db_restore"
LINK = re.compile(r"<(http[^|>]+/required_actions[^|>]*)\|Open the Required Action>")


@pytest.fixture(scope="module")
def target_server(api):
    with reachable_dir() as base:
        yield from serve_restore_target(api, base, "approvals_target")


@pytest.fixture(scope="module")
def browser_as(airflow):
    """A logged-in browser session per person, opened when first asked for."""
    with browser_sessions(airflow.base_url) as session:
        yield session


def a_backup(api) -> str:
    api.unpause("db_backup")
    run_id = api.trigger("db_backup", conf={"force": True})
    assert api.wait_run("db_backup", run_id) == "success"
    return str(api.xcom("db_backup", run_id, "publish_backup")["key"])


def answer_status(client, run_id: str, task_id: str, option: str = "Approve") -> int:
    """What the API answers this person's answer (200, or 403 when they may not give it)."""
    path = f"/api/v2/dags/{DAG}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/-1/hitlDetails"
    response = client.session.patch(
        client.base_url + path, json={"chosen_options": [option], "params_input": {}}, timeout=30
    )
    return response.status_code


def answer_of(api, run_id: str, task_id: str) -> dict:
    path = f"/dags/{DAG}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/answer"
    value = api.request("GET", path, params={"deserialize": "true"})["value"]
    return json.loads(value) if isinstance(value, str) else value


def told(receiver, *needles: str, timeout: float = 90) -> dict:
    """The first message received that holds every needle, with the path it was posted to."""

    def find():
        for message in receiver.messages():
            text = (message.get("json") or {}).get("text", "")
            if all(n in text for n in needles):
                return {"text": text, "path": message["path"]}
        return None

    return wait_for(find, timeout, f"a message with {needles}")


def test_a_restore_over_a_database_needs_a_second_lead_who_neither_triggered_nor_approved(
    api, api_as, browser_as, stack, receiver, e2e_prefix, target_server
):
    key = a_backup(api)
    with connect(target_server.target()) as conn:
        conn.execute("DROP DATABASE IF EXISTS replace_e2e")
        conn.execute("CREATE DATABASE replace_e2e")
    api.unpause(DAG)
    conf = {
        "backup": key,
        "target_conn_id": "approvals_target",
        "target_database": "replace_e2e",
        "replace": True,
    }
    run_id = api_as("oncall").trigger(DAG, conf=conf)

    api.wait_for_approval(DAG, run_id, "approve_restore")
    opened = told(receiver, "Approval needed", f"{DAG}.approve_restore", run_id)
    assert "any Platform lead" in opened["text"] and "Answer within:* 1 day" in opened["text"], opened
    assert answer_status(api_as("oncall"), run_id, "approve_restore") == 403, "an on-call engineer approved"
    assert answer_status(api_as("admin"), run_id, "approve_restore") == 403, "admin approved a restore"
    link = LINK.search(opened["text"]).group(1)
    assert browser_as("lead").respond_at(link, "Approve")["chosen_options"] == ["Approve"]

    api.wait_for_approval(DAG, run_id, "approve_replace")
    second = told(receiver, "Approval needed", f"{DAG}.approve_replace", run_id)
    assert "not oncall, lead" in second["text"], second
    assert answer_status(api_as("lead"), run_id, "approve_replace") == 403, "one person gave both halves"
    assert answer_status(api_as("oncall"), run_id, "approve_replace") == 403, "the one who triggered approved"
    with pytest.raises(OperatorUIError, match="403|no way to answer"):
        browser_as("lead").respond_at(LINK.search(second["text"]).group(1), "Approve")
    assert answer_status(api_as("lead2"), run_id, "approve_replace") == 200

    assert api.wait_run(DAG, run_id, timeout=600) == "success", api.task_states(DAG, run_id)
    assert answer_of(api, run_id, "approve_restore")["by"] == "lead"
    assert answer_of(api, run_id, "approve_replace")["by"] == "lead2"
    told(receiver, f"`{DAG}.approve_restore` approved by *lead*", run_id)
    told(receiver, f"`{DAG}.approve_replace` approved by *lead2*", run_id)
    told(receiver, "Restore done", "approved by lead and lead2")
    renamed = [d for d in databases(target_server) if d.startswith("replace_e2e_before_")]
    assert renamed and "replace_e2e" in databases(target_server), databases(target_server)


def test_an_unanswered_approval_is_reminded_escalated_and_fails_the_run_saying_so(
    api, api_as, browser_as, receiver, e2e_prefix, target_server
):
    key = a_backup(api)
    document = json.loads(api.request("GET", "/variables/stellar_ops_config")["value"])
    document["approvals"] = {
        "remind_after_hours": 10 / 3600,
        "escalate_before_hours": 20 / 3600,
        "steps": {
            f"{DAG}.approve_restore": {
                "roles": ["Platform lead"],
                "severity": "P2",
                "timeout_hours": 50 / 3600,
            }
        },
    }
    api.set_variable("stellar_ops_config", document)
    api.unpause(DAG)
    conf = {"backup": key, "target_conn_id": "approvals_target", "target_database": "never_answered"}
    run_id = api_as("oncall").trigger(DAG, conf=conf)

    opened = told(receiver, "Approval needed", run_id, timeout=180)
    reminder = told(receiver, "Reminder: approval waiting for", run_id)
    assert "B0ALERTS" in reminder["path"], "the reminder goes to the step's own route (P2: ops)"
    # the reminder's link opens the Required Action in the browser, with its answer buttons
    lead = browser_as("lead")
    lead.page.goto(LINK.search(reminder["text"]).group(1))
    lead.page.get_by_test_id("hitl-option-Approve").wait_for()
    escalation = told(receiver, "Escalated (P2 to P1)", run_id)
    assert "B0PAGING" in escalation["path"], "the escalation goes to the next severity's route (P1: paging)"
    assert "B0ALERTS" in opened["path"]

    assert api.wait_run(DAG, run_id, timeout=300) == "failed"
    assert api.task_states(DAG, run_id)["approve_restore"] == "failed"
    assert api.task_tries(DAG, run_id)["approve_restore"] == 1, "a timeout is not retried"
    alert = told(receiver, "approve_restore: no answer within 50 s")
    assert "any Platform lead" in alert["text"]
    assert "never_answered" not in databases(target_server)
