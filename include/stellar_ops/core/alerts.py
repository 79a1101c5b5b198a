"""Alert and notification messages (Slack incoming-webhook payloads), and a plain webhook sender.

Every failure alert names the DAG, task, run, try number, severity and runbook, so whoever reads
it on a phone knows what broke and where to start.

Every message is Slack mrkdwn, not Markdown: ``*bold*`` with single asterisks, a bold line where
a document would have a heading, aligned lines in a code block or a short list where it would
have a table, and links as ``<url|text>``. Slack shows Markdown's ``**``, ``#`` and ``|---|``
as they are typed. Free text (an error, a query) has ``&``, ``<`` and ``>`` escaped, so that
Slack never reads it as a link or a mention.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from stellar_ops.core.config import AlertsConfig
from stellar_ops.core.delivery import Delivered, DeliveryPolicy, Refused, deliver
from stellar_ops.core.durations import humanize_duration
from stellar_ops.core.runbooks import runbook, runbook_link
from stellar_ops.core.taxonomy import SEVERITY_MEANING, DagEntry, Severity, response_time

SEVERITY_ICON: dict[str, str] = {
    "P1": ":rotating_light:",
    "P2": ":red_circle:",
    "P3": ":large_orange_circle:",
}
MAX_ERROR_CHARS = 600


@dataclass(frozen=True)
class FailureAlert:
    dag_id: str
    task_id: str
    run_id: str
    try_number: int
    max_tries: int
    severity: Severity
    alert_name: str
    runbook_url: str  # the DAG's own runbook (its page in the UI)
    error: str
    log_url: str | None = None
    mention: str | None = None
    runbook: str = ""  # the RB id of the incident: what the on-call engineer reads
    runbook_link: str = ""


DEFAULT_AIRFLOW_URL = "http://localhost:8080/"


def runbook_url(settings: AlertsConfig, dag_id: str, airflow_url: str | None) -> str:
    """The runbook link of ``dag_id``'s alerts: the configured template, else its page in the UI."""
    if settings.runbook_url_template:
        return settings.runbook_url_template.format(dag_id=dag_id)
    return f"{(airflow_url or DEFAULT_AIRFLOW_URL).rstrip('/')}/dags/{dag_id}"


def failure_alert(
    entry: DagEntry,
    settings: AlertsConfig,
    *,
    task_id: str,
    run_id: str,
    error: BaseException | None,
    try_number: int = 1,
    max_tries: int = 1,
    airflow_url: str | None = None,
    log_url: str | None = None,
) -> FailureAlert:
    """The alert for a failed step of ``entry``'s DAG, whether a task or the CLI ran it."""
    return FailureAlert(
        dag_id=entry.dag_id,
        task_id=task_id,
        run_id=run_id,
        try_number=try_number,
        max_tries=max(try_number, max_tries),
        severity=entry.severity,
        alert_name=entry.alert_name,
        runbook_url=runbook_url(settings, entry.dag_id, airflow_url),
        error=f"{type(error).__name__}: {error}" if error is not None else "task failed",
        log_url=log_url,
        mention=settings.mention,
        runbook=entry.runbook,
        runbook_link=runbook_link(entry.runbook, settings.runbook_base_url),
    )


