"""WAL archiving, the ground of point-in-time recovery, from the server's own ``pg_stat_archiver``.

Whatever archives (barman-cloud, pgBackRest, WAL-G), the view tells over the ordinary connection
whether it works: a failure newer than the last success is P1 WalArchiveFailing. Lagging is a
*complete* segment waiting with no success for over ``pitr.max_archive_lag_seconds``: the segment
the flush position is in is compared with the last archived one, so an idle server with nothing
to archive is not lagging however old its last success (``archive_timeout`` switches segments
only after activity). ``archive_mode`` off is green, or P2 WalArchiveDisabled with
``pitr.required``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stellar_ops.core.durations import humanize_duration
from stellar_ops.core.metrics import Metric
from stellar_ops.health.results import AlertRef, CheckResult
from stellar_ops.postgres.pitr import PitrConfig
from stellar_ops.postgres.target import PgTarget, connect

NAME = "wal_archive"
FAILING = AlertRef("WalArchiveFailing", "P1", "PITR-ARCHIVE")
LAGGING = AlertRef("WalArchiveLagging", "P2", "PITR-ARCHIVE")
DISABLED = AlertRef("WalArchiveDisabled", "P2", "PITR-ARCHIVE")
ALERTS = (FAILING, LAGGING, DISABLED)

# 000000010000000A000000FF: timeline, then the segment number as two 32-bit halves; a .backup,
# .partial or .history suffix may follow (a .history file names no segment)
_SEGMENT = re.compile(r"^[0-9A-F]{8}([0-9A-F]{8})([0-9A-F]{8})(?:\.|$)")

SETTINGS = (
    "SELECT name, setting FROM pg_settings "
    "WHERE name IN ('archive_mode', 'archive_timeout', 'wal_segment_size')"
)
ARCHIVER = (
    "SELECT archived_count, last_archived_wal, last_archived_time, failed_count, last_failed_wal, "
    "last_failed_time, stats_reset FROM pg_stat_archiver"
)


@dataclass(frozen=True)
class Archiver:
    """What the server says of its WAL archiving, at one moment of its own clock (``now``)."""

    archive_mode: str  # off, on, always
    archive_timeout_seconds: int
    wal_segment_size: int  # bytes
    in_recovery: bool
    now: datetime
    flush_lsn: int | None = None  # bytes; None in recovery
    archived_count: int = 0
    last_archived_wal: str | None = None
    last_archived_time: datetime | None = None
    failed_count: int = 0
    last_failed_wal: str | None = None
    last_failed_time: datetime | None = None
    stats_reset: datetime | None = None

    @property
    def failing(self) -> bool:
        """A failure more recent than the last success (or failures and never a success)."""
        if self.failed_count == 0 or self.last_failed_time is None:
            return False
        return self.last_archived_time is None or self.last_failed_time > self.last_archived_time

    def segments_waiting(self) -> int | None:
        """Complete segments after the last archived one: those before the one the flush position
        is in. None when the last archived file names no segment, or nothing was archived."""
        last = segment_number(self.last_archived_wal, self.wal_segment_size)
        if last is None or self.flush_lsn is None:
            return None
        return max(0, self.flush_lsn // self.wal_segment_size - last - 1)

    def lag_seconds(self) -> float | None:
        """How long WAL has waited to be archived: 0 when no complete segment waits, else the time
        since the last success (also when what waits cannot be told); None when never archived."""
        if self.last_archived_time is None:
            return None
        if self.segments_waiting() == 0:
            return 0.0
        return max(0.0, (self.now - self.last_archived_time).total_seconds())


def segment_number(wal: str | None, segment_size: int) -> int | None:
    """The segment number of a WAL file name (``000000010000000A000000FF`` and its ``.backup`` or
    ``.partial`` files), counted from LSN 0; None for a ``.history`` file or no name."""
    match = _SEGMENT.match(wal or "")
    if match is None:
        return None
    high, low = (int(part, 16) for part in match.groups())
    return high * (0x1_0000_0000 // segment_size) + low


def fetch(target: PgTarget, timeout: float) -> Archiver:
    """The archiving settings, the flush position and ``pg_stat_archiver``, in one session."""
    with connect(target.bounded(timeout)) as conn:
        settings = {str(name): str(value) for name, value in conn.execute(SETTINGS).fetchall()}
        in_recovery, now = conn.execute("SELECT pg_is_in_recovery(), now()").fetchone()
        flush = None
        if not in_recovery:  # the WAL functions of a primary only
            flush = int(conn.execute("SELECT pg_current_wal_flush_lsn() - '0/0'::pg_lsn").fetchone()[0])
        row = conn.execute(ARCHIVER).fetchone()
    return Archiver(
        archive_mode=settings.get("archive_mode", "off"),
        archive_timeout_seconds=int(settings.get("archive_timeout", "0")),
        wal_segment_size=int(settings.get("wal_segment_size", str(16 * 1024 * 1024))),
        in_recovery=bool(in_recovery),
        now=now,
        flush_lsn=flush,
        archived_count=int(row[0]),
        last_archived_wal=row[1],
        last_archived_time=row[2],
        failed_count=int(row[3]),
        last_failed_wal=row[4],
        last_failed_time=row[5],
        stats_reset=row[6],
    )


def _at(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    return f"{humanize_duration(now - moment)} ago ({moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC)"


def _last_success(state: Archiver) -> str:
    if state.last_archived_time is None:
        return "never archived successfully"
    return f"last success: {state.last_archived_wal} {_at(state.last_archived_time, state.now)}"


def _item(state: Archiver) -> dict[str, Any]:
    def iso(moment: datetime | None) -> str | None:
        return None if moment is None else moment.isoformat()

    lag = state.lag_seconds()
    return {
        "archive_mode": state.archive_mode,
        "archive_timeout_seconds": state.archive_timeout_seconds,
        "in_recovery": state.in_recovery,
        "archived_count": state.archived_count,
        "last_archived_wal": state.last_archived_wal,
        "last_archived_time": iso(state.last_archived_time),
        "failed_count": state.failed_count,
        "last_failed_wal": state.last_failed_wal,
        "last_failed_time": iso(state.last_failed_time),
        "segments_waiting": state.segments_waiting(),
        "lag_seconds": None if lag is None else round(lag, 1),
        "failing": state.failing,
    }


def check(state: Archiver, settings: PitrConfig) -> CheckResult:
    item = _item(state)
    if state.archive_mode == "off":
        if settings.required:
            return CheckResult(
                NAME,
                "critical",
                "archive_mode is off, but pitr.required is true: no WAL is archived, so there is no "
                "point-in-time recovery (set archive_mode = on and an archive_command, then restart): "
                "P2 WalArchiveDisabled",
                [item],
                DISABLED,
                DISABLED.runbook,
            )
        return CheckResult(
            NAME,
            "ok",
            "archive_mode is off: WAL is not archived, no point-in-time recovery (pitr.required is false)",
            [item],
        )
    if state.in_recovery:
        return CheckResult(
            NAME,
            "unknown",
            "the server is in recovery (a standby): watch WAL archiving on its primary",
            [item],
        )
    if state.failing:
        assert state.last_failed_time is not None
        return CheckResult(
            NAME,
            "critical",
            f"archiving fails: {state.last_failed_wal} failed {_at(state.last_failed_time, state.now)}, "
            f"{state.failed_count} failure(s) in all; {_last_success(state)}: P1 WalArchiveFailing",
            [item],
            FAILING,
            FAILING.runbook,
        )
    return _progress(state, settings, item)


def _progress(state: Archiver, settings: PitrConfig, item: dict[str, Any]) -> CheckResult:
    """archive_mode on, no failure since the last success: how long WAL has waited."""
    timeout = (
        f"archive_timeout {humanize_duration(state.archive_timeout_seconds)}"
        if state.archive_timeout_seconds
        else "archive_timeout 0: a quiet segment is archived only once it is full"
    )
    if state.last_archived_time is None:
        since = f" since {_at(state.stats_reset, state.now)}" if state.stats_reset else ""
        return CheckResult(
            NAME,
            "warning",
            f"archive_mode is {state.archive_mode} but nothing has been archived{since}, and nothing "
            f"failed: no segment complete yet, or archive_command is empty or hangs ({timeout})",
            [item],
        )
    lag = state.lag_seconds()
    assert lag is not None
    waiting = state.segments_waiting()
    last = f"last archived {state.last_archived_wal} {_at(state.last_archived_time, state.now)}"
    if waiting is None:
        backlog = "what waits is not known (the last archived file names no segment)"
    else:
        backlog = f"{waiting} complete segment(s) waiting" if waiting else "nothing waiting to be archived"
    if lag > settings.max_archive_lag_seconds:
        return CheckResult(
            NAME,
            "critical",
            f"archiving lags: {backlog}, nothing archived for {humanize_duration(lag)} (over "
            f"{humanize_duration(settings.max_archive_lag_seconds)}, pitr.max_archive_lag_seconds); "
            f"{last}: P2 WalArchiveLagging",
            [item],
            LAGGING,
            LAGGING.runbook,
        )
    waited = f" for {humanize_duration(lag)}" if lag else ""
    return CheckResult(NAME, "ok", f"{backlog}{waited}; {last}; {timeout}", [item])


def metrics(results: list[CheckResult]) -> list[Metric]:
    """``stellar_pitr_archive_failing`` and ``stellar_pitr_archive_lag_seconds``, from the check's
    result when archive_mode is on (nothing when it is off, in recovery, or not checked)."""
    found = [r for r in results if r.name == NAME and r.items]
    if not found:
        return []
    item = found[0].items[0]
    if item.get("archive_mode") in (None, "off") or item.get("in_recovery"):
        return []
    out = [
        Metric(
            "stellar_pitr_archive_failing",
            1.0 if item.get("failing") else 0.0,
            "1 when WAL archiving's last failure is newer than its last success (pg_stat_archiver)",
        )
    ]
    if item.get("lag_seconds") is not None:
        out.append(
            Metric(
                "stellar_pitr_archive_lag_seconds",
                float(item["lag_seconds"]),
                "Seconds complete WAL has waited to be archived (0 when none waits)",
            )
        )
    return out
