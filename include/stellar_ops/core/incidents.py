"""An incident from its first failed try to its recovery, and its post-incident review draft.

Every failed try (retried or final), every alert sent and every missed deadline of a DAG is an
:class:`Event` of its open :class:`Incident`; the first run that succeeds again closes it. For a
P1 or P2 incident the review of section 6.2 of the procedures is due within 48 hours: the draft
(:func:`review_draft`) holds the timeline in UTC, the detection time (first failure to first
alert) and the duration, and the sections a person fills in.

Each event is stored on its own (:func:`event_key`, a key of the DAG's own
:func:`event_key_prefix`) and the incident is put together when it is read
(:meth:`Incident.from_events`): see :mod:`stellar_ops.adapters.common.incident_store` for why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from stellar_ops.core.durations import humanize_duration
from stellar_ops.core.taxonomy import DagEntry, Severity, response_time

log = logging.getLogger(__name__)

EventKind = Literal["retry", "failure", "alert", "deadline", "recovery"]
VARIABLE_PREFIX = "stellar_ops_incident__"  # the Airflow Variables of a DAG's open incident
# ``<prefix><dag_id>__<UTC time, microseconds>Z_<12 hex digits>``: the time first, so that keys sort
# as their events happened; nothing after the DAG's own prefix can contain "__"
_EVENT_KEY_SUFFIX = re.compile(r"\d{8}T\d{12}Z_[0-9a-f]{12}")
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
    map_index: int | None = None  # the mapped task's index; None for a task that is not mapped

    @property
    def moment(self) -> datetime:
        return datetime.fromisoformat(self.at)


def _utc_moment(event: Event) -> datetime:
    moment = event.moment
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def legacy_key(dag_id: str) -> str:
    """The one Variable that held a DAG's whole incident before events were stored one by one."""
    return VARIABLE_PREFIX + dag_id


def event_key_prefix(dag_id: str) -> str:
    return f"{VARIABLE_PREFIX}{dag_id}__"


def event_key(dag_id: str, event: Event, salt: str) -> str:
    """The key of ``event`` of ``dag_id``'s incident: its UTC time, then a digest of who and what
    (run, task, map index, try, kind) and of ``salt``, so that two writers never share a key."""
    at = _utc_moment(event).astimezone(UTC)
    who = "|".join(
        str(part)
        for part in (event.run_id, event.task_id, event.map_index, event.try_number, event.kind, salt)
    )
    digest = hashlib.sha256(who.encode()).hexdigest()[:12]
    return f"{event_key_prefix(dag_id)}{at:%Y%m%dT%H%M%S%f}Z_{digest}"


def is_event_key(dag_id: str, key: str) -> bool:
    """Whether ``key`` is an event of ``dag_id`` itself: ``db_backup``'s prefix is also the start of
    the keys of a DAG named ``db_backup__x``, whose suffix does not look like an event's."""
    prefix = event_key_prefix(dag_id)
    return key.startswith(prefix) and _EVENT_KEY_SUFFIX.fullmatch(key[len(prefix) :]) is not None


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
    def from_events(
        cls, dag_id: str, alert_name: str, severity: Severity, events: Iterable[Event]
    ) -> Incident:
        """The incident of events stored one by one, in the order they happened (the first and the
        latest :data:`MAX_EVENTS` when there are more)."""
        incident = cls(dag_id, alert_name, severity)
        for event in sorted(events, key=_utc_moment):  # stable: equal times keep their order
            incident.add(event)
        return incident

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Incident:
        events = [Event(**event) for event in data.get("events", [])]
        return cls(data["dag_id"], data["alert_name"], data["severity"], events)


@dataclass(frozen=True)
class StoredIncident:
    """An incident as read, and every key it was read from: the ones closing it deletes."""

    incident: Incident
    keys: tuple[str, ...]


def parse_event(raw: str) -> Event:
    return Event(**json.loads(raw))


def legacy_events(dag_id: str, raw: str) -> list[Event]:
    """The events of an incident kept in the one-Variable format; none if it cannot be read."""
    try:
        return Incident.from_dict(json.loads(raw)).events
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("the open incident of %s (one-Variable format) cannot be read (%s): ignored", dag_id, exc)
        return []


def assemble(entry: DagEntry, stored: dict[str, str]) -> StoredIncident | None:
    """The incident of ``entry``'s DAG from its stored values by key, or None if there are none.

    ``stored`` may hold keys of no event of the DAG (another DAG's, read through a wider listing):
    they are left out, and left alone.
    """
    dag_id = entry.dag_id
    keys = sorted(k for k in stored if is_event_key(dag_id, k))
    events = legacy_events(dag_id, stored[legacy_key(dag_id)]) if legacy_key(dag_id) in stored else []
    for key in keys:
        try:
            events.append(parse_event(stored[key]))
        except (ValueError, TypeError) as exc:
            log.warning("the incident event %s cannot be read (%s): ignored", key, exc)
    read = tuple(([legacy_key(dag_id)] if legacy_key(dag_id) in stored else []) + keys)
    if not read:
        return None
    return StoredIncident(Incident.from_events(dag_id, entry.alert_name, entry.severity, events), read)


def draft_key(prefix: str, incident: Incident, resolved_at: datetime) -> str:
    """``<prefix>incidents/<date>-<dag>.md``, dated by the incident's first event."""
    started = incident.events[0].moment if incident.events else resolved_at
    return f"{prefix}incidents/{started:%Y-%m-%d}-{incident.dag_id}.md"


def _duration(delta: timedelta) -> str:
    return humanize_duration(delta)


def _describe(event: Event) -> str:
    mapped = f"[{event.map_index}]" if event.map_index is not None else ""
    where = f"`{event.task_id}{mapped}` try {event.try_number}" if event.task_id else "the run"
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
