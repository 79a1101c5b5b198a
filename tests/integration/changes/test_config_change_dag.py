"""``config_change`` run whole by ``dag.test()`` against the stack's API stand-in (the on-call lead's
approval given at once): a change written to the API's env file, the API reloaded and healthy with
it, recorded with the versions before and after; a change that makes the API unhealthy is reverted
to the very bytes before and the run is red; a trigger with nothing but the defaults is refused at
its check, before anything is written.

The stand-in's env file is the stack's own (its keys): each test puts its exact bytes back, and the
API reloaded, in ``finally``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from stellar_ops.changes.changelog import ChangeLog
from tests.support.dagrun import Outcome, run_dag

pytestmark = pytest.mark.integration

ON_CALL = "oncall-e2e"


@pytest.fixture
def on_call(monkeypatch) -> list[str]:
    from stellar_ops.adapters.common.approvals import ANSWER, Approval

    asked: list[str] = []

    # Approvals block under dag.test() (AIRFLOW_NOTES trap 5): the on-call lead approves at once.
    def approve(self: Any, context: Any) -> Any:
        asked.append(self.task_id)
        context["ti"].xcom_push(
            key=ANSWER, value={"chosen": "Approve", "by": ON_CALL, "at": datetime.now(UTC).isoformat()}
        )
        return {"chosen_options": ["Approve"], "params_input": {}}

    monkeypatch.setattr(Approval, "execute", approve)
    return asked


def health(stack) -> dict[str, Any]:
    answer = requests.get(stack.url("api") + "/health", headers={"X-API-Key": stack.api_key}, timeout=5)
    return {"code": answer.status_code, **answer.json()}


def reload_api(stack) -> None:
    requests.post(
        stack.url("api") + "/_reload", headers={"X-API-Key": stack.admin_key}, timeout=5
    ).raise_for_status()


@pytest.fixture
def api_env(stack) -> Iterator[bytes]:
    """The API's env file as it is; its exact bytes put back (and reloaded) after the test."""
    path = stack.api_env_file
    original = path.read_bytes()
    try:
        yield original
    finally:
        path.write_bytes(original)
        reload_api(stack)
        assert health(stack)["code"] == 200


@pytest.fixture
def change_ops(ops, api_env):
    ops.update(
        rotation={"restart": "http_reload"},
        changes={
            "log_prefix": f"{ops.prefix}changes/",
            "services": ["api"],
            "health_checks": ["services"],
            "health_settle_seconds": 0,
            "healthy_timeout_seconds": 5,
        },
    )
    return ops


def record_of(ops, outcome: Outcome) -> dict[str, Any]:
    change = outcome.xcom("check_change")["change_id"]
    record = ChangeLog(ops.store(), f"{ops.prefix}changes/").read(change)
    assert record is not None, f"no record of {change}"
    return record


def test_a_config_change_holds_and_one_that_makes_the_api_unhealthy_is_reverted(
    airflow_db, stack, change_ops, on_call, api_env
):
    outcome = run_dag("config_change", conf={"set": {"INDEXER_LAG_SECONDS": "4"}, "reason": "OPS-51 test"})
    assert outcome.state == "success", outcome.tasks
    assert on_call == ["approve_change"]
    assert outcome.tasks["revert_change"] == "skipped"
    assert health(stack)["indexer_lag_seconds"] == 4
    assert b"INDEXER_LAG_SECONDS=4" in stack.api_env_file.read_bytes()
    record = record_of(change_ops, outcome)
    assert record["status"] == "healthy" and record["result"] == "done"
    assert (
        record["version_before"]
        and record["version_after"]
        and record["version_before"] != record["version_after"]
    )
    assert record["approval"]["by"] == ON_CALL and record["reason"] == "OPS-51 test"
    assert [r["service"] for r in record["restarts"]] == ["api"]

    before = stack.api_env_file.read_bytes()
    on_call.clear()
    outcome = run_dag("config_change", conf={"set": {"HEALTH_STATUS": "degraded"}, "reason": "OPS-52 test"})
    assert outcome.state == "failed", outcome.tasks
    assert outcome.tasks["restart_services"] == "failed"
    assert outcome.tasks["check_health"] == "upstream_failed"
    assert outcome.tasks["revert_change"] == "success"
    assert stack.api_env_file.read_bytes() == before
    answer = health(stack)
    assert answer["code"] == 200 and answer["status"] == "ok" and answer["indexer_lag_seconds"] == 4
    record = record_of(change_ops, outcome)
    assert record["status"] == "reverted", record
    assert record["result"] == "failed at restart_services; reverted"
    assert record["version_after"] != record["version_before"]


def test_a_trigger_with_only_the_defaults_is_refused_at_its_check(
    airflow_db, stack, change_ops, on_call, api_env, receiver
):
    outcome = run_dag("config_change")
    assert outcome.state == "failed", outcome.tasks
    assert outcome.tasks["check_change"] == "failed"
    assert outcome.tasks["approve_change"] == "upstream_failed"
    assert outcome.tasks["write_change"] == "upstream_failed"
    assert on_call == []
    assert stack.api_env_file.read_bytes() == api_env
    [record] = ChangeLog(change_ops.store(), f"{change_ops.prefix}changes/").records()
    assert record["status"] == "failed before its check" and record["result"] == "failed at check_change"
    assert any("ConfigChangeError: no reason given" in t for t in receiver.texts()), receiver.texts()

    receiver.clear()
    outcome = run_dag("config_change", conf={"reason": "OPS-53 nothing"})
    assert outcome.tasks["check_change"] == "failed" and outcome.tasks["write_change"] == "upstream_failed"
    assert any("needs at least one variable to set or remove" in t for t in receiver.texts()), (
        receiver.texts()
    )
    assert on_call == [] and stack.api_env_file.read_bytes() == api_env
