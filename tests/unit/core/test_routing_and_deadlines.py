"""Severity routes and deadlines: their config, and the messages that state severity and response time."""

from __future__ import annotations

import pytest

from stellar_ops.adapters.common.deadlines import deadline_for, deadline_minutes, deadlines_config
from stellar_ops.core.alerts import deadline_message, recovery_message, unpaged
from stellar_ops.core.config import AlertsConfig
from stellar_ops.core.errors import ConfigError
from stellar_ops.registry import parse_config, procedure_for


def test_routes_default_to_paging_for_p1_and_ops_for_the_rest():
    routes = parse_config(None).alerts.routes
    assert routes == {"P1": "paging", "P2": "ops", "P3": "ops"}


def test_a_route_for_every_severity_is_required_and_channels_are_named():
    with pytest.raises(ConfigError, match="alerts.routes: .*needs a channel for P3"):
        parse_config({"alerts": {"routes": {"P1": "paging", "P2": "ops"}}})
    with pytest.raises(ConfigError, match="alerts.routes.P2"):
        parse_config({"alerts": {"routes": {"P1": "paging", "P2": "sms", "P3": "ops"}}})


def test_deadlines_come_from_the_environment_with_each_procedures_expected_time():
    entry = procedure_for("db_backup")
    assert deadline_minutes(entry, deadlines_config({})) == 60
    config = deadlines_config({"STELLAR_OPS_DEADLINES": '{"minutes": {"db_backup": 90}}'})
    assert deadline_minutes(entry, config) == 90
    assert deadline_minutes(procedure_for("dr_restore_test"), config) == 120
    assert deadline_for(entry, {"STELLAR_OPS_DEADLINES": '{"enabled": false}'}) is None
    alert = deadline_for(entry, {})
    assert alert.interval.total_seconds() == 3600
    assert alert.callback.kwargs == {"dag_id": "db_backup", "minutes": 60.0}
    with pytest.raises(ConfigError, match="STELLAR_OPS_DEADLINES is not a valid deadlines config"):
        deadlines_config({"STELLAR_OPS_DEADLINES": '{"minutes": {"db_backup": "soon"}}'})


def test_a_missed_deadline_states_severity_response_time_and_runbook():
    text = deadline_message(
        procedure_for("dr_restore_test"),
        AlertsConfig(),
        run_id="scheduled__2026-12-01",
        queued_at="2026-12-01T04:00:01+00:00",
        minutes=120,
        dag_page="http://af/dags/dr_restore_test",
    )["text"]
    assert text.splitlines()[0] == (
        ":red_circle: [P2] DeadlineMissed: dr_restore_test run scheduled__2026-12-01 is not done 2 h "
        "after it was queued"
    )
    assert "*Expected:* done within 2 h of being queued" in text
    assert "respond within 1 hour" in text
    assert "*Runbook:* RB-003 Disaster-recovery test failed: docs/runbooks.md#rb-003" in text


def test_a_recovery_links_its_review_and_a_page_without_a_paging_channel_is_marked():
    text = recovery_message(
        dag_id="db_backup",
        run_id="manual__2",
        failed_run_id="scheduled__1",
        alert_name="BackupFailed",
        runbook_url="http://af/dags/db_backup",
        severity="P2",
        review="s3://stellar-backups/backups/incidents/2026-11-30-db_backup.md",
    )["text"]
    assert text.splitlines()[0].startswith(
        ":large_green_circle: RESOLVED BackupFailed: db_backup succeeded again"
    )
    assert (
        "*Post-incident review (within 48 hours):* s3://stellar-backups/backups/incidents/2026-11-30-db_backup.md"
        in text
    )
    assert unpaged({"text": "page", "blocks": []})["text"].endswith("this should have paged) page")
