"""The report: the JSON document (the old ``--json``), its Markdown summary, the
``stellar_perf_check_status{check}`` metrics and the alerts of critical findings.

The JSON and Markdown reports are documents, stored in S3. The Slack message is not the Markdown
report (Slack would show its headings, tables and ``**`` as typed): :func:`slack_summary` is a
short mrkdwn digest of it, with the counts by state, the worst checks, the week-over-week
changes and where the full report is.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from stellar_ops.core.alerts import Finding, escape
from stellar_ops.core.metrics import Metric
from stellar_ops.perf.checks import STATUS_VALUE, CheckResult
from stellar_ops.perf.config import CHECKS

FORMAT_VERSION = 1
DAG_ID = "perf_analysis"
ICON = {"ok": "OK", "warning": "WARNING", "critical": "CRITICAL", "unknown": "UNKNOWN"}
SLACK_ICON = {
    "ok": ":white_check_mark:",
    "warning": ":warning:",
    "critical": ":red_circle:",
    "unknown": ":grey_question:",
}
# How much of the report the Slack summary shows; the rest is in the report itself.
SLACK_WORST_CHECKS = 6
SLACK_CHANGES = 3
SLACK_LINE = 200
SLACK_QUERY = 80
# A critical finding alerts the alert of its kind (P3), with its runbook.
ALERTS: dict[str, tuple[str, str]] = {"redis_hit_rate": ("RedisHitRate", "RB-005")}
DEFAULT_ALERT = ("DBQueryLatency", "RB-006")


def report_key(prefix: str, day: date, ext: str = "json") -> str:
    return f"{prefix}perf/{day:%Y-%m-%d}.{ext}"


def last_week_key(prefix: str, day: date) -> str:
    return report_key(prefix, day - timedelta(days=7))


def snapshot_of(result: CheckResult | None) -> dict[str, Any] | None:
    if result is None or result.state == "unknown" or "snapshot" not in result.values:
        return None
    return {"stats_reset": result.values.get("stats_reset"), "entries": result.values["snapshot"]}


def build(
    results: list[CheckResult],
    *,
    day: date,
    run_id: str,
    generated_at: str,
    key: str,
    comparison: dict[str, Any],
) -> dict[str, Any]:
    """The report document; the slow-query snapshot is kept apart under ``snapshot``."""
    checks = {}
    snapshot = None
    for result in results:
        document = result.as_dict()
        if "snapshot" in document["values"]:
            values = dict(document["values"])
            snapshot = {"stats_reset": values.get("stats_reset"), "entries": values.pop("snapshot")}
            document["values"] = values
        checks[result.check] = document
    counts = {state: sum(1 for r in results if r.state == state) for state in STATUS_VALUE}
    return {
        "format_version": FORMAT_VERSION,
        "report": "perf_analysis",
        "date": day.isoformat(),
        "key": key,
        "run_id": run_id,
        "generated_at": generated_at,
        "states": counts,
        "checks": checks,
        "week_over_week": comparison,
        "snapshot": snapshot,
    }


def ordered(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The report's checks in their canonical order, whatever order its JSON was stored in."""
    return sorted(
        report["checks"].items(), key=lambda item: CHECKS.index(item[0]) if item[0] in CHECKS else len(CHECKS)
    )


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def markdown(report: dict[str, Any]) -> str:
    """A table of checks with state and values, then the regressions."""
    lines = [
        f"# Performance report {report['date']}",
        "",
        "| check | state | values |",
        "|---|---|---|",
    ]
    for name, check in ordered(report):
        lines.append(f"| {name} | {ICON[check['state']]} | {_cell(check['summary'])} |")
    findings = [(name, f) for name, check in ordered(report) for f in check["findings"]]
    if findings:
        lines += ["", "## Findings", ""]
        lines += [f"- **{name}**: {_cell(f)}" for name, f in findings]
    wow = report["week_over_week"]
    lines += ["", "## Week over week", ""]
    if not wow["available"]:
        lines.append(f"Not compared: {wow['reason']}.")
    else:
        lines.append(f"Compared to `{wow['compared_to']}`.")
        if wow["reset"]:
            lines += [
                "",
                f"**Statistics reset between the reports:** {wow['reset']}. Means since the reset are "
                "compared as they stand; falls in the counters are not improvements.",
            ]
        lines.append("")
        if wow["regressions"]:
            lines += [
                "| queryid | mean before (ms) | mean now (ms) | change | calls | query |",
                "|---|---|---|---|---|---|",
            ]
            for r in wow["regressions"]:
                lines.append(
                    f"| {r['queryid']} | {r['mean_ms_before']:.2f} | {r['mean_ms_now']:.2f} | "
                    f"+{r['change_share'] * 100:.0f}% | {r['calls_this_week']:,} | `{_cell(r['query'][:100])}` |"
                )
        else:
            lines.append("No query regressed.")
        if wow["new_in_top"]:
            lines += ["", "New in the top queries by mean time:", ""]
            lines += [f"- {q['queryid']}: `{_cell(q['query'][:100])}`" for q in wow["new_in_top"]]
    return "\n".join(lines) + "\n"


