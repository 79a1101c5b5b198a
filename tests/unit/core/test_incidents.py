"""stellar_ops.core.incidents: an incident's timeline, and its post-incident review draft."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

from stellar_ops.core.incidents import MAX_EVENTS, Event, Incident, draft_key, review_draft

T0 = datetime(2026, 11, 30, 2, 0, 5, tzinfo=UTC)


def at(seconds: int) -> str:
    return datetime.fromtimestamp(T0.timestamp() + seconds, UTC).isoformat()


def backup_incident() -> Incident:
    incident = Incident("db_backup", "BackupFailed", "P2")
    incident.add(
        Event(
            at(0),
            "retry",
            "scheduled__1",
            "dump_to_s3",
            1,
            "BackupError: S3 upload failed",
            "http://af/log/1",
        )
    )
    incident.add(Event(at(65), "retry", "scheduled__1", "dump_to_s3", 2, "BackupError: S3 upload failed"))
    incident.add(Event(at(190), "failure", "scheduled__1", "dump_to_s3", 3, "BackupError: S3 upload failed"))
    incident.add(Event(at(191), "alert", "scheduled__1", detail="P2 BackupFailed to the ops channel"))
    return incident


def test_an_incident_knows_what_failed_and_whether_anyone_was_told():
    incident = backup_incident()
    assert incident.alerted and incident.failing_task == "dump_to_s3"
    assert incident.failing_since_run == "scheduled__1"
    quiet = Incident("db_backup", "BackupFailed", "P2", [Event(at(0), "retry", "r", "t", 1)])
    assert not quiet.alerted and quiet.failing_task is None
    assert Incident.from_dict(incident.as_dict()) == incident


def test_a_success_that_ended_before_the_latest_failure_is_no_recovery_from_it():
    incident = backup_incident()  # its latest failed try at at(190), its alert at at(191)
    ended = datetime.fromisoformat
    assert incident.ended_before_latest_trouble(ended(at(189)))  # an earlier run's late callback
    assert not incident.ended_before_latest_trouble(ended(at(190)))
    assert not incident.ended_before_latest_trouble(ended(at(600)))  # the run that succeeded after
    assert not incident.ended_before_latest_trouble(None)  # unknown: judged on its tasks alone
    incident.add(Event(at(700), "deadline", "scheduled__2", detail="not done in 60 minutes"))
    assert incident.ended_before_latest_trouble(ended(at(600)))
    assert not incident.ended_before_latest_trouble(ended(at(900)))  # the late run itself, done
    told = Incident("db_backup", "BackupFailed", "P2", [Event(at(5), "alert", "r", detail="sent")])
    assert not told.ended_before_latest_trouble(ended(at(0)))  # nothing failed to be before


def test_a_long_incident_keeps_its_first_and_latest_events():
    incident = Incident("db_backup", "BackupFailed", "P2")
    for second in range(MAX_EVENTS + 50):
        incident.add(Event(at(second), "retry", f"run{second}", "t", 1))
    assert len(incident.events) <= MAX_EVENTS
    assert incident.events[0].run_id == "run0"
    assert incident.events[-1].run_id == f"run{MAX_EVENTS + 49}"


def test_the_review_draft_has_the_timeline_detection_time_duration_and_sections():
    resolved = datetime.fromtimestamp(T0.timestamp() + 3600 + 190, UTC)
    text = review_draft(
        backup_incident(), resolved_at=resolved, recovery_run="manual__2", runbook="RB-002: x"
    )
    lines = text.splitlines()
    assert lines[0] == "# Post-incident review: BackupFailed in db_backup"
    assert "- **Severity:** P2 (respond within 1 hour)" in lines
    assert "- **Started:** 2026-11-30 02:00:05 UTC (first failure)" in lines
    assert "- **Resolved:** 2026-11-30 03:03:15 UTC (run `manual__2`)" in lines
    assert "- **Detection time:** 3 min 11 s (first failure to first alert)" in lines
    assert "- **Duration:** 1 h 3 min" in lines
    assert "- **Review due:** 2026-12-02 03:03 UTC (48 hours after the incident)" in lines
    timeline = lines[lines.index("## Timeline (UTC)") + 2 : lines.index("## Root cause") - 1]
    assert timeline == [
        "- 2026-11-30 02:00:05 `dump_to_s3` try 1 of run `scheduled__1` retried: BackupError: S3 upload failed ([log](http://af/log/1))",
        "- 2026-11-30 02:01:10 `dump_to_s3` try 2 of run `scheduled__1` retried: BackupError: S3 upload failed",
        "- 2026-11-30 02:03:15 `dump_to_s3` try 3 of run `scheduled__1` failed for good: BackupError: S3 upload failed",
        "- 2026-11-30 02:03:16 alert sent: P2 BackupFailed to the ops channel",
        "- 2026-11-30 03:03:15 run `manual__2` succeeded again: resolved",
    ]
    for section in (
        "Root cause",
        "Impact",
        "Remediation",
        "Corrective actions",
        "Detection gap",
        "Runbook improvements",
    ):
        assert f"## {section}" in lines
    assert "| action | owner | due date |" in lines
    assert draft_key("backups/", backup_incident(), resolved) == "backups/incidents/2026-11-30-db_backup.md"


def test_a_draft_of_an_incident_still_open_says_so():
    now = datetime.fromtimestamp(T0.timestamp() + 600, UTC)
    text = review_draft(backup_incident(), resolved_at=None, recovery_run=None, runbook="RB-002", now=now)
    assert "- **Resolved:** not yet (this draft is as of 2026-11-30 02:10:05 UTC)" in text
    assert "- **Duration:** 10 min so far" in text
    assert "succeeded again" not in text


def test_event_keys_sort_as_their_events_happened_and_belong_to_one_dag():
    from stellar_ops.core.incidents import event_key, is_event_key

    early = Event("2026-12-07T00:30:00.000001+00:00", "failure", "r", "t", 1, map_index=3)
    late = Event("2026-12-07T01:30:00.500000+01:00", "failure", "r", "t", 1, map_index=3)  # 00:30:00.5 UTC
    first, second = event_key("db_backup", early, "a"), event_key("db_backup", late, "a")
    assert first == "stellar_ops_incident__db_backup__20261207T003000000001Z_" + first[-12:]
    assert first < second
    assert event_key("db_backup", early, "a") != event_key("db_backup", early, "b")  # two writers
    assert is_event_key("db_backup", first)
    assert not is_event_key("db_backup__copy", first) and not is_event_key("db", first)
    theirs = event_key("db_backup__copy", early, "a")  # starts with db_backup's prefix
    assert theirs.startswith("stellar_ops_incident__db_backup__") and not is_event_key("db_backup", theirs)
    assert not is_event_key("db_backup", "stellar_ops_incident__db_backup")  # the one-Variable format


def test_events_stored_one_by_one_make_an_incident_in_time_order_naming_mapped_tasks():
    events = [
        Event(at(20), "alert", "manual__1", detail="P3 to ops"),
        Event(at(10), "failure", "manual__1", "probe_certificate", 1, "boom", map_index=4),
    ]
    incident = Incident.from_events("tls_cert_check", "CertificateCheckFailed", "P3", events)
    assert [e.kind for e in incident.events] == ["failure", "alert"]
    draft = review_draft(incident, resolved_at=None, recovery_run=None, runbook="RB", now=T0)
    assert "`probe_certificate[4]` try 1 of run `manual__1` failed for good: boom" in draft
    older = {k: v for k, v in asdict(incident.events[0]).items() if k != "map_index"}  # stored before
    assert Event(**older).map_index is None
