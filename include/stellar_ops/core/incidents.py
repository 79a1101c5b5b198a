"""An incident from its first failed try to its recovery, and its post-incident review draft.

Every failed try (retried or final), every alert sent and every missed deadline of a DAG is an
:class:`Event` of its open :class:`Incident`; the first run that succeeds again closes it. For a
P1 or P2 incident the review of section 6.2 of the procedures is due within 48 hours: the draft
(:func:`review_draft`) holds the timeline in UTC, the detection time (first failure to first
alert) and the duration, and the sections a person fills in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from stellar_ops.core.durations import humanize_duration
from stellar_ops.core.taxonomy import Severity, response_time

EventKind = Literal["retry", "failure", "alert", "deadline", "recovery"]
VARIABLE_PREFIX = "stellar_ops_incident__"  # the Airflow Variable of a DAG's open incident
MAX_EVENTS = 200  # a DAG failing for days keeps its first and latest events
REVIEW_DUE = timedelta(hours=48)
REVIEW_SECTIONS = (
    (
        "Root cause",
        "What made it fail, beyond the first error. Blameless: systems and decisions, not people.",
    ),
    ("Impact", "What was at risk or lost (backups missing, data, customers affected), and for how long."),
    ("Remediation", "What was done to recover, and when."),
    (
        "Corrective actions",
        "| action | owner | due date |\n|---|---|---|\n|  |  |  |",
    ),
    ("Detection gap", "Could it have been seen sooner? Which alert, check or deadline would have caught it?"),
    ("Runbook improvements", "What the runbook lacked or got wrong, and the change made to it."),
)


@dataclass(frozen=True)
class Event:
    at: str  # ISO 8601, UTC
    kind: EventKind
    run_id: str
    task_id: str | None = None
    try_number: int | None = None
    error: str | None = None
    log_url: str | None = None
    detail: str | None = None

    @property
    def moment(self) -> datetime:
        return datetime.fromisoformat(self.at)


@dataclass
class Incident:
    dag_id: str
    alert_name: str
    severity: Severity
    events: list[Event] = field(default_factory=list)

    def add(self, event: Event) -> None:
        self.events.append(event)
        if len(self.events) > MAX_EVENTS:
            del self.events[MAX_EVENTS // 2 : len(self.events) - MAX_EVENTS // 2]

    @property
    def alerted(self) -> bool:
        """Whether anyone was told: only then is there something to resolve."""
        return any(e.kind in ("failure", "alert", "deadline") for e in self.events)

    @property
    def failing_task(self) -> str | None:
        """The task of the latest final failure: a recovery must have run it."""
        finals = [e for e in self.events if e.kind == "failure"]
        return finals[-1].task_id if finals else None

    def ended_before_latest_trouble(self, run_ended_at: datetime | None) -> bool:
        """Whether a run that ended at ``run_ended_at`` ended before this incident's latest failed
        try or missed deadline: its success, reported late, is no recovery from them.

        An unknown end (``None``) is taken as after: the success is judged on its tasks alone.
        """
        troubles = [e.moment for e in self.events if e.kind in ("retry", "failure", "deadline")]
        return run_ended_at is not None and bool(troubles) and run_ended_at < max(troubles)

    @property
    def failing_since_run(self) -> str | None:
        return self.events[0].run_id if self.events else None

    def first(self, *kinds: EventKind) -> Event | None:
        return next((e for e in self.events if e.kind in kinds), None)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Incident:
        events = [Event(**event) for event in data.get("events", [])]
        return cls(data["dag_id"], data["alert_name"], data["severity"], events)


def draft_key(prefix: str, incident: Incident, resolved_at: datetime) -> str:
    """``<prefix>incidents/<date>-<dag>.md``, dated by the incident's first event."""
    started = incident.events[0].moment if incident.events else resolved_at
    return f"{prefix}incidents/{started:%Y-%m-%d}-{incident.dag_id}.md"


def _duration(delta: timedelta) -> str:
    return humanize_duration(delta)


def _describe(event: Event) -> str:
    where = f"`{event.task_id}` try {event.try_number}" if event.task_id else "the run"
    if event.kind in ("retry", "failure"):
        then = "retried" if event.kind == "retry" else "failed for good"
        text = f"{where} of run `{event.run_id}` {then}: {event.error or 'no error message'}"
    elif event.kind == "alert":
        text = f"alert sent: {event.detail}"
    elif event.kind == "deadline":
        text = f"deadline missed by run `{event.run_id}`: {event.detail}"
    else:
        text = f"run `{event.run_id}` succeeded again: resolved"
    if event.log_url:
        text += f" ([log]({event.log_url}))"
    return text


def review_draft(
    incident: Incident,
    *,
    resolved_at: datetime | None,
    recovery_run: str | None,
    runbook: str,
    now: datetime | None = None,
) -> str:
    """The post-incident review draft: timeline, detection time, duration, sections to fill.

    An incident still open (no ``resolved_at``) gets a draft up to ``now``.
    """
    until = resolved_at or now or datetime.now(UTC)
    first_failure = incident.first("retry", "failure", "deadline")
    first_alert = incident.first("alert", "deadline")
    started = first_failure.moment if first_failure else until
    detection = (
        _duration(first_alert.moment - first_failure.moment)
        if first_alert and first_failure
        else "no alert was sent"
    )
    lines = [
        f"# Post-incident review: {incident.alert_name} in {incident.dag_id}",
        "",
        f"- **Severity:** {incident.severity} (respond within {response_time(incident.severity)})",
        f"- **Runbook:** {runbook}",
        f"- **Started:** {started:%Y-%m-%d %H:%M:%S} UTC (first failure)",
        f"- **Resolved:** {resolved_at:%Y-%m-%d %H:%M:%S} UTC (run `{recovery_run}`)"
        if resolved_at
        else f"- **Resolved:** not yet (this draft is as of {until:%Y-%m-%d %H:%M:%S} UTC)",
        f"- **Detection time:** {detection} (first failure to first alert)",
        f"- **Duration:** {_duration(until - started)}{'' if resolved_at else ' so far'}",
        f"- **Review due:** {until + REVIEW_DUE:%Y-%m-%d %H:%M} UTC (48 hours after the incident)",
        "",
        "## Timeline (UTC)",
        "",
    ]
    closing = [Event(resolved_at.isoformat(), "recovery", recovery_run or "")] if resolved_at else []
    for event in [*incident.events, *closing]:
        lines.append(f"- {event.moment:%Y-%m-%d %H:%M:%S} {_describe(event)}")
    for title, hint in REVIEW_SECTIONS:
        lines += ["", f"## {title}", "", f"_{hint}_" if not hint.startswith("|") else hint]
    return "\n".join(lines) + "\n"
