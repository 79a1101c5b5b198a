"""``morning_health_check`` through ``dag.test()``, green on a healthy stack and red with a stopped
server; ``stellar-ops health`` with its JSON and exit status; the summary message and the metrics."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.dagrun import run_dag
from tests.support.faults import gauge

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "stellar-ops")
CHECK_TASKS = [
    "check_services",
    "check_alerts",
    "check_backups",
    "check_disk",
    "check_indexer_lag",
    "check_certificates",
    "check_wal_archive",
]


def _summaries(texts: list[str]) -> list[str]:
    return [t for t in texts if t.split("\n", 1)[0].split(" ", 1)[-1].startswith("Morning health check:")]


def _summary(receiver) -> str:
    texts = _summaries(receiver.texts())
    assert len(texts) == 1, receiver.texts()
    return texts[0]


def test_green_on_a_healthy_stack_then_red_with_a_stopped_server(
    airflow_db, ops, backups, receiver, stack, stack_handle, no_alert_firing
):
    key = backups.add(hours_ago=3)
    backups.dr_report(key, success=True, days_ago=1)

    healthy = run_dag("morning_health_check")
    assert healthy.state == "success", healthy.tasks
    assert set(healthy.tasks.values()) == {"success"}
    assert healthy.xcom("summarize_health")["checks"] == {
        "services": "ok",
        "alerts": "ok",
        "backups": "ok",
        "disk": "ok",
        "indexer_lag": "ok",
        "certificates": "unknown",
        "wal_archive": "ok",
    }
    text = _summary(receiver)
    assert text.startswith(":white_check_mark: Morning health check: healthy")
    assert "certificates  unknown" in text
    assert gauge(stack.url("pushgateway"), "stellar_health_check_status", check="services") == 0
    assert gauge(stack.url("pushgateway"), "stellar_health_check_status", check="certificates") == 3

    receiver.clear()
    stack_handle.stop_s3()
    try:
        broken = run_dag("morning_health_check")
    finally:
        stack_handle.start_s3()
    assert broken.state == "failed", broken.tasks
    assert broken.tasks["summarize_health"] == "failed"
    assert broken.tries["summarize_health"] == 1  # a critical check is not retried
    assert all(broken.tasks[t] == "success" for t in CHECK_TASKS)
    assert broken.xcom("check_services")["status"] == "critical"
    texts = receiver.texts()
    summary = _summaries(texts)
    assert len(summary) == 1, texts
    # the WAL archive fails too when a segment closes during the outage: P1 as well, rightly
    assert re.match(
        r":red_circle: Morning health check: (1 critical \(services\)|2 critical \(services, wal_archive\))",
        summary[0],
    ), summary[0]
    assert "s3" in summary[0] and "RB-001 Database or API unavailable" in summary[0]
    # the run's failure alert goes out as for every DAG, naming the critical check
    assert any("morning_health_check" in t and "summarize_health" in t for t in texts if t not in summary)
    assert gauge(stack.url("pushgateway"), "stellar_health_check_status", check="services") == 2

    receiver.clear()
    again = run_dag("morning_health_check")
    assert again.state == "success", again.tasks


def test_red_with_a_stale_backup(airflow_db, ops, backups, receiver):
    backups.add(hours_ago=30)
    outcome = run_dag("morning_health_check")
    assert outcome.state == "failed"
    assert outcome.xcom("check_backups")["status"] == "critical"
    assert "Morning health check: 1 critical (backups)" in _summary(receiver)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "health", *args], capture_output=True, text=True, env=dict(os.environ), timeout=300
    )


def test_cli_json_and_exit_status(ops, backups, receiver, stack):
    backups.add(hours_ago=2)
    result = _cli("--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [c["name"] for c in document["checks"]] == [
        "services",
        "alerts",
        "backups",
        "disk",
        "indexer_lag",
        "certificates",
        "wal_archive",
    ]
    assert all({"name", "status", "detail"} <= set(c) for c in document["checks"])
    assert receiver.texts() == []  # a look from a terminal tells nobody

    only = _cli("--check", "disk", "--check", "indexer_lag", "--json")
    assert [c["name"] for c in json.loads(only.stdout)["checks"]] == ["disk", "indexer_lag"]

    ops.update(health={"backup_max_age_hours": 1})
    red = _cli("--check", "backups")
    assert red.returncode == 1
    assert red.stdout.splitlines()[0].split() == ["check", "state", "detail"]
    assert "backups  critical  newest verified backup is 2.0h old" in red.stdout

    published = _cli("--publish", "--check", "backups")
    assert published.returncode == 1
    assert "Morning health check: 1 critical (backups)" in _summary(receiver)
    assert gauge(stack.url("pushgateway"), "stellar_health_check_status", check="backups") == 2


def test_cli_rejects_an_unknown_check():
    result = _cli("--check", "coffee")
    assert result.returncode == 2
    assert "invalid choice: 'coffee'" in result.stderr
