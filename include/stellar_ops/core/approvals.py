"""Approvals: who answers each step, when they are reminded, and the messages they get.

The operations manual's change-approval table, as configuration (``approvals`` of
``stellar_ops_config``): each approval step (``<dag_id>.<task_id>``) names the roles or users who
may answer it, the severity of its route, and whether it needs a second pair of eyes. A
four-eyes step is never answerable by the one who triggered the run, nor by anyone who already
approved a step of it.

While an approval waits, its approvers hear about it three times at most: when it opens, a
reminder after ``remind_after_hours``, and an escalation to the next severity's route
``escalate_before_hours`` before it times out. With no answer by the timeout the step fails, and
the run with it. Nothing here imports Airflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from stellar_ops.core.alerts import SEVERITY_ICON, escape, info_message, link
from stellar_ops.core.approvers import Approvers
from stellar_ops.core.config import Section, SeverityName
from stellar_ops.core.durations import humanize_duration
from stellar_ops.core.errors import ConfigError

ON_CALL = "On-call engineer"
PLATFORM_LEAD = "Platform lead"
Milestone = Literal["remind", "escalate", "timeout"]
DEFAULT_TIMEOUT_HOURS = 72.0
NEXT_SEVERITY: dict[SeverityName, SeverityName] = {"P3": "P2", "P2": "P1", "P1": "P1"}


class ApprovalRule(Section):
    roles: list[str] = Field(default_factory=list, description="Roles any of whose members may answer.")
    users: list[str] = Field(default_factory=list, description="Usernames who may answer, besides the roles.")
    four_eyes: bool = Field(
        False,
        description="Never answerable by the one who triggered the run or by an earlier approver of it.",
    )
    severity: SeverityName = Field("P3", description="The route that is told when the approval opens.")
    timeout_hours: float | None = Field(
        None, gt=0, description="Hours to answer; null takes approvals.timeout_hours."
    )

    @model_validator(mode="after")
    def _someone(self) -> ApprovalRule:
        if not self.roles and not self.users:
            raise ValueError("names nobody: give it roles or users")
        return self

    def approvers(self) -> Approvers:
        return Approvers(roles=tuple(self.roles), users=tuple(self.users))


def _default_steps() -> dict[str, ApprovalRule]:
    routine = [ON_CALL, PLATFORM_LEAD]
    return {
        "db_restore.approve_restore": ApprovalRule(roles=[PLATFORM_LEAD], severity="P2", timeout_hours=24),
        "db_restore.approve_replace": ApprovalRule(
            roles=[PLATFORM_LEAD], four_eyes=True, severity="P2", timeout_hours=24
        ),
        "db_migration.approve_migration": ApprovalRule(
            roles=[PLATFORM_LEAD], four_eyes=True, severity="P2", timeout_hours=72
        ),
        "db_migration.approve_rollback": ApprovalRule(roles=[PLATFORM_LEAD], severity="P1", timeout_hours=24),
        "config_change.approve_change": ApprovalRule(
            roles=routine, four_eyes=True, severity="P2", timeout_hours=24
        ),
        "api_key_rotation.approve_rollout": ApprovalRule(roles=routine),
        "api_key_rotation.approve_removal": ApprovalRule(
            roles=routine, four_eyes=True, timeout_hours=14 * 24
        ),
        "secret_rotation.approve_rollout": ApprovalRule(roles=routine),
        "secret_rotation.approve_removal": ApprovalRule(roles=routine, four_eyes=True, timeout_hours=14 * 24),
    }


class ApprovalsConfig(Section):
    remind_after_hours: float = Field(4.0, gt=0, description="Hours after it opens to remind the approvers.")
    escalate_before_hours: float = Field(
        12.0, gt=0, description="Hours before the timeout to tell the next severity's route."
    )
    timeout_hours: float = Field(
        DEFAULT_TIMEOUT_HOURS, gt=0, description="Hours to answer, unless the step sets its own."
    )
    steps: dict[str, ApprovalRule] = Field(
        default_factory=_default_steps,
        description="Who answers each approval step, by '<dag_id>.<task_id>': roles and users, four_eyes, "
        "severity, timeout_hours.",
    )

    @field_validator("steps", mode="before")
    @classmethod
    def _over_the_defaults(cls, value: Any) -> Any:
        """A step given replaces that step's rule; the steps not given keep theirs."""
        if isinstance(value, dict):
            return {**_default_steps(), **value}
        return value

    def rule(self, dag_id: str, task_id: str) -> ApprovalRule:
        try:
            return self.steps[f"{dag_id}.{task_id}"]
        except KeyError:
            raise ConfigError(
                f"approvals.steps has no rule for {dag_id}.{task_id}: name the roles or users who may answer it"
            ) from None

    def schedule(self, rule: ApprovalRule, opened_at: datetime) -> Schedule:
        timeout = timedelta(hours=rule.timeout_hours or self.timeout_hours)
        return Schedule(
            opened_at=opened_at,
            timeout=timeout,
            remind_after=timedelta(hours=self.remind_after_hours),
            escalate_before=timedelta(hours=self.escalate_before_hours),
        )


