"""The db_backup DAG run by ``dag.test()`` against the stack: outcome, alerts, metrics, faults."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stellar_ops.catalogue.keys import parse_backup_key
from tests.support.dagrun import run_dag
from tests.support.faults import PgDumpKiller, api_metrics, gauge
from tests.support.fixtures import published as published_objects

pytestmark = pytest.mark.integration

SLOT = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)


def todays_slot() -> datetime:
    """The daily schedule's slot whose period holds now."""
    now = datetime.now(UTC)
    slot = now.replace(hour=2, minute=0, second=0, microsecond=0)
    return slot if slot <= now else slot - timedelta(days=1)


def snapshot_time_of(key: str, prefix: str) -> datetime:
    name = parse_backup_key(key, prefix)
    assert name is not None, key
    return name.timestamp


def assert_taken_now(key: str, prefix: str) -> None:
    """A backup is named by its snapshot's time: now, to the second, never its run's slot."""
    assert abs((datetime.now(UTC) - snapshot_time_of(key, prefix)).total_seconds()) < 120, key


def test_db_backup_publishes_the_backup_metrics_asset_and_success_message(airflow_db, stack, ops, receiver):
    outcome = run_dag("db_backup", logical_date=todays_slot())
    assert outcome.state == "success", outcome.tasks
    tasks = dict(outcome.tasks)
    assert tasks.pop("trigger_drill", "skipped") == "skipped"  # dr.trigger_on_new_backup is off by default
    assert set(tasks.values()) == {"success"}
    published = outcome.xcom("publish_backup")
    key = published["key"]
    assert_taken_now(key, ops.prefix)
    assert ops.objects() == published_objects(key)
    assert published["note"] is None, "a run within its slot's period holds its slot's data"
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
    assert events[-1]["sha256"] == stored["sha256"] == published["sha256"]
    assert events[-1]["schema_fingerprint"] == stored["schema_fingerprint"]
    assert events[-1]["tables"] == len(stored["row_counts"]) > 0
    assert events[-1]["rows"] == sum(stored["row_counts"].values()) > 0
    assert not {"manifest", "row_counts", "schema", "sequence_values"} & events[-1].keys()

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
        m for m in api_metrics(stack.url("api"), stack.admin_key) if m["payload"].get("source") == "db_backup"
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
    assert "not of its slot" not in text


def test_a_backfill_backs_up_now_says_so_and_a_second_run_of_the_slot_skips(airflow_db, ops, receiver, capfd):
    past = todays_slot() - timedelta(days=3)
    first = run_dag("db_backup", logical_date=past)
    assert first.state == "success", first.tasks
    key = first.xcom("publish_backup")["key"]
    assert_taken_now(key, ops.prefix)
    taken = snapshot_time_of(key, ops.prefix)
    assert abs((taken - past).total_seconds()) > 3 * 86400 - 120, "named by its snapshot, not by the slot"
    manifest = ops.store().get_json(key + ".manifest.json")
    assert datetime.fromisoformat(manifest["slot"]) == past
    assert datetime.fromisoformat(manifest["snapshot_at"]).replace(microsecond=0) == taken
    said = (
        f"This backup holds the data of {taken:%Y-%m-%d %H:%M:%S} UTC, not of its slot "
        f"{past:%Y-%m-%d %H:%M:%S} UTC"
    )
    assert manifest["note"].startswith(said)
    (text,) = receiver.texts()
    assert key in text and said in text
    assert said in "".join(capfd.readouterr())  # and in the task's log
    assert first.xcom("apply_retention")["kept"] == [key]

    again = run_dag("db_backup", logical_date=past)
    assert again.state == "success"
    assert again.tasks["check_prerequisites"] == "skipped"
    assert again.tasks["dump_to_s3"] == "skipped"
    assert (
        f"a verified backup covers slot {past.isoformat()}: {key} (it was taken by a run for this slot"
        in ("".join(capfd.readouterr()))
    )
    assert ops.objects() == published_objects(key)


def test_a_slot_whose_period_holds_a_verified_backup_skips(airflow_db, ops, capfd):
    now = datetime.now(UTC)
    manual = run_dag("db_backup", logical_date=now - timedelta(minutes=5))  # like a manual run's run_after
    assert manual.state == "success", manual.tasks
    key = manual.xcom("publish_backup")["key"]
    capfd.readouterr()

    earlier_slot = now - timedelta(hours=6)  # its period (6 h ago + 24 h) holds the backup just taken
    covered = run_dag("db_backup", logical_date=earlier_slot)
    assert covered.state == "success"
    assert covered.tasks["check_prerequisites"] == "skipped"
    log = "".join(capfd.readouterr())
    assert f"a verified backup covers slot {earlier_slot.isoformat()}: {key} (its snapshot of " in log
    assert "lies within the slot's period" in log
    assert ops.objects() == published_objects(key)

    day_before = earlier_slot - timedelta(days=1)  # its period ended before the backup was taken
    outside = run_dag("db_backup", logical_date=day_before)
    assert outside.tasks["dump_to_s3"] == "success"
    assert outside.xcom("publish_backup")["note"] is not None


def test_force_takes_a_new_backup_beside_the_covering_one_and_leaves_it_byte_identical(airflow_db, ops):
    slot = todays_slot()
    first = run_dag("db_backup", logical_date=slot)
    assert first.state == "success", first.tasks
    key = first.xcom("publish_backup")["key"]
    store = ops.store()
    before = {k: store.get_bytes(k) for k in published_objects(key)}

    forced = run_dag("db_backup", logical_date=slot, conf={"force": True})
    assert forced.state == "success", forced.tasks
    assert forced.tasks["dump_to_s3"] == "success"
    assert forced.xcom("check_prerequisites")["covering_backup"] == key
    new_key = forced.xcom("publish_backup")["key"]
    assert new_key != key
    assert snapshot_time_of(new_key, ops.prefix) > snapshot_time_of(key, ops.prefix)
    assert ops.objects() == sorted(published_objects(key) + published_objects(new_key))
    assert {k: store.get_bytes(k) for k in published_objects(key)} == before
    assert datetime.fromisoformat(store.get_json(new_key + ".manifest.json")["slot"]) == slot


def test_pg_dump_killed_once_is_retried_and_the_backup_succeeds(airflow_db, ops, receiver):
    with PgDumpKiller(after_bytes=1 << 20, times=1) as killer:
        outcome = run_dag("db_backup", logical_date=SLOT)
    assert len(killer.killed) == 1
    assert outcome.state == "success", outcome.tasks
    assert outcome.tries["dump_to_s3"] == 2
    key = outcome.xcom("publish_backup")["key"]
    assert_taken_now(key, ops.prefix)
    assert ops.objects() == published_objects(key)
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
        "*Log:* <http",
        "/dags/db_backup",
    ):
        assert expected in alert
    labels = {"job": "stellar_ops", "procedure": "db_backup"}
    assert gauge(stack.url("pushgateway"), "stellar_backup_success", **labels) == 0.0

    cleared = run_dag("db_backup", logical_date=SLOT)  # what "Clear" in the UI does
    assert cleared.state == "success"
    assert ops.objects() == sorted(good_keys + published_objects(cleared.xcom("publish_backup")["key"]))
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
