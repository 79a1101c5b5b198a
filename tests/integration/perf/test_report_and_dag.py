"""Week over week through S3, the perf_analysis DAG through ``dag.test()``, and ``stellar-ops perf``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from stellar_ops.core.alerts import markdown_leftovers
from stellar_ops.core.errors import ConfigError
from stellar_ops.perf import flow
from tests.integration.perf.conftest import repeat, reset_statements
from tests.support.dagrun import run_dag
from tests.support.faults import gauge

pytestmark = pytest.mark.integration

WEEK1, WEEK2 = date(2026, 11, 22), date(2026, 11, 29)


def week(rt, day: date, *, compare_to: str | None = None) -> dict:
    results = [flow.run_check(rt, "slow_queries").as_dict()]
    return flow.assemble_report(rt, results, day=day, run_id=f"test-{day}", compare_to=compare_to)


def gist(text: str) -> tuple[str, list[tuple[str, str]]]:
    """A Slack summary's counts by state and its worst checks with their states (their values vary)."""
    return text.splitlines()[0].split("*: ", 1)[-1], re.findall(
        r"^• :\w+: \*(\w+)\* (\w+):", text, flags=re.MULTILINE
    )


def probe(document: dict) -> str:
    (entry,) = [q for q in document["snapshot"]["entries"] if "pg_sleep" in q["query"]]
    return entry["queryid"]


def test_a_query_made_slower_on_purpose_is_a_regression_week_over_week(stack, ops, runtime):
    rt = runtime(report_prefix=ops.prefix)
    reset_statements(stack)
    repeat(stack, "SELECT pg_sleep(0.002)", 10)
    first = week(rt, WEEK1)
    assert first["key"] == f"{ops.prefix}perf/2026-11-22.json"
    assert not first["document"]["week_over_week"]["available"]
    queryid = probe(first["document"])

    repeat(stack, "SELECT pg_sleep(0.03)", 10)  # the same query (constants are normalised), slower
    repeat(stack, "SELECT 1 FROM pg_sleep(0.025)", 3)  # a query not seen last week
    second = week(rt, WEEK2)
    wow = second["document"]["week_over_week"]
    (newcomer,) = [q for q in wow["new_in_top"] if "FROM pg_sleep" in q["query"]]
    assert newcomer["queryid"] not in [
        q["queryid"] for q in first["document"]["checks"]["slow_queries"]["values"]["top"]
    ]
    assert queryid not in [q["queryid"] for q in wow["new_in_top"]]
    assert wow["compared_to"] == first["key"] and wow["reset"] is None
    (regression,) = [r for r in wow["regressions"] if r["queryid"] == queryid]
    # no upper bound on a sleep's time: a loaded machine stretches it; the regression is relative
    assert regression["mean_ms_now"] >= 30
    assert regression["mean_ms_now"] > 1.5 * regression["mean_ms_before"]
    assert regression["calls_this_week"] == 10
    assert second["regressions"] == [r["queryid"] for r in wow["regressions"]]

    stored = ops.store().get_json(second["key"])
    assert stored["week_over_week"]["regressions"][0]["queryid"] == wow["regressions"][0]["queryid"]
    assert stored["snapshot"]["entries"]
    markdown = ops.store().get_bytes(second["markdown_key"]).decode()
    assert markdown == second["markdown"]
    assert "## Week over week" in markdown and queryid in markdown


def test_a_reset_between_weeks_is_reported_as_a_reset(stack, ops, runtime):
    # a wide regression share: the same sleep both weeks, however loaded the machine is
    rt = runtime(report_prefix=ops.prefix, regression_share=10)
    reset_statements(stack)
    repeat(stack, "SELECT pg_sleep(0.004)", 20)
    week(rt, WEEK1)
    reset_statements(stack)
    repeat(stack, "SELECT pg_sleep(0.004)", 3)
    second = week(rt, WEEK2)
    wow = second["document"]["week_over_week"]
    assert wow["reset"] and "reset" in wow["reset"]
    assert wow["regressions"] == []
    assert "Statistics reset between the reports" in second["markdown"]


def test_compare_to_names_the_report_or_fails_clearly(stack, ops, runtime):
    rt = runtime(report_prefix=ops.prefix)
    first = week(rt, date(2026, 11, 1))  # not last week's: the newest earlier one is used
    second = week(rt, WEEK2)
    assert second["document"]["week_over_week"]["compared_to"] == first["key"]
    again = week(rt, WEEK2, compare_to=first["key"])
    assert again["document"]["week_over_week"]["compared_to"] == first["key"]
    with pytest.raises(ConfigError, match=r"compare_to: no report at s3://stellar-backups/.*nope\.json"):
        week(rt, WEEK2, compare_to=f"{ops.prefix}perf/nope.json")


