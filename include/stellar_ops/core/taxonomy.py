"""The small, closed vocabulary of DAG tags, owners and alert severities.

Every DAG is tagged ``procedure:<name>``, ``severity:<P1-P3>`` and ``owner:<team>``; the policy
tests reject anything else, so the UI's tag filter stays useful. Each procedure declares its own
entries (:class:`Procedure`, one :class:`DagEntry` per DAG) in its package;
:mod:`stellar_ops.registry` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from stellar_ops.core.config import Section

Severity = Literal["P1", "P2", "P3"]

SEVERITIES: tuple[Severity, ...] = ("P1", "P2", "P3")
SEVERITY_MEANING: dict[Severity, str] = {
    "P1": "page now: customer impact or data at risk",
    "P2": "fix today: a safety net (backup, DR, certificates) is down",
    "P3": "fix this week: degradation or hygiene",
}
# How soon someone must respond (section 5.2 of the procedures).
RESPONSE_TIME: dict[Severity, timedelta] = {
    "P1": timedelta(minutes=15),
    "P2": timedelta(hours=1),
    "P3": timedelta(hours=4),
}
OWNERS = ("platform",)


def response_time(severity: Severity) -> str:
    """``15 minutes``, ``1 hour``, ``4 hours``."""
    minutes = int(RESPONSE_TIME[severity].total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} minutes"
    hours = minutes // 60
    return f"{hours} hour{'s' if hours > 1 else ''}"


@dataclass(frozen=True)
class DagEntry:
    """What the alerting conventions need to know about one DAG."""

    dag_id: str
    procedure: str
    severity: Severity
    alert_name: str
    schedule: str | None  # the cron expression (UTC) its DAG file states; None: manual only
    runbook: str  # an id of stellar_ops.core.runbooks: what its alerts link
    expected_minutes: int  # a run normally completes within this long of being queued (its deadline)
    owner: str = "platform"

    @property
    def tags(self) -> list[str]:
        return [f"procedure:{self.procedure}", f"severity:{self.severity}", f"owner:{self.owner}"]


@dataclass(frozen=True)
class AlertRef:
    """An alert a procedure raises about what it finds (not its DAG's own failure): its name,
    severity and runbook."""

    name: str
    severity: Severity
    runbook: str  # an id of stellar_ops.core.runbooks


@dataclass(frozen=True)
class Procedure:
    """One procedure: its name, its config section (the root config's field and its model), its DAGs,
    and the alerts it raises about what it finds."""

    name: str
    section: str
    config: type[Section]
    dags: tuple[DagEntry, ...]
    alerts: tuple[AlertRef, ...] = ()
