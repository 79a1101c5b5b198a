"""The report document, its Markdown, its metrics and its alerts."""

from __future__ import annotations

from datetime import date

from stellar_ops.perf import report
from stellar_ops.perf.checks import CheckResult
from stellar_ops.perf.compare import compare
from stellar_ops.perf.database import IndexInfo, duplicate_indexes
from stellar_ops.perf.sources import _cpu_percent, _memory_bytes

RESULTS = [
    CheckResult(
        "slow_queries",
        "critical",
        "slowest hot path mean 60.0 ms",
        {
            "top": [{"queryid": "1", "query": "SELECT | x"}],
            "stats_reset": None,
            "snapshot": [{"queryid": "1", "calls": 1, "total_ms": 60, "mean_ms": 60, "query": "q"}],
        },
        ["hot path 1: mean 60 ms"],
    ),
    CheckResult(
        "redis_hit_rate", "critical", "hit rate 50.0%", {"hit_rate_percent": 50}, ["Redis hit rate 50%"]
    ),
    CheckResult("disk", "ok", "fullest / 40%", {}),
    CheckResult("containers", "unknown", "no Docker connection is configured", {}),
]


def document() -> dict:
    current = {"stats_reset": None, "entries": RESULTS[0].values["snapshot"]}
    previous = {"stats_reset": None, "entries": [{"queryid": "1", "calls": 0, "total_ms": 0, "mean_ms": 0}]}
    wow = compare(
        previous,
        current,
        regression_share=0.5,
        min_mean_ms=1,
        top=[],
        previous_top=[],
        compared_key="perf/2026-11-22.json",
    )
    return report.build(
        RESULTS,
        day=date(2026, 11, 29),
        run_id="r1",
        generated_at="t",
        key="perf/2026-11-29.json",
        comparison=wow,
    )


def test_the_document_keeps_the_snapshot_apart_from_the_checks() -> None:
    doc = document()
    assert doc["snapshot"]["entries"][0]["queryid"] == "1"
    assert "snapshot" not in doc["checks"]["slow_queries"]["values"]
    assert doc["states"] == {"ok": 1, "warning": 0, "critical": 2, "unknown": 1}
    assert report.report_key("t/x/", date(2026, 11, 29)) == "t/x/perf/2026-11-29.json"
    assert report.last_week_key("", date(2026, 11, 29)) == "perf/2026-11-22.json"


def test_markdown_has_a_table_of_checks_then_the_week_over_week() -> None:
    text = report.markdown(document())
    lines = text.splitlines()
    assert "| check | state | values |" in lines
    assert "| containers | UNKNOWN | no Docker connection is configured |" in lines
    assert "| disk | OK | fullest / 40% |" in lines
    assert text.index("## Week over week") > text.index("| disk |")
    assert "Compared to `perf/2026-11-22.json`." in text


def test_metrics_give_each_check_its_status_value() -> None:
    points = {
        p.labels.get("check"): p.value
        for p in report.metrics(document())
        if p.name == "stellar_perf_check_status"
    }
    assert points == {"slow_queries": 2, "redis_hit_rate": 2, "disk": 0, "containers": 3}


def test_critical_checks_alert_their_kind_with_its_runbook() -> None:
    alerts = {f.alert_name: f for f in report.findings(document())}
    assert set(alerts) == {"DBQueryLatency", "RedisHitRate"}
    assert alerts["RedisHitRate"].runbook == "RB-005" and alerts["RedisHitRate"].severity == "P3"
    assert alerts["DBQueryLatency"].runbook == "RB-006" and "slow_queries" in alerts["DBQueryLatency"].summary


def index(
    name: str, cols: tuple[int, ...], *, unique: bool = False, primary: bool = False, pred: str = ""
) -> IndexInfo:
    return IndexInfo(
        "public.t",
        name,
        "btree",
        tuple((c, 1978) for c in cols),
        "",
        pred,
        unique or primary,
        primary,
        True,
        0,
    )


def test_duplicate_indexes_follow_pghero() -> None:
    pkey = index("t_pkey", (1,), primary=True)
    on_id = index("t_id", (1,))
    ab = index("t_ab", (2, 3))
    a = index("t_a", (2,))
    a_partial = index("t_a_live", (2,), pred="(live)")
    twin = index("t_ab2", (2, 3))
    pairs = {(d.name, c.name) for d, c in duplicate_indexes([pkey, on_id, ab, a, a_partial, twin])}
    # t_id is covered by the primary key; t_a by t_ab; of the twins one is reported; the partial is not
    assert pairs == {("t_id", "t_pkey"), ("t_a", "t_ab"), ("t_ab2", "t_ab")}


