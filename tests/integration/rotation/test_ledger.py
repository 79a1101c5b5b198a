"""The secrets rotation ledger in the stack's S3: the weekly audit's digest, and manual records."""

from __future__ import annotations

import json
import re

import pytest

from stellar_ops.core.alerts import markdown_leftovers
from tests.integration.rotation.conftest import cli
from tests.support.dagrun import run_dag

pytestmark = pytest.mark.integration


def test_the_audit_sends_one_digest_of_every_overdue_secret_and_a_record_clears_one(rotation, receiver):
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
    (digest,) = receiver.texts()  # one message for the whole run, not one per secret
    assert digest.startswith(
        ":large_orange_circle: [P3] SecretRotationOverdue: 6 secrets overdue for rotation"
    )
    assert "SEC-3.3" in digest and markdown_leftovers(digest) == []
    bullets = [line for line in digest.splitlines() if line.startswith("• ")]
    assert sorted(line.split()[1] for line in bullets) == sorted(o["secret"] for o in report["overdue"])
    (postgres,) = [line for line in bullets if "POSTGRES_PASSWORD" in line]
    assert (
        "has no recorded rotation" in postgres and "secret_rotation with secret POSTGRES_PASSWORD" in postgres
    )
    assert all("Rotate it: " in line for line in bullets)

    receiver.clear()
    for name in ("API_KEYS", "ADMIN_KEYS", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "S3_CREDENTIALS"):
        assert cli("secrets", "record", name).returncode == 0

    recorded = cli("secrets", "record", "POSTGRES_PASSWORD", "--by", "oncall-lead")
    assert recorded.returncode == 0, recorded.stderr
    assert json.loads(recorded.stdout)["by"] == "oncall-lead"
    again = cli("secrets", "audit", "--json")
    assert again.returncode == 0, again.stderr  # nothing overdue any more
    status = json.loads(again.stdout)
    assert status["overdue"] == []
    (row,) = [r for r in status["secrets"] if r["secret"] == "POSTGRES_PASSWORD"]
    assert row["overdue"] is False and row["by"] == "oncall-lead"
    assert receiver.texts() == []  # an audit with nothing overdue sends nothing


def test_an_old_record_is_overdue_and_a_bad_name_is_refused(rotation):
    assert cli("secrets", "record", "REDIS_PASSWORD", "--at", "2025-01-01T00:00:00Z").returncode == 0
    report = json.loads(cli("secrets", "audit", "--json").stdout)
    (redis,) = [o for o in report["overdue"] if o["secret"] == "REDIS_PASSWORD"]
    assert redis["last_rotated"].startswith("2025-01-01")
    bad = cli("secrets", "record", "not a name")
    assert bad.returncode == 2 and "letters, digits and underscores" in bad.stderr


def test_the_ledger_dag_sends_one_digest_naming_every_overdue_secret(airflow_db, rotation, receiver):
    assert cli("secrets", "record", "API_KEYS").returncode == 0
    assert cli("secrets", "record", "ADMIN_KEYS").returncode == 0
    assert cli("secrets", "record", "REDIS_PASSWORD", "--at", "2020-01-01T00:00:00Z").returncode == 0
    outcome = run_dag("secrets_rotation_audit")
    assert outcome.state == "success", outcome.tasks
    audit = outcome.xcom("audit_rotation_ledger")
    overdue = {o["secret"] for o in audit["overdue"]}
    assert audit["overdue_count"] == len(overdue)
    assert overdue == {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "S3_CREDENTIALS"}
    (digest,) = receiver.texts()
    assert "[P3] SecretRotationOverdue: 4 secrets overdue for rotation" in digest
    assert markdown_leftovers(digest) == []
    bullets = [line for line in digest.splitlines() if line.startswith("• ")]
    assert {line.split()[1] for line in bullets} == overdue
    (redis,) = [line for line in bullets if "REDIS_PASSWORD" in line]
    # how overdue, in words (never str(timedelta)'s "2166 days, 18:00:00")
    assert re.search(
        r"was last rotated 2020-01-01 \(\d+ days( \d+ h)? ago, overdue by \d+ days( \d+ h)?\)", redis
    )
    assert "secret_rotation with secret REDIS_PASSWORD" in redis
    (grafana,) = [line for line in bullets if "GRAFANA_ADMIN_PASSWORD" in line]
    assert (
        "has no recorded rotation" in grafana
        and "secret_rotation with secret GRAFANA_ADMIN_PASSWORD" in grafana
    )
