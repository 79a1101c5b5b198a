"""The secrets rotation ledger in the stack's S3: the weekly audit's alerts, and manual records."""

from __future__ import annotations

import json

import pytest

from tests.integration.rotation.conftest import cli
from tests.support.dagrun import run_dag

pytestmark = pytest.mark.integration


def test_the_audit_alerts_each_overdue_secret_with_its_procedure_and_a_record_clears_one(rotation, receiver):
    result = cli("secrets", "audit", "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert {o["secret"] for o in report["overdue"]} == {
        "API_KEYS",
        "ADMIN_KEYS",
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
        "S3_CREDENTIALS",
    }
    alerts = [t for t in receiver.texts() if "SecretRotationOverdue" in t]
    assert len(alerts) == 6
    (postgres,) = [t for t in alerts if "POSTGRES_PASSWORD" in t]
    assert "ALTER ROLE" in postgres and "SEC-3.3" in postgres and "[P3]" in postgres

    recorded = cli("secrets", "record", "POSTGRES_PASSWORD", "--by", "oncall-lead")
    assert recorded.returncode == 0, recorded.stderr
    assert json.loads(recorded.stdout)["by"] == "oncall-lead"
    again = json.loads(cli("secrets", "audit", "--json").stdout)
    assert "POSTGRES_PASSWORD" not in {o["secret"] for o in again["overdue"]}
    (row,) = [r for r in again["secrets"] if r["secret"] == "POSTGRES_PASSWORD"]
    assert row["overdue"] is False and row["by"] == "oncall-lead"


def test_an_old_record_is_overdue_and_a_bad_name_is_refused(rotation):
    assert cli("secrets", "record", "REDIS_PASSWORD", "--at", "2025-01-01T00:00:00Z").returncode == 0
    report = json.loads(cli("secrets", "audit", "--json").stdout)
    (redis,) = [o for o in report["overdue"] if o["secret"] == "REDIS_PASSWORD"]
    assert redis["last_rotated"].startswith("2025-01-01")
    bad = cli("secrets", "record", "not a name")
    assert bad.returncode == 2 and "letters, digits and underscores" in bad.stderr


def test_the_ledger_dag_alerts_the_overdue_secrets(airflow_db, rotation, receiver):
    for name in ("API_KEYS", "ADMIN_KEYS", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "S3_CREDENTIALS"):
        assert cli("secrets", "record", name).returncode == 0
    outcome = run_dag("secrets_rotation_audit")
    assert outcome.state == "success", outcome.tasks
    (overdue,) = outcome.xcom("audit_rotation_ledger")
    assert overdue["secret"] == "GRAFANA_ADMIN_PASSWORD"
    (alert,) = [t for t in receiver.texts() if "SecretRotationOverdue" in t]
    assert "GRAFANA_ADMIN_PASSWORD has no recorded rotation" in alert and "grafana-cli" in alert