def escape(text: str) -> str:
    """Free text made safe for mrkdwn: Slack reads ``<...>`` as a link or mention and ``&`` as an entity."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, text: str) -> str:
    """``<url|text>`` for a web address; anything else (a path in the project) as ``text: url``."""
    if url.startswith(("http://", "https://")):
        return f"<{url}|{escape(text).replace('|', '/')}>"
    return f"{escape(text)}: {escape(url)}"


_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)+\|?\s*$")
_MARKDOWN_LINK = re.compile(r"\[[^\]\n]+\]\((https?://|s3://)[^)\s]+\)")


def markdown_leftovers(text: str) -> list[str]:
    """The Markdown constructs in ``text`` that Slack would show raw: ``**bold**``, ``# headings``,
    table rules (``|---|---|``), ``[text](url)`` links; empty for clean mrkdwn."""
    found = []
    if "**" in text:
        found.append("** (Markdown bold; mrkdwn is *bold*)")
    for line in text.splitlines():
        if _HEADING.match(line):
            found.append(f"heading {line.strip()[:40]!r}")
        if _TABLE_RULE.match(line):
            found.append(f"table rule {line.strip()[:40]!r}")
    if _MARKDOWN_LINK.search(text):
        found.append("[text](url) link (mrkdwn is <url|text>)")
    return found


def severity_line(severity: Severity) -> str:
    """The severity, what it means, and how soon someone must respond."""
    return f"*Severity:* {severity} ({SEVERITY_MEANING[severity]}); respond within {response_time(severity)}"


def runbook_line(book_id: str, url: str, dag_page: str | None = None) -> str:
    book = runbook(book_id)
    page = f" · {link(dag_page, 'DAG runbook')}" if dag_page else ""
    return f"*Runbook:* {link(url, f'{book.id} {book.title}')}{page}"


def _shorten(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _url(url: str, text: str) -> str:
    """A web address as ``<url|text>``; anything else as it is."""
    return link(url, text) if url.startswith(("http://", "https://")) else escape(url)


def _early(alert: FailureAlert) -> str:
    """A final failure before the last try: the retry policy judged a retry useless."""
    return " (not retried: a retry cannot fix this error)" if alert.try_number < alert.max_tries else ""


def failure_message(alert: FailureAlert) -> dict[str, Any]:
    headline = (
        f"{SEVERITY_ICON.get(alert.severity, '')} [{alert.severity}] {alert.alert_name}: "
        f"{alert.dag_id}.{alert.task_id} failed"
    ).strip()
    if alert.mention and alert.severity == "P1":
        headline = f"{alert.mention} {headline}"
    lines = [
        headline,
        f"*DAG:* {alert.dag_id}   *Task:* {alert.task_id}",
        f"*Run:* {alert.run_id}   *Try:* {alert.try_number} of {alert.max_tries}{_early(alert)}",
        severity_line(alert.severity),
        f"*Error:* {escape(_shorten(alert.error)) or 'no error message'}",
        runbook_line(alert.runbook, alert.runbook_link, alert.runbook_url)
        if alert.runbook
        else f"*Runbook:* {_url(alert.runbook_url, 'DAG runbook')}",
    ]
    if alert.log_url:
        lines.append(f"*Log:* {_url(alert.log_url, 'task log')}")
    text = "\n".join(lines)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def recovery_message(
    *,
    dag_id: str,
    run_id: str,
    failed_run_id: str | None,
    alert_name: str,
    runbook_url: str,
    severity: Severity | None = None,
    review: str | None = None,
) -> dict[str, Any]:
    since = f" (failing since run {failed_run_id})" if failed_run_id else ""
    lines = [f":large_green_circle: RESOLVED {alert_name}: {dag_id} succeeded again in run {run_id}{since}"]
    if severity is not None:
        lines.append(f"*Severity:* {severity}")
    lines.append(f"*Runbook:* {_url(runbook_url, 'DAG runbook')}")
    if review:
        lines.append(f"*Post-incident review (within 48 hours):* {_url(review, 'review draft')}")
    text = "\n".join(lines)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def deadline_message(
    entry: DagEntry,
    settings: AlertsConfig,
    *,
    run_id: str,
    queued_at: str | None,
    minutes: float,
    dag_page: str,
) -> dict[str, Any]:
    """A run not done by its deadline, sent while it may still be running."""
    deadline = humanize_duration(minutes * 60)
    headline = (
        f"{SEVERITY_ICON.get(entry.severity, '')} [{entry.severity}] DeadlineMissed: {entry.dag_id} run "
        f"{run_id} is not done {deadline} after it was queued"
    )
    if settings.mention and entry.severity == "P1":
        headline = f"{settings.mention} {headline}"
    lines = [
        headline,
        f"*DAG:* {entry.dag_id}   *Run:* {run_id}   *Queued at:* {queued_at or 'unknown'}",
        severity_line(entry.severity),
        f"*Expected:* done within {deadline} of being queued; it may still be running or stuck",
        runbook_line(entry.runbook, runbook_link(entry.runbook, settings.runbook_base_url), dag_page),
    ]
    text = "\n".join(lines)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def unpaged(payload: dict[str, Any]) -> dict[str, Any]:
    """A message meant for the paging channel, sent to the ops channel because there is none."""
    text = ":warning: (no paging channel is configured: this should have paged) " + payload["text"]
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def rerouted(payload: dict[str, Any], note: str) -> dict[str, Any]:
    """A message sent on another route than its own, marked so as :func:`unpaged` does; ``note``
    says why (e.g. "the paging channel could not be reached")."""
    text = f":warning: ({note}) " + payload["text"]
    return {
        **payload,
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    }


def with_alert_id(payload: dict[str, Any], alert_id: str) -> dict[str, Any]:
    """The message with its id as a small context line under it (a message without blocks: as the
    last line of its text), so whoever reads it can find it in the outbox, in Alertmanager (label
    ``alert_id``) and in logs. ``text``, Slack's notification line, stays what the message says."""
    line = f"alert id: {alert_id}"
    blocks = payload.get("blocks")
    if not blocks:
        text = payload.get("text", "")
        return payload if text.endswith(line) else {**payload, "text": f"{text}\n{line}"}
    context = {"type": "context", "block_id": "alert_id", "elements": [{"type": "mrkdwn", "text": line}]}
    return {**payload, "blocks": [*(b for b in blocks if b.get("block_id") != "alert_id"), context]}