@dataclass(frozen=True)
class Schedule:
    """When an open approval's approvers are reminded, escalated to, and given up on."""

    opened_at: datetime
    timeout: timedelta
    remind_after: timedelta
    escalate_before: timedelta

    @property
    def timeout_at(self) -> datetime:
        return self.opened_at + self.timeout

    def milestones(self) -> list[tuple[Milestone, datetime]]:
        """In time order; a reminder that would come after the escalation is left out, and so is
        an escalation that would come before the approval opens."""
        escalate_at = self.timeout_at - self.escalate_before
        remind_at = self.opened_at + self.remind_after
        escalates = escalate_at > self.opened_at
        found: list[tuple[Milestone, datetime]] = []
        if remind_at < (escalate_at if escalates else self.timeout_at):
            found.append(("remind", remind_at))
        if escalates:
            found.append(("escalate", escalate_at))
        found.append(("timeout", self.timeout_at))
        return found

    def due(self, now: datetime, done: set[str]) -> list[Milestone]:
        return [name for name, at in self.milestones() if at <= now and name not in done]

    def wait(self, now: datetime, done: set[str]) -> timedelta:
        """How long to wait from ``now`` for the next milestone not yet done (at least a second)."""
        pending = [at for name, at in self.milestones() if name not in done]
        return max(min(pending) - now, timedelta(seconds=1))


@dataclass(frozen=True)
class OpenApproval:
    """What every message about one open approval says."""

    dag_id: str
    task_id: str
    run_id: str
    subject: str
    who: str  # Approvers.describe()
    url: str  # the Required Action in the UI
    timeout_at: datetime
    severity: SeverityName

    def _lines(self, now: datetime) -> list[str]:
        left = humanize_duration(max(self.timeout_at - now, timedelta(0)))
        return [
            f"*Asked:* {escape(self.subject)}",
            f"*Who may answer:* {escape(self.who)}",
            f"*Answer within:* {left} (by {self.timeout_at:%Y-%m-%d %H:%M} UTC), or the run fails",
            f"*Run:* `{self.dag_id}` {escape(self.run_id)}",
            link(self.url, "Open the Required Action"),
        ]


def opened_message(approval: OpenApproval, now: datetime) -> dict[str, Any]:
    icon = SEVERITY_ICON[approval.severity]
    head = f"{icon} *Approval needed:* `{approval.dag_id}.{approval.task_id}`"
    return info_message("\n".join([head, *approval._lines(now)]))


def reminder_message(approval: OpenApproval, now: datetime, opened_at: datetime) -> dict[str, Any]:
    waited = humanize_duration(now - opened_at)
    head = f":hourglass: *Reminder: approval waiting for {waited}:* `{approval.dag_id}.{approval.task_id}`"
    return info_message("\n".join([head, *approval._lines(now)]))


def escalation_message(approval: OpenApproval, now: datetime) -> dict[str, Any]:
    severity = NEXT_SEVERITY[approval.severity]
    head = (
        f"{SEVERITY_ICON[severity]} *Escalated ({approval.severity} to {severity}): approval about to time out:* "
        f"`{approval.dag_id}.{approval.task_id}`"
    )
    return info_message("\n".join([head, *approval._lines(now)]))


def answered_message(dag_id: str, task_id: str, run_id: str, chosen: str, by: str) -> dict[str, Any]:
    icon = ":white_check_mark:" if chosen == "Approve" else ":no_entry:"
    verb = "approved" if chosen == "Approve" else "rejected"
    return info_message(f"{icon} `{dag_id}.{task_id}` {verb} by *{escape(by)}* (run {escape(run_id)})")


def timeout_error(task_id: str, timeout: timedelta, who: str) -> str:
    return f"{task_id}: no answer within {humanize_duration(timeout)} (who may answer: {who}); the run stops here"


def four_eyes_error(task_id: str, by: str, excluded: tuple[str, ...]) -> str | None:
    """The refusal when a four-eyes step was answered by someone it excludes (an auth manager
    that does not apply the rule let them through); None when the answer stands."""
    if by not in excluded:
        return None
    return (
        f"{task_id}: answered by {by}, who triggered this run or approved an earlier step of it; "
        "a second person must answer (check that the auth manager is stellar_ops' StellarAuthManager)"
    )
