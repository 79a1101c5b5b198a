"""The db_backup DAG run by ``dag.test()`` against the stack: outcome, alerts, metrics, faults."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.dagrun import run_dag
from tests.support.faults import PgDumpKiller, api_metrics, gauge
from tests.support.fixtures import published as published_objects

pytestmark = pytest.mark.integration

SLOT = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
KEY_NAME = "stellar_escrow_20261121T020000Z.dump.zst"


def test_db_backup_publishes_the_backup_metrics_asset_and_success_message(airflow_db, stack, ops, receiver):
    outcome = run_dag("db_backup", logical_date=SLOT)
    assert outcome.state == "success", outcome.tasks
    assert set(outcome.tasks.values()) == {"success"}
    key = ops.prefix + KEY_NAME
    assert ops.objects() == published_objects(key)

    published = outcome.xcom("publish_backup")
    assert published["key"] == key
    assert published["manifest_key"] == key + ".manifest.json"
    retention = outcome.xcom("apply_retention")
    assert retention["kept"] == [key]
    assert retention["deleted"] == []

    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        events = [e.extra for e in session.query(AssetEvent).all() if e.extra.get("key") == key]
    assert events
    assert events[-1]["manifest_key"] == key + ".manifest.json"
    stored = ops.store().get_json(key + ".manifest.json")
    assert events[-1]["manifest"]["sha256"] == stored["sha256"] == published["sha256"]
    assert events[-1]["manifest"]["row_counts"] == stored["row_counts"]
    assert "schema" not in events[-1]["manifest"]

    pushgateway = stack.url("pushgateway")
    labels = {"job": "stellar_ops", "procedure": "db_backup"}
    assert gauge(pushgateway, "stellar_backup_success", **labels) == 1.0
    assert gauge(pushgateway, "stellar_backup_size_bytes", **labels) == published["size_bytes"]
    assert gauge(pushgateway, "stellar_backup_duration_seconds", **labels) > 0
    finished = datetime.fromisoformat(published["finished_at"]).timestamp()
    assert gauge(pushgateway, "stellar_backup_last_success_timestamp_seconds", **labels) == pytest.approx(
        finished
    )
    posted = [
        m for m in api_metrics(stack.url("api"), stack.admin_key) if m["payload"]["source"] == "db_backup"
    ]
    names = {metric["name"] for metric in posted[-1]["payload"]["metrics"]}
    assert names == {
        "stellar_backup_success",
        "stellar_backup_last_success_timestamp_seconds",
        "stellar_backup_size_bytes",
        "stellar_backup_duration_seconds",
    }
    (text,) = receiver.texts()
    assert text.startswith(":white_check_mark: Backup OK")
    assert key in text


def test_a_rerun_of_the_same_slot_does_not_create_a_second_backup(airflow_db, ops):
    first = run_dag("db_backup", logical_date=SLOT)
    assert first.state == "success"
    manifest_before = ops.store().get_json(ops.prefix + KEY_NAME + ".manifest.json")

    again = run_dag("db_backup", logical_date=SLOT)
    assert again.state == "success"
    assert again.tasks["check_prerequisites"] == "skipped"
    assert again.tasks["dump_to_s3"] == "skipped"
    assert ops.objects() == published_objects(ops.prefix + KEY_NAME)

    forced = run_dag("db_backup", logical_date=SLOT, conf={"force": True})
    assert forced.state == "success"
    assert forced.tasks["dump_to_s3"] == "success"
    assert ops.objects() == published_objects(ops.prefix + KEY_NAME)
    manifest_after = ops.store().get_json(ops.prefix + KEY_NAME + ".manifest.json")
    assert manifest_after["started_at"] != manifest_before["started_at"]


def test_pg_dump_killed_once_is_retried_and_the_backup_succeeds(airflow_db, ops, receiver):
    with PgDumpKiller(after_bytes=1 << 20, times=1) as killer:
        outcome = run_dag("db_backup", logical_date=SLOT)
    assert len(killer.killed) == 1
    assert outcome.state == "success", outcome.tasks
    assert outcome.tries["dump_to_s3"] == 2
    assert ops.objects() == published_objects(ops.prefix + KEY_NAME)
    assert not any("BackupFailed" in text for text in receiver.texts())


def test_pg_dump_killed_on_every_try_alerts_keeps_the_good_backups_and_clearing_recovers(
    airflow_db, stack, ops, receiver
):
    good = run_dag("db_backup", logical_date=datetime(2026, 11, 20, 2, 0, tzinfo=UTC))
    assert good.state == "success"
    good_keys = ops.objects()
    receiver.clear()

    with PgDumpKiller(after_bytes=1 << 20, times=None) as killer:
        failed = run_dag("db_backup", logical_date=SLOT)
    assert len(killer.killed) == 3  # the try and both retries
    assert failed.state == "failed"
    assert failed.tasks["dump_to_s3"] == "failed"
    assert failed.tasks["apply_retention"] == "upstream_failed"
    assert failed.tasks["publish_backup"] == "upstream_failed"
    assert ops.objects() == good_keys, "nothing new under a final key, the good backup untouched"
    assert ops.store().unfinished_uploads(ops.prefix) == []
    alerts = [t for t in receiver.texts() if "BackupFailed" in t]
    assert len(alerts) == 1
    alert = alerts[0]
    for expected in (
        "[P2] BackupFailed",
        "db_backup.dump_to_s3 failed",
        f"*Run:* {failed.run_id}",
        "*Try:* 3 of 3",
        "pg_dump was killed by signal 9",
        "*Runbook:* RB-002 ",
        "*Log:* http",
        "/dags/db_backup",
    ):
        assert expected in alert
    labels = {"job": "stellar_ops", "procedure": "db_backup"}
    assert gauge(stack.url("pushgateway"), "stellar_backup_success", **labels) == 0.0

    cleared = run_dag("db_backup", logical_date=SLOT)  # what "Clear" in the UI does
    assert cleared.state == "success"
    assert ops.prefix + KEY_NAME in ops.objects()
    assert gauge(stack.url("pushgateway"), "stellar_backup_success", **labels) == 1.0


def test_wrong_password_fails_clearly_and_the_password_is_never_written(
    airflow_db, stack, ops, receiver, monkeypatch, capfd
):
    secret = "Wr0ng-But-Secret-#42"
    conn = json.loads(os.environ["AIRFLOW_CONN_STELLAR_DB"])
    monkeypatch.setenv("AIRFLOW_CONN_STELLAR_DB", json.dumps({**conn, "password": secret}))
    outcome = run_dag("db_backup", logical_date=SLOT)
    assert outcome.state == "failed"
    assert outcome.tasks["check_prerequisites"] == "failed"
    captured = capfd.readouterr()
    output = captured.out + captured.err
    assert 'password authentication failed for user "stellar"' in output
    (alert,) = [t for t in receiver.texts() if "BackupFailed" in t]
    assert "password authentication failed" in alert
    logs = "".join(p.read_text(errors="replace") for p in Path(os.environ["AIRFLOW_HOME"]).rglob("*.log"))
    for text in (output, alert, logs, json.dumps(outcome.xcom("check_prerequisites"))):
        assert secret not in text
    assert ops.objects() == []


def test_missing_connection_is_one_clear_line(airflow_db, ops, monkeypatch, capfd):
    monkeypatch.delenv("AIRFLOW_CONN_STELLAR_S3")
    outcome = run_dag("db_backup", logical_date=SLOT)
    assert outcome.state == "failed"
    assert outcome.tries["check_prerequisites"] == 1, "a missing connection is not retried"
    output = "".join(capfd.readouterr())
    assert "connection 'stellar_s3' (the backups bucket) is not defined" in output
    assert "AIRFLOW_CONN_STELLAR_S3" in output


def test_invalid_config_fails_at_once_naming_the_field(airflow_db, ops, monkeypatch, capfd):
    monkeypatch.setenv("AIRFLOW_VAR_STELLAR_OPS_CONFIG", json.dumps({"backup": {"retention_days": "often"}}))
    outcome = run_dag("db_backup", logical_date=SLOT)
    assert outcome.state == "failed"
    assert outcome.tries["check_prerequisites"] == 1
    assert "backup.retention_days: Input should be a valid integer" in "".join(capfd.readouterr())


def test_bad_param_is_rejected_before_the_run(airflow_db):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="force"):
        run_dag("db_backup", logical_date=SLOT, conf={"force": "yes please"})


def test_a_malformed_connection_names_the_missing_field(airflow_db, ops, monkeypatch, capfd):
    conn = json.loads(os.environ["AIRFLOW_CONN_STELLAR_DB"])
    del conn["schema"]
    monkeypatch.setenv("AIRFLOW_CONN_STELLAR_DB", json.dumps(conn))
    outcome = run_dag("db_backup", logical_date=SLOT)
    assert outcome.state == "failed"
    assert outcome.tries["check_prerequisites"] == 1
    assert "connection 'stellar_db' lacks schema (schema holds the database name)" in "".join(
        capfd.readouterr()
    )


def test_no_secret_reaches_xcom(airflow_db, stack, ops):
    outcome = run_dag("db_backup", logical_date=SLOT)
    assert outcome.state == "success"
    secrets = [stack.db_password, stack.s3_secret_key, stack.api_key, stack.webhook_token]
    for task_id in outcome.tasks:
        stored = json.dumps(outcome.xcom(task_id))
        for secret in secrets:
            assert secret not in stored, f"a secret in {task_id}'s XCom"