def _short(text: str, limit: int = SLACK_LINE) -> str:
    text = " ".join(str(text).split())
    return escape(text if len(text) <= limit else text[: limit - 1] + "…")


def _query(text: str) -> str:
    """A query as inline code: one line, shortened, with no backtick to end the code early."""
    return f"`{_short(str(text).replace('`', chr(39)), SLACK_QUERY)}`"


def _more(shown: int, total: int) -> list[str]:
    return [f"• … and {total - shown} more in the report"] if total > shown else []


def slack_summary(report: dict[str, Any], *, where: str | None = None) -> str:
    """The Slack message of a report, in mrkdwn: the counts by state, the worst checks (critical,
    then warning), the checks that could not look, the week-over-week changes, where the report is."""
    checks = ordered(report)
    counts = {state: sum(1 for _, c in checks if c["state"] == state) for state in ICON}
    worst_state = next((s for s in ("critical", "warning", "unknown") if counts[s]), "ok")
    tally = ", ".join(f"{counts[s]} {s}" for s in ("critical", "warning", "ok", "unknown") if counts[s])
    lines = [f"{SLACK_ICON[worst_state]} *Performance review {report['date']}*: {tally or 'no checks'}"]
    worst = [(n, c) for state in ("critical", "warning") for n, c in checks if c["state"] == state]
    if worst:
        lines.append("*Worst checks:*")
        lines += [
            f"• {SLACK_ICON[c['state']]} *{n}* {c['state']}: {_short(c['summary'])}"
            for n, c in worst[:SLACK_WORST_CHECKS]
        ]
        lines += _more(min(len(worst), SLACK_WORST_CHECKS), len(worst))
    blind = [n for n, c in checks if c["state"] == "unknown"]
    if blind:
        lines.append(f"*Could not check:* {', '.join(blind)}")
    lines += _week_over_week(report["week_over_week"])
    if where:
        lines.append(f"*Full report:* {escape(where)}")
    return "\n".join(lines)


def _week_over_week(wow: dict[str, Any]) -> list[str]:
    if not wow["available"]:
        return [f"*Week over week:* not compared ({_short(wow['reason'] or 'no earlier report')})"]
    regressions, new = wow["regressions"], wow["new_in_top"]
    said = f"{len(regressions)} quer{'y' if len(regressions) == 1 else 'ies'} slower" if regressions else ""
    said = ", ".join(x for x in (said, f"{len(new)} new in the top queries" if new else "") if x)
    lines = [f"*Week over week* (against {escape(str(wow['compared_to']))}): {said or 'no query regressed'}"]
    if wow["reset"]:
        lines.append(f":warning: statistics reset between the reports: {_short(wow['reset'])}")
    for r in regressions[:SLACK_CHANGES]:
        lines.append(
            f"• {r['queryid']}: mean {r['mean_ms_before']:.2f} ms → {r['mean_ms_now']:.2f} ms "
            f"(+{r['change_share'] * 100:.0f}%, {r['calls_this_week']:,} calls) {_query(r['query'])}"
        )
    lines += _more(min(len(regressions), SLACK_CHANGES), len(regressions))
    if new:
        shown = ", ".join(f"{q['queryid']} {_query(q['query'])}" for q in new[:SLACK_CHANGES])
        rest = f" and {len(new) - SLACK_CHANGES} more" if len(new) > SLACK_CHANGES else ""
        lines.append(f"• new in the top: {shown}{rest}")
    return lines


def metrics(report: dict[str, Any]) -> list[Metric]:
    points = [
        Metric(
            "stellar_perf_check_status",
            STATUS_VALUE[check["state"]],
            "perf_analysis check state: 0 ok, 1 warning, 2 critical, 3 unknown",
            {"check": name},
        )
        for name, check in ordered(report)
    ]
    points.append(
        Metric(
            "stellar_perf_regressions",
            len(report["week_over_week"]["regressions"]),
            "Queries whose mean time rose beyond perf.regression_share week over week",
        )
    )
    return points


def findings(report: dict[str, Any]) -> list[Finding]:
    """One alert per kind for the critical checks: RedisHitRate (RB-005), else DBQueryLatency (RB-006)."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for name, check in ordered(report):
        if check["state"] == "critical":
            grouped.setdefault(ALERTS.get(name, DEFAULT_ALERT), []).append(name)
    out = []
    for (alert, book), names in grouped.items():
        details = [f"{name}: {report['checks'][name]['summary']}" for name in names]
        details += [f for name in names for f in report["checks"][name]["findings"][:5]]
        out.append(
            Finding(
                alert_name=alert,
                severity="P3",
                summary=f"perf_analysis {report['date']}: {', '.join(names)} critical",
                runbook=book,
                dag_id=DAG_ID,
                details=tuple(details),
                labels={"check": ",".join(names)},
            )
        )
    return out
