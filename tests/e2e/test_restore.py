"""db_restore under a live scheduler: the approval answered through the REST API, or rejected."""

from __future__ import annotations

import pytest

from tests.support.fixtures import reachable_dir
from tests.support.restore_target import PASSWORD, databases, serve_restore_target

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def target_server(api):
    with reachable_dir() as base:
        yield from serve_restore_target(api, base, "restore_target")


def a_backup(api) -> str:
    api.unpause("db_backup")
    run_id = api.trigger("db_backup", conf={"force": True})
    assert api.wait_run("db_backup", run_id) == "success"
    return str(api.xcom("db_backup", run_id, "publish_backup")["key"])


def test_an_approved_restore_lands_verified_and_a_rejected_one_changes_nothing(
    api, api_as, stack, e2e_prefix, target_server
):
    key = a_backup(api)
    api.unpause("db_restore")
    conf = {
        "backup": key,
        "target_conn_id": "restore_target",
        "target_database": "restored_e2e",
        "replace": False,
    }
    run_id = api.trigger("db_restore", conf=conf)
    api.wait_for_approval("db_restore", run_id, "approve_restore")
    details = [
        d for d in api.pending_approvals() if d.get("task_instance", d).get("dag_run_id", run_id) == run_id
    ]
    assert any("restored_e2e" in (d.get("body") or "") for d in details), details
    api_as("lead").answer_approval("db_restore", run_id, "approve_restore", "Approve")
    assert api.wait_run("db_restore", run_id, timeout=600) == "success", api.task_states("db_restore", run_id)
    states = api.task_states("db_restore", run_id)
    assert states.pop("approve_replace") == "skipped", "asked without replace"
    assert set(states.values()) == {"success"}
    assert "restored_e2e" in databases(target_server)
    report = (
        stack.s3_client()
        .get_object(Bucket="stellar-backups", Key=key + ".restore_report.json")["Body"]
        .read()
    )
    assert b'"success": true' in report
    log = api.task_log("db_restore", run_id, "restore_backup")
    assert PASSWORD not in log

    rejected = api.trigger("db_restore", conf={**conf, "target_database": "never_restored"})
    api.wait_for_approval("db_restore", rejected, "approve_restore")
    api_as("lead2").answer_approval("db_restore", rejected, "approve_restore", "Reject")
    api.wait_run("db_restore", rejected, timeout=300)
    states = api.task_states("db_restore", rejected)
    assert states["restore_backup"] == "skipped" and states["publish_report"] == "success", states
    assert "never_restored" not in databases(target_server)
