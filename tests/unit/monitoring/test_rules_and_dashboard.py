"""The alert rules and the dashboard: promtool's own checks and unit tests, and names that exist."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from stellar_ops.core.runbooks import RUNBOOKS, runbook_link

MONITORING = Path(__file__).resolve().parents[3] / "monitoring"
RULES = MONITORING / "prometheus" / "stellar_ops_rules.yml"
DASHBOARD = MONITORING / "grafana" / "stellar-ops.json"
# the metric names of DESIGN.md, as the procedures push them
METRICS = {
    "stellar_backup_success",
    "stellar_backup_last_success_timestamp_seconds",
    "stellar_backup_size_bytes",
    "stellar_backup_duration_seconds",
    "stellar_dr_test_success",
    "stellar_dr_restore_seconds",
    "stellar_dr_backup_age_seconds",
    "stellar_tls_cert_expiry_days",
    "stellar_tls_cert_state",
    "stellar_perf_check_status",
    "stellar_health_check_status",
    "stellar_restore_seconds",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=RULES.parent, timeout=120)


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_rules():
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_of_the_rules_pass():
    result = promtool("test", "rules", "stellar_ops_rules_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_rule_has_a_unit_test():
    tested = set(re.findall(r"alertname: (\w+)", (RULES.parent / "stellar_ops_rules_test.yml").read_text()))
    assert {rule["alert"] for rule in rules()} <= tested


def test_promtool_test_rules_can_fail(tmp_path):
    broken = tmp_path / "rules_test.yml"
    broken.write_text(
        (RULES.parent / "stellar_ops_rules_test.yml")
        .read_text()
        .replace(
            "severity: P2, job: stellar_ops, procedure: db_backup}",
            "severity: P3, job: stellar_ops, procedure: db_backup}",
            1,
        )
    )
    (tmp_path / RULES.name).write_text(RULES.read_text())
    result = subprocess.run(
        ["promtool", "test", "rules", broken.name], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode != 0 and "FAILED" in result.stdout + result.stderr


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_every_rule_has_a_severity_and_a_runbook_that_exist(rule):
    assert rule["labels"]["severity"] in ("P1", "P2", "P3")
    book = rule["annotations"]["runbook"]
    assert book in RUNBOOKS
    assert rule["annotations"]["runbook_url"] == runbook_link(book, None)
    assert set(re.findall(r"stellar_\w+", rule["expr"])) <= METRICS


def test_the_dashboard_shows_the_batch_jobs_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in expressions for name in re.findall(r"stellar_\w+", expr)}
    assert used <= METRICS
    for needed in (
        "stellar_backup_size_bytes",
        "stellar_backup_duration_seconds",
        "stellar_dr_restore_seconds",
        "stellar_dr_backup_age_seconds",
        "stellar_tls_cert_expiry_days",
        "stellar_perf_check_status",
        "stellar_health_check_status",
    ):
        assert needed in used, needed
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    assert all(panel["datasource"]["uid"] == "${datasource}" for panel in dashboard["panels"])
