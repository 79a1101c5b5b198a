"""api_key_rotation under a live scheduler: both approvals (one in the UI), a deferred window,
consumers sending requests throughout; the reject paths; the quarter rule."""

from __future__ import annotations

import json
import random
import time

import pytest

from stellar_ops.rotation.keys import fingerprint
from stellar_ops.rotation.keystore import EnvFileStore
from stellar_ops_dev.load import Consumer, LoadGenerator
from tests.support.api_stand_in import new_stand_in
from tests.support.operator_ui import CHROMIUM, CHROMIUM_ARGS, OperatorUI
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

DAG = "api_key_rotation"
WINDOW_SECONDS = 25.0


@pytest.fixture(scope="module")
def stand_in(api, tmp_path_factory):
    served = new_stand_in(tmp_path_factory.mktemp("rotation-api") / "api", api_keys=3, admin_keys=1)
    api.request(
        "POST",
        "/connections",
        json={
            "connection_id": "rotation_api",
            "conn_type": "http",
            "host": "127.0.0.1",
            "port": served.port,
            "schema": "http",
            "password": served.admin_keys[0],
        },
    )
    try:
        yield served
    finally:
        api.request("DELETE", "/connections/rotation_api")
        served.stop()


@pytest.fixture
def configured(api, stack, stand_in, e2e_prefix):
    document = {
        "backup": {"bucket": "stellar-backups", "prefix": e2e_prefix},
        "connections": {"api": "rotation_api"},
        "rotation": {
            "env_file": str(stand_in.env_file),
            "restart": "http_reload",
            "audit_prefix": f"{e2e_prefix}audit/",
            "ledger_key": f"{e2e_prefix}secrets-ledger.json",
            "wait_poll_seconds": 3,
        },
    }
    api.set_variable("stellar_ops_config", document)
    api.unpause(DAG)
    return e2e_prefix


def conf(**changes):
    return {
        "key_set": "API_KEYS",
        "count": 3,
        "transition_days": WINDOW_SECONDS / 86400,
        "reason": "scheduled",
        "dry_run": False,
        **changes,
    }


def state(stand_in):
    return EnvFileStore(stand_in.env_file).state("API_KEYS")


def approval_body(api, run_id: str, task_id: str) -> str:
    for item in api.pending_approvals():
        ti = item.get("task_instance", item)
        if ti.get("dag_run_id", ti.get("run_id")) == run_id and ti.get("task_id") == task_id:
            return f"{item.get('subject')}\n{item.get('body')}"
    raise AssertionError(f"no pending approval {task_id} in {run_id}")


@pytest.fixture(scope="module")
def page(airflow):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        tab = context.new_page()
        tab.set_default_timeout(30_000)
        # the removal's second pair of eyes: not the rollout's approver (oncall), not the trigger (admin)
        OperatorUI(tab, airflow.base_url).login("oncall2", "oncall2")
        yield tab
        browser.close()


def approve_in_the_ui(page, airflow, run_id: str, task_id: str) -> None:
    """What the on-call lead does: the task's Required Action in the UI, then Approve."""
    page.goto(f"{airflow.base_url}/dags/{DAG}/runs/{run_id}/tasks/{task_id}/required_actions")
    page.get_by_role("button", name="Approve").click()


@pytest.mark.browser
def test_a_rotation_approved_twice_serves_only_the_new_keys_and_rejects_no_request(
    api, api_as, airflow, stack, stand_in, configured, page
):
    old = list(stand_in.api_keys)
    load = LoadGenerator(stand_in.url, [Consumer(f"c{i}", k) for i, k in enumerate(old)], rate_per_second=30)
    load.start()
    run_id = api.trigger(DAG, conf=conf())

    api.wait_for_approval(DAG, run_id, "approve_rollout", timeout=180)
    pending = list(state(stand_in).pending or ())
    assert len(pending) == 3
    body = approval_body(api, run_id, "approve_rollout")
    assert all(fingerprint(k) in body for k in pending) and "API_KEYS" in body
    assert all(stand_in.status(k) == 403 for k in pending), "nothing is served before the approval"
    api_as("oncall").answer_approval(DAG, run_id, "approve_rollout", "Approve")

    try:
        restarted = wait_for(lambda: _xcom(api, run_id, "restart_api"), 180, "the restart", interval=0.5)
    except AssertionError:
        states = api.task_states(DAG, run_id)
        logs = {
            t: api.task_log(DAG, run_id, t)[-1500:] for t in ("add_new_keys", "restart_api") if states.get(t)
        }
        raise AssertionError(f"no restart: {states}\n{logs}") from None
    stop = _epoch(restarted["old_keys_stop"])
    load.schedule_switches(pending, time.time(), stop - 3, seed=random.randrange(1000))
    assert all(stand_in.status(k) == 200 for k in old + pending), "both sets are served in the window"
    wait_for(
        lambda: api.task_states(DAG, run_id).get("wait_transition_window") == "deferred",
        120,
        "a deferred wait",
        interval=0.5,
    )

    api.wait_for_approval(DAG, run_id, "approve_removal", timeout=180)
    assert time.time() >= stop - 1, "the removal is asked for only once the window is over"
    approve_in_the_ui(page, airflow, run_id, "approve_removal")
    assert api.wait_run(DAG, run_id, timeout=300) == "success", api.task_states(DAG, run_id)
    report = load.stop()

    states = api.task_states(DAG, run_id)
    assert set(states.values()) == {"success"}, states
    assert all(stand_in.status(k) == 200 for k in pending)
    assert all(stand_in.status(k) == 403 for k in old)
    final = state(stand_in)
    assert final.served == tuple(pending) and final.previous == tuple(old) and final.pending is None
    print(f"\nload during the rotation: {json.dumps(report.as_dict())}")
    assert report.sent > 200 and report.by_key["new"] > 0 and report.by_key["old"] > 0
    assert report.rejected == 0, report.as_dict()

    audit_key = api.xcom(DAG, run_id, "record_audit")["key"]
    client = stack.s3_client()
    audit = json.loads(client.get_object(Bucket="stellar-backups", Key=audit_key)["Body"].read())
    assert audit["outcome"] == "rotated"
    assert audit["approvals"]["approve_rollout"]["chosen"] == "Approve"
    assert audit["approvals"]["approve_rollout"]["by"] == "oncall"
    assert audit["approvals"]["approve_removal"]["by"] == "oncall2"
    ledger_key = f"{configured}secrets-ledger.json"
    ledger = json.loads(client.get_object(Bucket="stellar-backups", Key=ledger_key)["Body"].read())
    assert ledger["secrets"]["API_KEYS"]["by"] == "oncall2"

    secrets = old + pending + list(stand_in.admin_keys)
    for task_id in states:
        text = api.task_log(DAG, run_id, task_id) + json.dumps(_xcom(api, run_id, task_id) or {})
        leaked = [fingerprint(k) for k in secrets if k in text]
        assert not leaked, f"{task_id} shows keys {leaked} in its log or XCom"
    assert "audit record s3://stellar-backups/" in api.task_log(DAG, run_id, "record_audit")

    again = api.trigger(DAG, conf=conf())
    assert api.wait_run(DAG, again, timeout=180) == "success"
    skipped = api.task_states(DAG, again)
    assert skipped["check_rotation_due"] == "skipped" and skipped["generate_keys"] == "skipped", skipped
    assert state(stand_in).served == tuple(pending), "a second run in the quarter rotates nothing"


