"""What a health check run tells: one message with a table of the checks, and the status metrics."""

from __future__ import annotations

from stellar_ops.core.alerts import link
from stellar_ops.core.config import AlertsConfig
from stellar_ops.core.metrics import Metric
from stellar_ops.core.runbooks import runbook, runbook_link
from stellar_ops.core.taxonomy import SEVERITIES, Severity
from stellar_ops.health import wal_archive
from stellar_ops.health.results import STATUS_VALUE, CheckResult, worst

ICON = {
    "ok": ":white_check_mark:",
    "warning": ":warning:",
    "critical": ":red_circle:",
    "unknown": ":grey_question:",
}
MAX_LINE = 220


def verdict(results: list[CheckResult]) -> str:
    return worst([r.status for r in results])


def critical(results: list[CheckResult]) -> list[CheckResult]:
    return [r for r in results if r.status == "critical"]


def severity(results: list[CheckResult]) -> Severity | None:
    """The route of the message: the most severe alert among the critical checks (None: ops)."""
    found = [r.alert.severity for r in critical(results) if r.alert is not None]
    return min(found, key=SEVERITIES.index) if found else None


def _line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 1] + "…"


def message(results: list[CheckResult], settings: AlertsConfig, *, run: str) -> dict[str, object]:
    overall = verdict(results)
    bad = critical(results)
    if bad:
        headline = (
            f"{ICON['critical']} Morning health check: {len(bad)} critical ({', '.join(r.name for r in bad)})"
        )
    elif overall == "warning":
        headline = f"{ICON['warning']} Morning health check: healthy, with warnings"
    else:
        headline = f"{ICON['ok']} Morning health check: healthy"
    width = max(len(r.name) for r in results) if results else 5
    table = ["```", f"{'check'.ljust(width)}  {'state'.ljust(8)}  detail"]
    table += [f"{r.name.ljust(width)}  {r.status.ljust(8)}  {_line(r.detail)}" for r in results]
    table.append("```")
    books: list[str] = []
    for result in results:
        if result.status == "ok":
            continue
        book = runbook(result.runbook)
        what = f"{result.alert.severity} {result.alert.name}, " if result.alert else ""
        books.append(
            f"• {result.name}: {what}{link(runbook_link(book.id, settings.runbook_base_url), f'{book.id} {book.title}')}"
        )
    lines = [headline, *table]
    if books:
        lines += ["*Runbooks:*", *books]
    lines.append(f"*Run:* {run}")
    text = "\n".join(lines)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def metrics(results: list[CheckResult]) -> list[Metric]:
    """The state of each check, and what WAL archiving measured (when archive_mode is on)."""
    states = [
        Metric(
            "stellar_health_check_status",
            float(STATUS_VALUE[r.status]),
            "State of each morning health check (0 ok, 1 warning, 2 critical, 3 unknown)",
            {"check": r.name},
        )
        for r in results
    ]
    return states + wal_archive.metrics(results)
