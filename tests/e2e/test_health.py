"""``morning_health_check`` under a running scheduler: its checks as parallel tasks, red on a stale
backup with its summary and failure alert, green again with the recovery announced, and a success
whose callback comes late never announcing a recovery from a newer failure."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.support.manifests import publish_verified_backup
from tests.support.waiting import wait_for

# each test judges what fires in the stack's Alertmanager: none left by an earlier test's red run
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("no_alert_firing")]

DAG = "morning_health_check"
LATE_SUCCESS = "before the incident's latest failure: not a recovery"


def _summaries(texts: list[str]) -> list[str]:
    return [t for t in texts if t.split("\n", 1)[0].split(" ", 1)[-1].startswith("Morning health check:")]


def _resolutions(receiver) -> list[str]:
    return [t for t in receiver.texts() if "RESOLVED" in t]


def _config(stack, prefix: str, **health) -> dict:
    return {
        "backup": {"bucket": "stellar-backups", "prefix": prefix},
        "health": {"disk_paths": [stack.data_dir], **health},
    }


def test_red_on_a_stale_backup_and_green_again(airflow, api, stack, receiver, e2e_prefix):
    publish_verified_backup(stack, e2e_prefix, age=timedelta(hours=3))
    api.wait_for_dag(DAG)
    api.unpause(DAG)

    api.set_variable("stellar_ops_config", _config(stack, e2e_prefix))
    healthy = api.trigger(DAG)
    assert api.wait_run(DAG, healthy) == "success", api.task_states(DAG, healthy)
    assert api.xcom(DAG, healthy, "summarize_health")["status"] == "unknown"  # no TLS results here
    (summary,) = wait_for(lambda: _summaries(receiver.texts()), 30, "summary")
    assert summary.startswith(":white_check_mark: Morning health check: healthy")
    for name in ("services", "alerts", "backups", "disk", "indexer_lag", "certificates", "wal_archive"):
        assert f"\n{name} " in summary, name

    receiver.clear()
    api.set_variable("stellar_ops_config", _config(stack, e2e_prefix, backup_max_age_hours=1))
    stale = api.trigger(DAG)
    assert api.wait_run(DAG, stale) == "failed"
    states = api.task_states(DAG, stale)
    assert states.pop("summarize_health") == "failed"
    assert states.pop("confirm_success") == "upstream_failed", "the run's verdict is red"
    assert set(states.values()) == {"success"}
    assert api.task_tries(DAG, stale)["summarize_health"] == 1
    (red,) = wait_for(lambda: _summaries(receiver.texts()), 30, "summary")
    assert red.startswith(":red_circle: Morning health check: 1 critical (backups)")
    assert "RB-002 Backup failed or stale" in red
    alert = wait_for(lambda: [t for t in receiver.texts() if "HealthCheckFailed" in t], 60, "failure alert")
    assert "1 critical health check(s): backups" in alert[0]

    receiver.clear()
    api.set_variable("stellar_ops_config", _config(stack, e2e_prefix))
    again = api.trigger(DAG)
    assert api.wait_run(DAG, again) == "success"
    resolved = wait_for(
        lambda: _resolutions(receiver),
        60,
        "resolution",
        explain=lambda: airflow.dag_processor_log(f"{DAG}.py")[-4000:],
    )
    assert again in resolved[0] and f"failing since run {stale}" in resolved[0]
    assert json.dumps(api.xcom(DAG, again, "check_backups")["status"]) == '"ok"'


def test_a_success_whose_callback_comes_after_a_newer_failure_does_not_resolve_it(
    airflow, api, stack, receiver, e2e_prefix
):
    publish_verified_backup(stack, e2e_prefix, age=timedelta(hours=3))
    api.wait_for_dag(DAG)
    api.unpause(DAG)
    log_of_dag = f"{DAG}.py"
    late_before = airflow.dag_processor_log(log_of_dag).count(LATE_SUCCESS)
    with airflow.dag_processor_paused():  # busy: the success callback waits in the metadata DB
        api.set_variable("stellar_ops_config", _config(stack, e2e_prefix))
        earlier = api.trigger(DAG)
        assert api.wait_run(DAG, earlier) == "success", api.task_states(DAG, earlier)
        api.set_variable("stellar_ops_config", _config(stack, e2e_prefix, backup_max_age_hours=1))
        failed = api.trigger(DAG)
        assert api.wait_run(DAG, failed) == "failed"
        wait_for(lambda: [t for t in receiver.texts() if "HealthCheckFailed" in t], 60, "failure alert")
    # the earlier run's success callback runs now, after the newer run's failure
    wait_for(
        lambda: (
            airflow.dag_processor_log(log_of_dag).count(LATE_SUCCESS) > late_before or _resolutions(receiver)
        ),
        120,
        f"late success callback of {earlier}",
        explain=lambda: airflow.dag_processor_log(log_of_dag)[-4000:],
    )
    assert not _resolutions(receiver), f"{earlier}, which ended before {failed} failed, resolved it"

    receiver.clear()
    api.set_variable("stellar_ops_config", _config(stack, e2e_prefix))
    again = api.trigger(DAG)
    assert api.wait_run(DAG, again) == "success"
    (resolved,) = wait_for(
        lambda: _resolutions(receiver),
        60,
        "resolution",
        explain=lambda: airflow.dag_processor_log(log_of_dag)[-4000:],
    )
    assert f"succeeded again in run {again} (failing since run {failed})" in resolved
