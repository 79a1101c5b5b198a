"""Every Slack message the product builds is mrkdwn: no Markdown that Slack would show as typed.

Slack shows ``**bold**``, ``# headings``, table rules (``|---|``) and ``[text](url)`` links
raw; its own bold is ``*bold*`` and its links are ``<url|text>``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from stellar_ops.backup.report import Published, success_message
from stellar_ops.core.alerts import (
    FailureAlert,
    Finding,
    deadline_message,
    failure_message,
    finding_message,
    markdown_leftovers,
    recovery_message,
    unpaged,
)
from stellar_ops.core.config import AlertsConfig
from stellar_ops.dr import report as dr_report
from stellar_ops.health import summary as health_summary
from stellar_ops.health.results import CheckResult as HealthResult
from stellar_ops.maintenance import summary as maintenance_summary
from stellar_ops.perf import report as perf_report
from stellar_ops.perf.checks import CheckResult as PerfResult
from stellar_ops.registry import procedure_for
from stellar_ops.rotation import flow as rotation_flow
from stellar_ops.rotation import ledger

WEB = AlertsConfig(runbook_base_url="https://ops.example.org/runbooks")
NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def _alert(**changes: Any) -> FailureAlert:
    values: dict[str, Any] = {
        "dag_id": "db_backup",
        "task_id": "take_backup",
        "run_id": "scheduled__2026-12-01T02:00:00+00:00",
        "try_number": 3,
        "max_tries": 3,
        "severity": "P2",
        "alert_name": "BackupFailed",
        "runbook_url": "https://af.example.org/dags/db_backup",
        "error": "StellarOpsError: pg_dump exited 1 <stderr: no space left> & gave up",
        "log_url": "https://af.example.org/log",
        "runbook": "RB-002",
        "runbook_link": "https://ops.example.org/runbooks#rb-002",
    }
    return FailureAlert(**{**values, **changes})


def _perf_document() -> dict[str, Any]:
    results = [
        PerfResult("slow_queries", "critical", "slowest hot path mean 60.0 ms", {}, ["hot path 1"]),
        PerfResult("index_usage", "warning", "2 unused indexes | 1 invalid", {}, ["unused t_idx"]),
        PerfResult("disk", "ok", "fullest / 40%", {}),
        PerfResult("containers", "unknown", "no Docker connection is configured", {}),
    ]
    wow = {
        "compared_to": "perf/2026-11-22.json",
        "available": True,
        "reason": None,
        "reset": None,
        "regressions": [
            {
                "queryid": "42",
                "mean_ms_before": 1.0,
                "mean_ms_now": 3.5,
                "change_share": 2.5,
                "calls_this_week": 1200,
                "query": "SELECT * FROM trades WHERE a | b = `x`",
            }
        ],
        "new_in_top": [{"queryid": "7", "mean_ms": 9.0, "query": "UPDATE escrows SET state = $1"}],
    }
    return perf_report.build(
        results,
        day=date(2026, 11, 29),
        run_id="r",
        generated_at="t",
        key="perf/2026-11-29.json",
        comparison=wow,
    )


def _overdue() -> list[ledger.Overdue]:
    return [
        ledger.Overdue(
            "API_KEYS", NOW - timedelta(days=100), NOW - timedelta(days=8), 92, "trigger api_key_rotation"
        ),
        ledger.Overdue("GRAFANA_ADMIN_PASSWORD", None, None, 92, "grafana-cli admin reset-admin-password"),
    ]


def _messages() -> dict[str, str]:
    health = [
        HealthResult("services", "critical", "1 of 4 down: s3", runbook="RB-001"),
        HealthResult("backups", "warning", "no DR report"),
    ]
    dr_document = {
        "success": True,
        "backup": {"location": "backups/x.dump.zst"},
        "rto_seconds": 259.2,
        "rpo_seconds": 7 * 86400,
        "checks": [{"check": "row counts", "passed": True}],
        "failed_steps": [],
    }
    published = Published(
        "b/x.dump.zst", "b/x.dump.zst.manifest.json", "bk", 5 << 20, "0" * 64, 259.2, "t", "s", "c"
    )
    return {
        "failure": failure_message(_alert())["text"],
        "failure without a web runbook": failure_message(
            _alert(runbook_link="docs/runbooks.md#rb-002", runbook_url="docs/x", log_url=None)
        )["text"],
        "recovery": recovery_message(
            dag_id="db_backup",
            run_id="r2",
            failed_run_id="r1",
            alert_name="BackupFailed",
            runbook_url="https://af.example.org/dags/db_backup",
            severity="P2",
            review="s3://bk/incidents/x.md",
        )["text"],
        "deadline": deadline_message(
            procedure_for("db_backup"),
            WEB,
            run_id="r",
            queued_at=None,
            minutes=90,
            dag_page="https://af/dags/x",
        )["text"],
        "unpaged": unpaged(failure_message(_alert(severity="P1")))["text"],
        "finding": finding_message(
            Finding(
                "DBQueryLatency", "P3", "slow | p95 > 2 s", "RB-006", "perf_analysis", ("# 1 of 2", "a | b")
            ),
            WEB,
        )["text"],
        "perf summary": perf_report.slack_summary(_perf_document(), where="s3://bk/perf/2026-11-29.md"),
        "health summary": str(health_summary.message(health, WEB, run="r1")["text"]),
        "dr summary": dr_report.summary_line(dr_document),
        "backup success": success_message(published)["text"],
        "maintenance summary": maintenance_summary.message(
            statements={"installed": True, "preloaded": False},
            vacuumed={"public.trades": 200.5, "public.events": 58.7},
            bloat={
                "still_bloated": ["public.trades"],
                "top": [
                    {
                        "table": "public.trades",
                        "dead_before": 20000,
                        "dead_ratio_before": 0.5,
                        "warning_before": True,
                        "dead_after": 0,
                        "dead_ratio_after": 0.0,
                    }
                ],
            },
        )["text"],
        "secrets audit digest": finding_message(rotation_flow.overdue_digest(_overdue(), NOW), WEB)["text"],
    }


MESSAGES = _messages()


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_no_markdown_reaches_slack(name: str) -> None:
    text = MESSAGES[name]
    assert markdown_leftovers(text) == [], text
    assert "](" not in text
    assert not any(line.lstrip().startswith("#") for line in text.splitlines()), text


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_no_duration_in_clock_notation_or_raw_seconds(name: str) -> None:
    text = MESSAGES[name]
    assert "0:04:19" not in text and "days, 0:00:00" not in text and ".200000" not in text
    assert "259.2s" not in text and "259.2 s" not in text


def test_the_check_itself_finds_what_slack_would_show_raw() -> None:
    markdown = perf_report.markdown(_perf_document())  # the S3 document stays Markdown
    found = markdown_leftovers(markdown)
    assert any(f.startswith("heading") for f in found)
    assert any(f.startswith("table rule") for f in found)
    assert markdown_leftovers("**bold**") and markdown_leftovers("see [the runbook](https://x.example)")
    assert markdown_leftovers("*bold* <https://x.example|text>\n`# not a heading`") == []


def test_durations_in_messages_read_in_words() -> None:
    assert (
        "restored in 4 min 19 s" in MESSAGES["dr summary"]
        and "backup age 7 days (RPO)" in MESSAGES["dr summary"]
    )
    assert "5.0 MiB, 4 min 19 s" in MESSAGES["backup success"]
    assert "is not done 1 h 30 min after it was queued" in MESSAGES["deadline"]
    assert "VACUUM ANALYZE of 2 tables in 4 min 19 s" in MESSAGES["maintenance summary"]


def test_links_are_slack_links_and_free_text_is_escaped() -> None:
    failure = MESSAGES["failure"]
    assert "<https://ops.example.org/runbooks#rb-002|RB-002 Backup failed or stale>" in failure
    assert "<https://af.example.org/log|task log>" in failure
    assert (
        "*Runbook:* RB-002 Backup failed or stale: docs/runbooks.md#rb-002"
        in MESSAGES["failure without a web runbook"]
    )
    assert "*Error:* StellarOpsError: pg_dump exited 1 &lt;stderr: no space left&gt; &amp; gave up" in failure
    assert "DBQueryLatency: slow | p95 &gt; 2 s" in MESSAGES["finding"]
