"""What only a running scheduler does: REST triggers, DAG callbacks, backfills, approvals."""

from __future__ import annotations

import json
import time

import pytest

from tests.support.faults import gauge
from tests.support.fixtures import published as published_objects
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def keys_under(stack, prefix: str) -> list[str]:
    client = stack.s3_client()
    return sorted(
        o["Key"] for o in client.list_objects_v2(Bucket="stellar-backups", Prefix=prefix).get("Contents", [])
    )


def test_connections_and_config_come_from_airflow_settings(api):
    conn_ids = {
        c["connection_id"] for c in api.request("GET", "/connections", params={"limit": 100})["connections"]
    }
    assert {
        "stellar_db",
        "stellar_s3",
        "stellar_api",
        "stellar_redis",
        "stellar_redis_admin",
        "stellar_pg_admin",
        "grafana",
        "airflow_api",
        "stellar_docker",
        "slack_alerts",
        "alertmanager",
        "pushgateway",
    } <= conn_ids
    pools = {p["name"] for p in api.request("GET", "/pools")["pools"]}
    assert "stellar_db_heavy" in pools
    for dag_id in ("db_backup", "dr_restore_test", "db_maintenance"):
        api.wait_for_dag(dag_id)
    assert api.request("GET", "/importErrors")["import_errors"] == []


def test_db_backup_triggered_through_rest(api, stack, receiver, e2e_prefix):
    api.unpause("db_backup")
    run_id = api.trigger("db_backup", conf={"dry_run": True})
    assert api.wait_run("db_backup", run_id) == "success", api.task_states("db_backup", run_id)
    states = api.task_states("db_backup", run_id)
    assert states.pop("trigger_drill") == "skipped", "dr.trigger_on_new_backup is off"
    assert set(states.values()) == {"success"}
    published = api.xcom("db_backup", run_id, "publish_backup")
    assert keys_under(stack, e2e_prefix) == published_objects(published["key"])
    log = api.task_log("db_backup", run_id, "dump_to_s3")
    assert "dump finished" in log and "MiB/s" in log
    assert stack.db_password not in log
    assert (
        gauge(stack.url("pushgateway"), "stellar_backup_success", job="stellar_ops", procedure="db_backup")
        == 1.0
    )
    assert any(published["key"] in text for text in receiver.texts())


def test_a_failed_run_alerts_and_the_next_success_sends_a_recovery(api, stack, receiver, e2e_prefix):
    api.unpause("db_maintenance")
    api.set_variable("stellar_ops_config", {"maintenance": {"tables": ["no_such_table"]}})
    failed = api.trigger("db_maintenance")
    assert api.wait_run("db_maintenance", failed) == "failed"
    alerts = [t for t in receiver.texts() if "MaintenanceFailed" in t]
    assert alerts, receiver.texts()
    assert "no_such_table" in alerts[0] and "[P3]" in alerts[0] and failed in alerts[0]

    api.set_variable("stellar_ops_config", {})
    recovered = api.trigger("db_maintenance")
    assert api.wait_run("db_maintenance", recovered) == "success"
    # the DAG processor runs DAG callbacks a moment later
    (resolved,) = wait_for(lambda: [t for t in receiver.texts() if "RESOLVED" in t], 60, "resolution")
    assert "MaintenanceFailed" in resolved and recovered in resolved and failed in resolved


def seed_month_backups(stack, api, prefix: str) -> dict[str, str]:
    """Real backups for several months: one true backup copied under older slots' names."""
    run_id = api.trigger("db_backup", conf={"force": True})
    assert api.wait_run("db_backup", run_id) == "success"
    source = api.xcom("db_backup", run_id, "publish_backup")["key"]
    client = stack.s3_client()
    manifest = json.loads(
        client.get_object(Bucket="stellar-backups", Key=source + ".manifest.json")["Body"].read()
    )
    seeded = {}
    for label, stamp in {
        "jan_mid": "20260115T020000Z",
        "jan_end": "20260131T020000Z",
        "feb": "20260214T020000Z",
        "mar_1st": "20260301T020000Z",
    }.items():
        key = f"{prefix}stellar_escrow_{stamp}.dump.zst"
        client.copy_object(
            Bucket="stellar-backups", Key=key, CopySource={"Bucket": "stellar-backups", "Key": source}
        )
        client.put_object(
            Bucket="stellar-backups",
            Key=key + ".manifest.json",
            Body=json.dumps({**manifest, "key": key}).encode(),
        )
        seeded[label] = key
    for suffix in ("", ".manifest.json"):
        client.delete_object(Bucket="stellar-backups", Key=source + suffix)
    return seeded


def test_a_backfill_over_past_months_tests_each_months_newest_backup(api, stack, e2e_prefix):
    api.unpause("db_backup")
    seeded = seed_month_backups(stack, api, e2e_prefix)
    api.unpause("dr_restore_test")
    backfill_id = api.backfill("dr_restore_test", "2026-01-01T00:00:00Z", "2026-03-02T00:00:00Z")
    assert backfill_id in [b["id"] for b in api.backfills("dr_restore_test")]
    expected = {"2026-01-01": seeded["jan_end"], "2026-02-01": seeded["feb"], "2026-03-01": seeded["mar_1st"]}
    deadline = time.monotonic() + 600
    runs: dict[str, dict] = {}
    while time.monotonic() < deadline:
        runs = {
            r["logical_date"][:10]: r for r in api.dag_runs("dr_restore_test") if r["run_type"] == "backfill"
        }
        if set(expected) <= set(runs) and all(runs[d]["state"] in ("success", "failed") for d in expected):
            break
        time.sleep(2)
    assert set(expected) <= set(runs), runs
    for day, key in expected.items():
        run = runs[day]
        assert run["state"] == "success", (day, api.task_states("dr_restore_test", run["dag_run_id"]))
        assert api.xcom("dr_restore_test", run["dag_run_id"], "resolve_backup")["location"] == key, day


def test_the_harness_answers_a_human_approval(api):
    api.unpause("e2e_approval_probe")
    run_id = api.trigger("e2e_approval_probe")
    api.wait_for_approval("e2e_approval_probe", run_id, "approve_change")
    api.answer_approval("e2e_approval_probe", run_id, "approve_change", "Approve")
    assert api.wait_run("e2e_approval_probe", run_id, timeout=120) == "success"
    assert api.task_states("e2e_approval_probe", run_id)["after_approval"] == "success"
