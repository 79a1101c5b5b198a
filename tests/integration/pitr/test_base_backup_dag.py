"""The db_base_backup DAG run by ``dag.test()`` against the stack, and ``stellar-ops pitr``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stellar_ops.pitr import catalog, layout
from stellar_ops.postgres.pitr import PitrConfig
from stellar_ops.storage.s3 import S3Store
from tests.support.dagrun import run_dag
from tests.support.faults import gauge

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "stellar-ops")


def test_db_base_backup_takes_a_complete_base_backup_and_reports_the_window(airflow_db, stack, ops, receiver):
    ops.update(pitr=stack.ops_config()["pitr"])
    outcome = run_dag("db_base_backup")
    assert outcome.state == "success", outcome.tasks
    assert set(outcome.tasks.values()) == {"success"}, outcome.tasks
    taken = outcome.xcom("take_base_backup")
    backup_id = taken["backup_id"]
    store = S3Store(stack.s3_client(), "stellar-backups")
    records = catalog.complete_base_backups(store, "pitr", "stellar")
    assert backup_id in [r.backup_id for r in records]
    assert store.exists(layout.record_key("pitr", "stellar", backup_id))
    assert outcome.xcom("verify_base_backup")["checks"] == ["size", "sha256", "zstd", "tar end"]
    retention = outcome.xcom("apply_retention")
    assert backup_id in retention["kept_backups"]
    assert any(backup_id in text and "Base backup OK" in text for text in receiver.texts())

    pushgateway = stack.url("pushgateway")
    assert gauge(pushgateway, "stellar_pitr_base_backup_success", procedure="db_base_backup") == 1.0
    window = gauge(pushgateway, "stellar_pitr_window_seconds", procedure="db_base_backup")
    assert window is not None and window >= 0.0

    env = dict(os.environ)
    listed = subprocess.run(
        [CLI, "pitr", "list", "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    rows = {row["backup_id"]: row for row in json.loads(listed.stdout)}
    assert rows[backup_id]["state"] == "complete" and rows[backup_id]["sha256"] == taken["sha256"]
    shown = subprocess.run([CLI, "pitr", "window"], capture_output=True, text=True, env=env, timeout=120)
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["oldest"] is not None and document["base_backups"] >= 1


def test_db_base_backup_fails_naming_the_missing_replication_privilege(airflow_db, stack, ops):
    from stellar_ops.postgres.target import connect

    ops.update(pitr={**stack.ops_config()["pitr"], "prefix": f"{ops.prefix}pitr"})
    with connect(stack.superuser) as conn:
        conn.execute(f"ALTER ROLE {stack.db.user} NOREPLICATION")
    try:
        outcome = run_dag("db_base_backup")
    finally:
        with connect(stack.superuser) as conn:
            conn.execute(f"ALTER ROLE {stack.db.user} REPLICATION")
    assert outcome.state == "failed"
    assert outcome.tasks["check_prerequisites"] == "failed"
    assert outcome.tasks["publish_metrics"] == "success"
    store = S3Store(stack.s3_client(), "stellar-backups")
    config = PitrConfig(prefix=f"{ops.prefix}pitr")
    assert list(store.list_objects(layout.base_root(config.prefix, config.server_name))) == []
    assert (
        gauge(stack.url("pushgateway"), "stellar_pitr_base_backup_success", procedure="db_base_backup") == 0.0
    )