def mapped_states(outcome) -> dict[str, str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(
            dag_id="perf_analysis", run_id=outcome.run_id, task_id="check_performance"
        )
        return {ti.rendered_map_index: str(getattr(ti.state, "value", ti.state)) for ti in tis}


def test_perf_analysis_dag_reports_what_the_workload_did(airflow_db, stack, ops, receiver, workload):
    ops.update(perf={"report_prefix": ops.prefix, "disk_paths": ["/", "/tmp"]})
    reset_statements(stack)
    repeat(stack, "SELECT pg_sleep(0.07)", 6)  # a hot path over 50 ms: critical
    outcome = run_dag("perf_analysis", logical_date=datetime(2026, 11, 29, 3, 0, tzinfo=UTC))
    assert outcome.state == "success", outcome.tasks
    checks = mapped_states(outcome)
    assert set(checks) == set(flow.CHECKS)  # one task per check, labelled by its name
    assert set(checks.values()) == {"success"}

    summary = outcome.xcom("assemble_report")
    assert summary["key"] == f"{ops.prefix}perf/2026-11-29.json"
    states = summary["states"]
    assert states["slow_queries"] == "critical"
    assert states["index_usage"] == "warning" and states["sequences"] == "critical"
    assert states["containers"] == "unknown"  # the stack's Docker connection has no daemon behind it
    assert "document" not in summary
    assert sorted(ops.objects()) == [f"{ops.prefix}perf/2026-11-29.json", f"{ops.prefix}perf/2026-11-29.md"]
    document = ops.store().get_json(summary["key"])
    assert document["checks"]["index_usage"]["values"]["invalid_indexes"] == [
        {"table": "public.perf_dupes", "index": "perf_dupes_v"}
    ]

    published = outcome.xcom("publish_report")
    assert published["alerts"] == ["DBQueryLatency"]
    for name, state in states.items():
        value = gauge(
            stack.url("pushgateway"), "stellar_perf_check_status", check=name, procedure="perf_analysis"
        )
        assert value == {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}[state], name
    texts = receiver.texts()
    (summary_text,) = [t for t in texts if "*Performance review 2026-11-29*" in t]
    assert "• :red_circle: *slow_queries* critical: " in summary_text
    assert markdown_leftovers(summary_text) == [], summary_text
    assert summary_text.splitlines()[-1] == (
        f"*Full report:* s3://stellar-backups/{ops.prefix}perf/2026-11-29.md "
        f"(JSON: s3://stellar-backups/{ops.prefix}perf/2026-11-29.json)"
    )
    (alert,) = [t for t in texts if "DBQueryLatency" in t]
    assert (
        "[P3]" in alert
        and "RB-006" in alert
        and "slow_queries" in alert
        and "respond within 4 hours" in alert
    )


def test_the_trigger_form_picks_checks_and_a_problem_found_is_not_a_failure(airflow_db, stack, ops, receiver):
    import redis

    client = redis.Redis(host="127.0.0.1", port=stack.ports["redis"])
    client.config_resetstat()
    for i in range(10):
        client.get(f"perf:absent:{i}")  # every lookup a miss: 0%
    ops.update(perf={"report_prefix": ops.prefix})
    outcome = run_dag("perf_analysis", conf={"checks": ["redis_hit_rate", "disk"]})
    client.config_resetstat()
    assert outcome.state == "success", outcome.tasks
    assert set(mapped_states(outcome)) == {"redis_hit_rate", "disk"}
    assert outcome.xcom("assemble_report")["states"]["redis_hit_rate"] == "critical"
    assert outcome.xcom("publish_report")["alerts"] == ["RedisHitRate"]
    (alert,) = [t for t in receiver.texts() if "RedisHitRate" in t]
    assert "RB-005" in alert


def test_an_analysis_that_cannot_store_its_report_fails_and_says_so(
    airflow_db, stack, ops, receiver, monkeypatch
):
    # Each check's result waits in the bucket for the report (XCom carries its key): a bucket that
    # refuses fails the checks. (The stack's S3 server creates a missing bucket on its first PUT,
    # so the bucket refuses by the credentials.)
    s3 = dict(stack.airflow_connections()["stellar_s3"], password="not-the-secret")
    monkeypatch.setenv("AIRFLOW_CONN_STELLAR_S3", json.dumps(s3))
    ops.update(perf={"report_prefix": ops.prefix})
    outcome = run_dag("perf_analysis", conf={"checks": ["disk"]})
    assert outcome.state == "failed"
    assert set(mapped_states(outcome).values()) == {"failed"}
    assert outcome.tries["check_performance"] >= 2  # retried: the bucket may come back
    assert outcome.tasks["assemble_report"] == "upstream_failed"
    assert any("PerfAnalysisFailed" in t and "check_performance" in t for t in receiver.texts())


CLI = str(Path(sys.executable).parent / "stellar-ops")


def test_stellar_ops_perf_prints_json_and_markdown(stack, ops, receiver):
    ops.update(perf={"report_prefix": ops.prefix})
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_")}
    result = subprocess.run(
        [CLI, "perf", "--check", "disk", "--check", "connections", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads(result.stdout)
    assert list(document["checks"]) == ["connections", "disk"]
    assert document["key"] == f"{ops.prefix}perf/{flow.today():%Y-%m-%d}.json"
    assert ops.store().exists(document["key"])
    (summary_text,) = [t for t in receiver.texts() if "*Performance review " in t]
    assert markdown_leftovers(summary_text) == [], summary_text
    markdown = subprocess.run(
        [CLI, "perf", "--check", "disk", "--markdown", "--no-store"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert markdown.returncode == 0, markdown.stderr[-2000:]
    assert markdown.stdout.startswith("# Performance report") and "| disk |" in markdown.stdout
    bad = subprocess.run(
        [CLI, "perf", "--check", "nope"], capture_output=True, text=True, env=env, timeout=60
    )
    assert bad.returncode == 2 and "invalid choice: 'nope'" in bad.stderr


def test_the_dag_and_the_cli_run_the_same_steps_to_the_same_report(
    airflow_db, stack, ops, receiver, workload
):
    ops.update(perf={"report_prefix": ops.prefix})
    checks = ["index_usage", "sequences", "wraparound", "disk"]
    outcome = run_dag(
        "perf_analysis", conf={"checks": checks}, logical_date=datetime(2026, 11, 8, 3, 0, tzinfo=UTC)
    )
    assert outcome.state == "success", outcome.tasks
    from_dag = ops.store().get_json(outcome.xcom("assemble_report")["key"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_")}
    args = [CLI, "perf", "--json"] + [a for name in checks for a in ("--check", name)]
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    from_cli = json.loads(result.stdout)
    assert list(from_cli["checks"]) == checks  # in their order
    assert set(from_dag["checks"]) == set(checks)
    for name in checks:
        assert from_cli["checks"][name]["state"] == from_dag["checks"][name]["state"], name
    assert from_cli["checks"]["index_usage"]["findings"] == from_dag["checks"]["index_usage"]["findings"]
    assert from_cli["checks"]["sequences"]["values"] == from_dag["checks"]["sequences"]["values"]
    reports = [t for t in receiver.texts() if "*Performance review " in t]
    assert len(reports) == 2
    assert all(markdown_leftovers(text) == [] for text in reports), reports
    # the same counts and the same worst checks, from the DAG and from the CLI
    assert gist(reports[0]) == gist(reports[1])


def test_a_long_report_gives_a_short_message_that_points_to_the_full_report(stack, ops, receiver, runtime):
    from stellar_ops.perf import report
    from stellar_ops.perf.checks import CheckResult

    many = CheckResult(
        "index_usage",
        "warning",
        "many findings",
        {},
        [f"unused index public.t{i} t{i}_idx" for i in range(300)],
    )
    wow = {
        "compared_to": None,
        "available": False,
        "reason": "none",
        "reset": None,
        "regressions": [],
        "new_in_top": [],
    }
    document = report.build([many], day=WEEK2, run_id="r", generated_at="t", key="k", comparison=wow)
    flow.publish_report(runtime(), document, where="s3://stellar-backups/perf/2026-11-29.md")
    (text,) = [t for t in receiver.texts() if "*Performance review 2026-11-29*" in t]
    assert len(text) <= 3000
    assert markdown_leftovers(text) == [], text
    assert text.splitlines() == [
        ":warning: *Performance review 2026-11-29*: 1 warning",
        "*Worst checks:*",
        "• :warning: *index_usage* warning: many findings",
        "*Week over week:* not compared (none)",
        "*Full report:* s3://stellar-backups/perf/2026-11-29.md",
    ]
    assert "t299_idx" not in text  # the findings are in the report, not in the message