def info_message(text: str) -> dict[str, Any]:
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


@dataclass(frozen=True)
class Finding:
    """Something a procedure found that someone must act on (a certificate near expiry, a slow
    query), as opposed to the procedure itself failing: the run goes on and reports it."""

    alert_name: str  # e.g. TLSCertExpiringSoon
    severity: Severity
    summary: str  # one line: what, where, how bad
    runbook: str  # an id of stellar_ops.core.runbooks, e.g. RB-004
    dag_id: str
    details: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)  # what tells it apart: domain, check...


def finding_message(finding: Finding, settings: AlertsConfig) -> dict[str, Any]:
    """The message of a finding: severity and its meaning, the summary, details, the runbook."""
    book = runbook(finding.runbook)
    headline = (
        f"{SEVERITY_ICON.get(finding.severity, '')} [{finding.severity}] {finding.alert_name}: "
        f"{escape(finding.summary)}"
    )
    if settings.mention and finding.severity == "P1":
        headline = f"{settings.mention} {headline}"
    lines = [headline.strip(), severity_line(finding.severity)]
    lines += [f"• {escape(_shorten(detail))}" for detail in finding.details]
    lines.append(f"*Found by:* {finding.dag_id}")
    lines.append(runbook_line(book.id, runbook_link(book.id, settings.runbook_base_url)))
    text = "\n".join(lines)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:,.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:,.1f} TiB"


def post_webhook(url: str, payload: dict[str, Any], *, policy: DeliveryPolicy | None = None) -> Delivered:
    """POST a JSON payload (the old scripts' ``BACKUP_ALERT_WEBHOOK``) with the retries of
    :func:`stellar_ops.core.delivery.deliver`; the URL is never echoed. Raises
    :class:`~stellar_ops.core.delivery.DeliveryError` (a StellarOpsError) when it was not delivered."""
    import requests

    # only what Slack reads: an outbox copy carries bookkeeping keys (alert_id) beside them
    body = {key: value for key, value in payload.items() if key != "alert_id"}

    def post_once(timeout: float) -> tuple[int, dict[str, str]]:
        try:
            response = requests.post(url, json=body, timeout=timeout)
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.InvalidSchema,
            requests.exceptions.MissingSchema,
        ) as exc:
            raise Refused(
                f"the alert webhook URL is not valid ({type(exc).__name__})", attempts=1, status=None
            ) from None
        return response.status_code, dict(response.headers)

    return deliver(post_once, policy or DeliveryPolicy(), what="the alert webhook")
