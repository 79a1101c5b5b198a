"""The alert rules and the dashboard: promtool's own checks and unit tests, names that exist, the
committed rules file as the rendering of the taxonomy, and a silence rule for every scheduled DAG."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from stellar_ops.core.alert_rules import (
    EXAMPLE_RUNBOOK_BASE_URL,
    UNWATCHED,
    never_pushed_alert,
    render,
    silence_after,
    silence_alert,
)
from stellar_ops.core.metrics import RUN_FINISHED
from stellar_ops.core.runbooks import RUNBOOKS, runbook_link
from stellar_ops.registry import CATALOGUE

MONITORING = Path(__file__).resolve().parents[3] / "monitoring"
RULES = MONITORING / "prometheus" / "stellar_ops_rules.yml"
# the minute-scale tests, and those over hours to weeks (evaluated hourly, to stay fast)
RULE_TESTS = sorted(RULES.parent.glob("*_test.yml"))
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
    "stellar_pitr_archive_lag_seconds",
    "stellar_pitr_archive_failing",
    "stellar_restore_seconds",
    RUN_FINISHED,
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=RULES.parent, timeout=120)


def rules(text: str | None = None) -> list[dict]:
    document = yaml.safe_load(RULES.read_text() if text is None else text)
    return [rule for group in document["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """The stellar_* metrics an expression reads (not label values such as job="stellar_ops")."""
    return set(re.findall(r"stellar_\w+", re.sub(r'"[^"]*"', '""', expr)))


def test_promtool_accepts_the_rules():
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_of_the_rules_pass():
    assert [path.name for path in RULE_TESTS] == [
        "stellar_ops_rules_days_test.yml",
        "stellar_ops_rules_test.yml",
    ]
    result = promtool("test", "rules", *(path.name for path in RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_every_rule_has_a_unit_test():
    tested = {name for path in RULE_TESTS for name in re.findall(r"alertname: (\w+)", path.read_text())}
    assert {rule["alert"] for rule in rules()} <= tested


def test_promtool_test_rules_can_fail(tmp_path):
    broken = tmp_path / "rules_test.yml"
    broken.write_text(
        (RULES.parent / "stellar_ops_rules_test.yml")  # the minute-scale file: quick
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
    assert rule["annotations"]["runbook_url"] == runbook_link(book, EXAMPLE_RUNBOOK_BASE_URL)
    assert rule["annotations"]["runbook_url"].startswith("https://")
    assert metric_names(rule["expr"]) <= METRICS


def test_the_committed_rules_are_the_rendering_of_the_taxonomy():
    rendered = render(CATALOGUE.values(), runbook_base_url=EXAMPLE_RUNBOOK_BASE_URL, job="stellar_ops")
    assert RULES.read_text() == rendered, (
        "monitoring/prometheus/stellar_ops_rules.yml is not the rendering of stellar_ops.core.alert_rules: "
        "run `make docs`"
    )


def silence_gaps(rule_list: list[dict]) -> list[str]:
    """The scheduled DAGs (less the documented exceptions) that no rule watches as it should."""
    by_name: dict[str, list[dict]] = {}
    for rule in rule_list:
        by_name.setdefault(rule["alert"], []).append(rule)
    gaps = []
    for entry in CATALOGUE.values():
        if entry.schedule is None or entry.dag_id in UNWATCHED:
            continue
        seconds = int(silence_after(entry).total_seconds())
        if entry.dag_id == "db_backup":
            wanted = {"BackupStale": f"> {seconds}", "BackupNeverSucceeded": "absent("}
        else:
            series = f'push_time_seconds{{job="stellar_ops",procedure="{entry.dag_id}"}}'
            wanted = {
                silence_alert(entry.dag_id): f"{series}) > {seconds}",
                never_pushed_alert(entry.dag_id): series,
            }
        for name, needle in wanted.items():
            found = [
                r
                for r in by_name.get(name, [])
                if needle in r["expr"]
                and r["labels"]["severity"] == entry.severity
                and r["annotations"]["runbook"] == entry.runbook
            ]
            if not found:
                gaps.append(f"{entry.dag_id}: no {name} reading {needle!r} at {entry.severity}")
    return gaps


def test_every_scheduled_dag_has_a_silence_rule():
    assert silence_gaps(rules()) == []
    scheduled = {e.dag_id for e in CATALOGUE.values() if e.schedule}
    assert scheduled - set(UNWATCHED) >= {
        "db_backup",
        "dr_restore_test",
        "tls_cert_check",
        "perf_analysis",
        "morning_health_check",
        "db_maintenance",
        "secrets_rotation_audit",
    }
    # an exception names a scheduled DAG of the catalogue, or it is a stale excuse
    assert set(UNWATCHED) <= scheduled
    assert not any(
        e.schedule is None and silence_alert(e.dag_id) in {r["alert"] for r in rules()}
        for e in CATALOGUE.values()
    )


def test_the_silence_check_fails_when_a_rule_is_missing_or_wrong():
    without_tls = [r for r in rules() if r["alert"] != "TLSCheckSilent"]
    assert silence_gaps(without_tls) == [
        "tls_cert_check: no TLSCheckSilent reading "
        '\'push_time_seconds{job="stellar_ops",procedure="tls_cert_check"}) > 48600\' at P2'
    ]
    lowered = yaml.safe_load(RULES.read_text().replace("severity: P2", "severity: P3"))
    assert any(
        "DrTestSilent" in gap for gap in silence_gaps([r for g in lowered["groups"] for r in g["rules"]])
    )


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
