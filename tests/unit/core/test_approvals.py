"""Who may answer an approval, when its approvers are told, and what they read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stellar_ops.core import approvals
from stellar_ops.core.alerts import markdown_leftovers
from stellar_ops.core.approvals import ApprovalsConfig, OpenApproval, Schedule
from stellar_ops.core.approvers import Approvers, may_answer
from stellar_ops.core.errors import ConfigError
from stellar_ops.registry import parse_config

OPENED = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_a_role_entry_admits_its_members_and_no_one_else():
    ids = {e["id"] for e in Approvers(roles=("Platform lead",)).entries()}
    assert may_answer(ids, user_id="7", username="lead", roles=["Platform lead"])
    assert not may_answer(ids, user_id="8", username="oncall", roles=["On-call engineer"])
    assert not may_answer(ids, user_id="1", username="admin", roles=["Admin"])


def test_an_exclusion_wins_over_the_role_and_over_being_named():
    who = Approvers(roles=("Platform lead",), users=("lead",)).excluding(["lead", None])
    ids = {e["id"] for e in who.entries()}
    assert not may_answer(ids, user_id="7", username="lead", roles=["Platform lead"])
    assert may_answer(ids, user_id="9", username="lead2", roles=["Platform lead"])
    assert who.describe() == "any Platform lead, or lead; not lead"


def test_named_users_match_by_username_or_airflow_id():
    ids = {e["id"] for e in Approvers(users=("alice",)).entries()}
    assert may_answer(ids, user_id="3", username="alice", roles=[])
    assert not may_answer(ids, user_id="4", username="bob", roles=["Platform lead"])
    assert may_answer({"3"}, user_id="3", username="alice", roles=[])  # ids written by other code


def test_nobody_is_left_when_every_named_user_is_excluded():
    assert not Approvers(users=("alice",)).excluding(["alice"]).anyone_left
    assert Approvers(roles=("Platform lead",)).excluding(["alice"]).anyone_left


def test_the_defaults_follow_the_change_approval_table():
    config = parse_config(None).approvals
    restore = config.rule("db_restore", "approve_restore")
    assert restore.roles == ["Platform lead"]
    assert not restore.four_eyes
    assert config.rule("db_restore", "approve_replace").four_eyes
    removal = config.rule("api_key_rotation", "approve_removal")
    assert removal.four_eyes
    assert "On-call engineer" in removal.roles
    assert "Admin" not in removal.roles


def test_a_step_without_a_rule_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match="db_backup.approve_x"):
        ApprovalsConfig().rule("db_backup", "approve_x")


def test_a_rule_naming_nobody_is_refused():
    with pytest.raises(ConfigError, match="names nobody"):
        parse_config({"approvals": {"steps": {"db_restore.approve_restore": {"roles": []}}}})


def test_overriding_one_step_keeps_the_others():
    config = parse_config({"approvals": {"steps": {"db_restore.approve_restore": {"users": ["alice"]}}}})
    assert config.approvals.rule("db_restore", "approve_restore").users == ["alice"]
    assert config.approvals.rule("api_key_rotation", "approve_rollout").roles


def _schedule(**hours: float) -> Schedule:
    config = ApprovalsConfig(
        remind_after_hours=hours.get("remind", 4), escalate_before_hours=hours.get("escalate", 12)
    )
    rule = config.rule("api_key_rotation", "approve_rollout")  # the 72 h default
    return config.schedule(rule, OPENED)


def test_reminder_escalation_and_timeout_in_order():
    schedule = _schedule()
    assert [(name, at - OPENED) for name, at in schedule.milestones()] == [
        ("remind", timedelta(hours=4)),
        ("escalate", timedelta(hours=60)),
        ("timeout", timedelta(hours=72)),
    ]
    assert schedule.wait(OPENED, set()) == timedelta(hours=4)
    assert schedule.due(OPENED + timedelta(hours=5), set()) == ["remind"]
    assert schedule.wait(OPENED + timedelta(hours=5), {"remind"}) == timedelta(hours=55)
    assert schedule.due(OPENED + timedelta(hours=73), {"remind"}) == ["escalate", "timeout"]


def test_a_reminder_later_than_the_escalation_is_left_out():
    names = [name for name, _ in _schedule(remind=70, escalate=12).milestones()]
    assert names == ["escalate", "timeout"]


def test_an_escalation_before_the_opening_is_left_out():
    names = [name for name, _ in _schedule(remind=1, escalate=100).milestones()]
    assert names == ["remind", "timeout"]


def test_a_wait_is_never_shorter_than_a_second():
    assert _schedule().wait(OPENED + timedelta(hours=80), {"remind", "escalate"}) == timedelta(seconds=1)


def _open(severity: str = "P2") -> OpenApproval:
    return OpenApproval(
        dag_id="db_restore",
        task_id="approve_restore",
        run_id="manual__2026-12-01T09:00:00+00:00",
        subject="Restore a backup into restore@db:5432?",
        who="any Platform lead; not oncall",
        url="http://airflow.example:8080/dags/db_restore/runs/r/tasks/approve_restore/required_actions?map_index=-1",
        timeout_at=OPENED + timedelta(hours=24),
        severity=severity,  # type: ignore[arg-type]
    )


def test_the_opened_message_says_what_who_until_when_and_links_the_required_action():
    text = approvals.opened_message(_open(), OPENED)["text"]
    assert "Approval needed" in text
    assert "Restore a backup into restore@db:5432?" in text
    assert "any Platform lead; not oncall" in text
    assert "1 day" in text
    assert "2026-12-02 09:00 UTC" in text
    assert (
        "<http://airflow.example:8080/dags/db_restore/runs/r/tasks/approve_restore/required_actions" in text
    )
    assert markdown_leftovers(text) == []


def test_the_reminder_says_how_long_it_has_waited_and_what_is_left():
    text = approvals.reminder_message(_open(), OPENED + timedelta(hours=4), OPENED)["text"]
    assert "waiting for 4 h" in text
    assert "20 h" in text


def test_the_escalation_names_the_next_severity():
    assert "P2 to P1" in approvals.escalation_message(_open("P2"), OPENED)["text"]
    assert "P3 to P2" in approvals.escalation_message(_open("P3"), OPENED)["text"]


def test_the_answer_names_the_person():
    text = approvals.answered_message("db_restore", "approve_restore", "r1", "Approve", "lead")["text"]
    assert "approved by *lead*" in text
    assert "rejected by *lead2*" in approvals.answered_message("d", "t", "r", "Reject", "lead2")["text"]


def test_timeout_and_four_eyes_errors_name_what_went_wrong():
    error = approvals.timeout_error("approve_removal", timedelta(hours=72), "any On-call engineer")
    assert error.startswith("approve_removal: no answer within 3 days")
    assert approvals.four_eyes_error("approve_removal", "lead2", ("lead",)) is None
    refusal = approvals.four_eyes_error("approve_removal", "lead", ("lead",))
    assert refusal is not None
    assert "answered by lead" in refusal
