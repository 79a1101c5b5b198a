"""The report: the JSON document (the old ``--json``), its Markdown summary, the
``stellar_perf_check_status{check}`` metrics and the alerts of critical findings."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from stellar_ops.core.alerts import Finding
from stellar_ops.core.metrics import Metric
from stellar_ops.perf.checks import STATUS_VALUE, CheckResult
from stellar_ops.perf.config import CHECKS

FORMAT_VERSION = 1
DAG_ID = "perf_analysis"
ICON = {"ok": "OK", "warning": "WARNING", "critical": "CRITICAL", "unknown": "UNKNOWN"}
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