def test_a_rejected_approval_discards_the_pending_keys_and_changes_nothing_served(
    api, api_as, stand_in, configured
):
    before = state(stand_in).served
    first = api.trigger(DAG, conf=conf(reason="compromise"))
    api.wait_for_approval(DAG, first, "approve_rollout", timeout=180)
    assert state(stand_in).pending is not None
    api_as("oncall").answer_approval(DAG, first, "approve_rollout", "Reject")
    assert api.wait_run(DAG, first, timeout=180) == "success"
    states = api.task_states(DAG, first)
    assert states["add_new_keys"] == "skipped" and states["discard_rejected_rotation"] == "success", states
    after = state(stand_in)
    assert after.served == before and after.pending is None, (
        _xcom(api, first, "approve_rollout"),
        api.task_log(DAG, first, "approve_rollout")[-4000:],
    )
    assert all(stand_in.status(k) == 200 for k in before)
    assert api.xcom(DAG, first, "record_audit")["outcome"] == "cancelled: approve_rollout rejected"

    second = api.trigger(DAG, conf=conf(reason="compromise", transition_days=2 / 86400))
    api.wait_for_approval(DAG, second, "approve_rollout", timeout=180)
    api_as("oncall").answer_approval(DAG, second, "approve_rollout", "Approve")
    api.wait_for_approval(DAG, second, "approve_removal", timeout=240)
    both = state(stand_in).served
    api_as("lead").answer_approval(DAG, second, "approve_removal", "Reject")
    assert api.wait_run(DAG, second, timeout=180) == "success"
    states = api.task_states(DAG, second)
    assert states["remove_old_keys"] == "skipped" and states["finish_rotation"] == "skipped", states
    after = state(stand_in)
    assert after.served == both and after.pending is None, "the removal's rejection changes nothing served"
    assert all(stand_in.status(k) == 200 for k in both)
    assert api.xcom(DAG, second, "record_audit")["outcome"] == "cancelled: approve_removal rejected"


def test_a_second_rotation_waits_for_the_one_under_way_and_says_why(
    api, api_as, stand_in, configured, receiver
):
    first = api.trigger(DAG, conf=conf(reason="compromise"))
    api.wait_for_approval(DAG, first, "approve_rollout", timeout=180)
    second = api.trigger(DAG, conf=conf(reason="compromise"))
    wait_for(
        lambda: api.task_states(DAG, second).get("check_rotation_due") == "up_for_reschedule",
        120,
        "the second rotation waiting",
        interval=0.5,
    )
    assert api.run_state(DAG, second) == "running", "it started, rather than sitting queued without a word"
    assert f"waits: run {first} of {DAG} is still rotating keys" in api.task_log(
        DAG, second, "check_rotation_due"
    )
    told = wait_for(
        lambda: [t for t in receiver.texts() if f"{DAG} run {second}" in t and f"run {first}" in t],
        60,
        "the message saying why it waits",
    )
    assert len(told) == 1, "the ops channel is told once, not at every look"
    assert api.task_states(DAG, second).get("generate_keys") is None, "nothing is generated meanwhile"

    api_as("oncall").answer_approval(DAG, first, "approve_rollout", "Reject")
    assert api.wait_run(DAG, first, timeout=180) == "success"
    api.wait_for_approval(DAG, second, "approve_rollout", timeout=180)  # it went on by itself
    api_as("oncall").answer_approval(DAG, second, "approve_rollout", "Reject")
    assert api.wait_run(DAG, second, timeout=180) == "success"
    assert len([t for t in receiver.texts() if f"{DAG} run {second}" in t and "waits" in t]) == 1


def _xcom(api, run_id: str, task_id: str):
    try:
        return api.xcom(DAG, run_id, task_id)
    except AssertionError:
        return None


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()
