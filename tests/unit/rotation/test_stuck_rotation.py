"""The stuck-rotation alert of ``secrets_rotation_audit``: when a rotation counts as stuck, and what
its alert says (the integration tests send it through the stack)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stellar_ops.core.alerts import finding_message, markdown_leftovers
from stellar_ops.registry import parse_config
from stellar_ops.rotation import flow
from stellar_ops.rotation.progress import Progress

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def waiting(phase: str, phase_at: datetime, window_hours: float = 24) -> Progress:
    return Progress(
        secret="REDIS_PASSWORD",
        rotation_id="REDIS_PASSWORD-2026-12-01",
        run_id="manual__2026-12-01T09:00:00+00:00",
        reason="scheduled",
        by="alice",
        started_at="2026-12-01T09:00:00+00:00",
        window_seconds=window_hours * 3600,
        phase=phase,
        phase_at=phase_at.isoformat(),
        new={"identity": "stellar", "fingerprint": "0123abcd"},
        old={"identity": "stellar", "fingerprint": "4567ef01"},
    )


@pytest.mark.parametrize(
    ("phase", "hours_ago", "stuck"),
    [
        ("switched", 24 + 48 + 1, True),  # window (24 h) + stuck_after_hours (48 h) + 1 h
        ("switched", 24 + 48 - 1, False),
        ("added", 24 * 30, False),  # not yet switched: it does not wait for its removal
        ("removed", 24 * 30, False),
        ("finished", 24 * 30, False),
    ],
)
def test_only_a_switched_rotation_past_its_window_and_the_grace_is_stuck(phase, hours_ago, stuck):
    assert waiting(phase, NOW - timedelta(hours=hours_ago)).stuck(NOW, 48) is stuck


def test_the_stuck_alert_names_the_secret_the_rotation_since_when_and_the_run_to_answer():
    record = waiting("switched", datetime(2026, 12, 2, 9, 30, tzinfo=UTC))
    finding = flow.stuck_finding(record, NOW)
    assert (finding.alert_name, finding.severity, finding.runbook, finding.dag_id) == (
        "SecretRotationStuck",
        "P2",
        "SEC-3.3",
        "secrets_rotation_audit",
    )
    assert finding.labels == {"secret": "REDIS_PASSWORD"}
    assert finding.summary == (
        "REDIS_PASSWORD rotation REDIS_PASSWORD-2026-12-01 has waited for its removal approval since "
        "2026-12-03 09:30 UTC (4 days 2 h): answer approve_removal of secret_rotation run "
        "manual__2026-12-01T09:00:00+00:00"
    )
    assert "stellar (0123abcd)" in finding.details[0] and "stellar (4567ef01)" in finding.details[0]
    assert "by alice" in finding.details[1] and "window 1 day" in finding.details[1]
    text = finding_message(finding, parse_config(None).alerts)["text"]
    assert markdown_leftovers(text) == []
