"""The WAL archive check's verdicts, from pg_stat_archiver as the server states it (pure)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from stellar_ops.health import summary, wal_archive
from stellar_ops.health.results import CheckResult
from stellar_ops.health.wal_archive import Archiver, check, segment_number
from stellar_ops.postgres.pitr import PitrConfig
from stellar_ops.registry import parse_config

NOW = datetime(2026, 12, 7, 7, 0, tzinfo=UTC)
SEG = 16 * 1024 * 1024


def _lsn(segment: int, offset: int = 0) -> int:
    return segment * SEG + offset


def _state(**changes) -> Archiver:
    """archive_mode on, segment 0x20 archived 30 s ago, the flush position at the start of 0x21."""
    base = Archiver(
        archive_mode="on",
        archive_timeout_seconds=60,
        wal_segment_size=SEG,
        in_recovery=False,
        now=NOW,
        flush_lsn=_lsn(0x21),
        archived_count=32,
        last_archived_wal="000000010000000000000020",
        last_archived_time=NOW - timedelta(seconds=30),
        stats_reset=NOW - timedelta(days=3),
    )
    return dataclasses.replace(base, **changes)


def test_segment_numbers_of_wal_file_names():
    assert segment_number("000000010000000000000020", SEG) == 0x20
    assert segment_number("000000020000000A000000FF", SEG) == 0xA * 256 + 0xFF  # timeline aside
    assert segment_number("000000010000000000000003.00000028.backup", SEG) == 3
    assert segment_number("000000010000000100000002", 1024**3) == 4 + 2  # 4 segments of 1 GiB per id
    assert segment_number("00000002.history", SEG) is None
    assert segment_number(None, SEG) is None


def test_archive_mode_off_and_not_required_is_ok_and_says_so():
    result = check(_state(archive_mode="off"), PitrConfig())
    assert result.status == "ok"
    assert "archive_mode is off" in result.detail and "pitr.required is false" in result.detail
    assert result.alert is None
    assert wal_archive.metrics([result]) == []  # nothing pushed while archiving is off


def test_archive_mode_off_when_required_is_p2_naming_the_setting():
    result = check(_state(archive_mode="off"), PitrConfig(required=True))
    assert result.status == "critical"
    assert "archive_mode is off" in result.detail and "pitr.required" in result.detail
    assert result.alert is not None and (result.alert.name, result.alert.severity) == (
        "WalArchiveDisabled",
        "P2",
    )
    assert result.runbook == "PITR-ARCHIVE"


def test_a_failure_newer_than_the_last_success_is_p1_naming_the_wal_file_and_when():
    state = _state(
        failed_count=4,
        last_failed_wal="000000010000000000000021",
        last_failed_time=NOW - timedelta(seconds=12),
        flush_lsn=_lsn(0x22),
    )
    result = check(state, PitrConfig())
    assert result.status == "critical"
    assert result.alert is not None and (result.alert.name, result.alert.severity) == (
        "WalArchiveFailing",
        "P1",
    )
    assert "000000010000000000000021 failed 12 s ago (2026-12-07 06:59:48 UTC)" in result.detail
    assert "4 failure(s)" in result.detail
    assert "last success: 000000010000000000000020 30 s ago" in result.detail
    assert result.items[0]["failing"] is True


def test_failures_and_never_a_success_are_failing():
    state = _state(
        archived_count=0,
        last_archived_wal=None,
        last_archived_time=None,
        failed_count=3,
        last_failed_wal="000000010000000000000001",
        last_failed_time=NOW - timedelta(seconds=5),
    )
    result = check(state, PitrConfig())
    assert (result.status, result.alert and result.alert.name) == ("critical", "WalArchiveFailing")
    assert "000000010000000000000001 failed 5 s ago" in result.detail
    assert "never archived successfully: P1 WalArchiveFailing" in result.detail


def test_an_old_failure_followed_by_a_success_is_not_failing():
    state = _state(
        failed_count=1,
        last_failed_wal="000000010000000000000010",
        last_failed_time=NOW - timedelta(hours=5),
    )
    result = check(state, PitrConfig())
    assert result.status == "ok", result.detail
    assert result.items[0]["failing"] is False


@pytest.mark.parametrize("written", [0, 8192], ids=["at-the-boundary", "inside-the-next-segment"])
def test_an_idle_server_archived_long_ago_is_not_lagging(written):
    """Its last segment is archived; what it wrote since is in a segment still being written."""
    state = _state(last_archived_time=NOW - timedelta(hours=9), flush_lsn=_lsn(0x21, written))
    result = check(state, PitrConfig())
    assert result.status == "ok", result.detail
    assert result.detail.startswith(
        "nothing waiting to be archived; last archived 000000010000000000000020 9 h ago"
    )
    assert result.items[0]["lag_seconds"] == 0.0 and result.items[0]["segments_waiting"] == 0


def test_a_complete_segment_waiting_past_the_limit_is_p2_lagging():
    state = _state(last_archived_time=NOW - timedelta(minutes=6), flush_lsn=_lsn(0x23, 100))
    result = check(state, PitrConfig())
    assert result.status == "critical"
    assert result.alert is not None and (result.alert.name, result.alert.severity) == (
        "WalArchiveLagging",
        "P2",
    )
    assert "2 complete segment(s) waiting, nothing archived for 6 min (over 5 min" in result.detail
    assert result.items[0]["lag_seconds"] == 360.0


def test_a_segment_waiting_within_the_limit_is_ok_with_its_lag():
    state = _state(last_archived_time=NOW - timedelta(seconds=40), flush_lsn=_lsn(0x22))
    result = check(state, PitrConfig())
    assert result.status == "ok"
    assert result.detail.startswith("1 complete segment(s) waiting for 40 s;")
    assert check(state, PitrConfig(max_archive_lag_seconds=39)).status == "critical"


def test_a_last_archived_file_naming_no_segment_counts_the_time_since_it():
    state = _state(last_archived_wal="00000002.history", last_archived_time=NOW - timedelta(minutes=10))
    result = check(state, PitrConfig())
    assert result.status == "critical" and "what waits is not known" in result.detail


def test_nothing_archived_and_nothing_failed_is_a_warning():
    state = _state(archived_count=0, last_archived_wal=None, last_archived_time=None)
    result = check(state, PitrConfig())
    assert result.status == "warning"
    assert "nothing has been archived since 3 days ago" in result.detail
    assert [m.name for m in wal_archive.metrics([result])] == ["stellar_pitr_archive_failing"]


def test_archive_timeout_zero_is_named():
    result = check(_state(archive_timeout_seconds=0), PitrConfig())
    assert "archive_timeout 0: a quiet segment is archived only once it is full" in result.detail
    assert "archive_timeout 1 min" in check(_state(), PitrConfig()).detail


def test_a_standby_is_unknown():
    result = check(_state(in_recovery=True, flush_lsn=None), PitrConfig())
    assert result.status == "unknown" and "in recovery" in result.detail
    assert wal_archive.metrics([result]) == []


def test_metrics_go_with_the_health_metrics_after_xcom():
    lagging = check(_state(last_archived_time=NOW - timedelta(minutes=6), flush_lsn=_lsn(0x23)), PitrConfig())
    carried = CheckResult.from_dict(lagging.as_dict())  # what summarize_health receives
    pushed = {m.name: m for m in summary.metrics([carried])}
    assert pushed["stellar_pitr_archive_lag_seconds"].value == 360.0
    assert pushed["stellar_pitr_archive_failing"].value == 0.0
    assert pushed["stellar_health_check_status"].labels == {"check": "wal_archive"}
    failing = check(
        _state(failed_count=1, last_failed_wal="000000010000000000000021", last_failed_time=NOW),
        PitrConfig(),
    )
    assert {m.name: m.value for m in summary.metrics([failing])}["stellar_pitr_archive_failing"] == 1.0
    unknown = CheckResult("wal_archive", "unknown", "could not be checked: connection refused")
    assert [m.name for m in summary.metrics([unknown])] == ["stellar_health_check_status"]


def test_the_pitr_section_defaults_and_bounds():
    config = parse_config(None).pitr
    assert (config.required, config.max_archive_lag_seconds) == (False, 300.0)
    assert parse_config({"pitr": {"required": True}}).pitr.required is True
    with pytest.raises(Exception, match="pitr.max_archive_lag_seconds"):
        parse_config({"pitr": {"max_archive_lag_seconds": 0}})