def test_container_cpu_and_memory_as_docker_stats_shows_them() -> None:
    stats = {
        "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000, "online_cpus": 2},
        "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
        "memory_stats": {"usage": 300_000_000, "stats": {"inactive_file": 50_000_000}},
    }
    assert _cpu_percent(stats) == 40.0
    assert _memory_bytes(stats) == 250_000_000


def test_a_report_read_back_sorted_keeps_its_checks_in_their_order() -> None:
    import json

    stored = json.loads(json.dumps(document(), sort_keys=True))  # as S3Store.put_json writes it
    assert list(stored["checks"]) == ["containers", "disk", "redis_hit_rate", "slow_queries"]
    assert report.markdown(stored) == report.markdown(document())
    rows = [
        line.split("|")[1].strip()
        for line in report.markdown(stored).splitlines()
        if line.startswith("| ") and "---" not in line
    ]
    assert rows == ["check", "slow_queries", "containers", "redis_hit_rate", "disk"]


def test_the_slack_summary_is_short_mrkdwn_not_the_markdown_report() -> None:
    from stellar_ops.core.alerts import markdown_leftovers

    text = report.slack_summary(document(), where="s3://b/perf/2026-11-29.md")
    lines = text.splitlines()
    assert lines[0] == ":red_circle: *Performance review 2026-11-29*: 2 critical, 1 ok, 1 unknown"
    assert "• :red_circle: *slow_queries* critical: slowest hot path mean 60.0 ms" in lines
    assert "• :red_circle: *redis_hit_rate* critical: hit rate 50.0%" in lines
    assert "*Could not check:* containers" in lines
    assert "disk" not in text  # an ok check is counted, not listed
    assert lines[-1] == "*Full report:* s3://b/perf/2026-11-29.md"
    assert markdown_leftovers(text) == []
    assert markdown_leftovers(report.markdown(document()))  # the stored report stays Markdown


def test_the_slack_summary_names_the_worst_checks_and_changes_first_and_counts_the_rest() -> None:
    many = [CheckResult(f"c{i}", "warning", f"w{i}", {}) for i in range(9)]
    many.insert(5, CheckResult("bad", "critical", "very bad", {}))
    regressions = [
        {
            "queryid": str(i),
            "mean_ms_before": 1.0,
            "mean_ms_now": 2.0 + i,
            "change_share": 1.0 + i,
            "calls_this_week": 10,
            "query": "SELECT 1",
        }
        for i in range(5)
    ]
    wow = {
        "compared_to": "perf/2026-11-22.json",
        "available": True,
        "reason": None,
        "reset": "pg_stat_statements was reset at 2026-11-25",
        "regressions": regressions,
        "new_in_top": [],
    }
    doc = report.build(many, day=date(2026, 11, 29), run_id="r", generated_at="t", key="k", comparison=wow)
    lines = report.slack_summary(doc).splitlines()
    worst = [line for line in lines if line.startswith("• :")]
    assert worst[0] == "• :red_circle: *bad* critical: very bad"
    assert len(worst) == report.SLACK_WORST_CHECKS
    assert f"• … and {10 - report.SLACK_WORST_CHECKS} more in the report" in lines
    assert "*Week over week* (against perf/2026-11-22.json): 5 queries slower" in lines
    assert (
        ":warning: statistics reset between the reports: pg_stat_statements was reset at 2026-11-25" in lines
    )
    assert sum(line.startswith("• 0: mean") or line.startswith("• 1: mean") for line in lines) == 2
    assert f"• … and {5 - report.SLACK_CHANGES} more in the report" in lines


def test_the_slack_summary_says_why_nothing_was_compared() -> None:
    doc = report.build(
        [CheckResult("disk", "ok", "fullest / 40%", {})],
        day=date(2026, 11, 29),
        run_id="r",
        generated_at="t",
        key="k",
        comparison={
            "compared_to": None,
            "available": False,
            "reason": "no previous report",
            "reset": None,
            "regressions": [],
            "new_in_top": [],
        },
    )
    text = report.slack_summary(doc)
    assert text.splitlines() == [
        ":white_check_mark: *Performance review 2026-11-29*: 1 ok",
        "*Week over week:* not compared (no previous report)",
    ]
