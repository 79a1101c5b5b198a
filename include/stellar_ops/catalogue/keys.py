"""Backup object names: ``<prefix>stellar_escrow_<YYYYmmddTHHMMSSZ>.<ext>`` and their sidecars.

The timestamp says when the data is from: the time of the dump's snapshot (UTC, to the second),
never the run's slot, so a backfill of a past slot is named by the moment it was taken. The run's
slot is recorded in the manifest instead. Legacy ``stellar_escrow_<TS>.sql.gz`` objects of the
old scripts (several timestamp spellings) are recognised too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

# re-exported: the catalogue names each format's objects
from stellar_ops.storage.compression import DumpFormat as DumpFormat

BASENAME = "stellar_escrow"
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
EXTENSIONS: dict[DumpFormat, str] = {"custom": "dump.zst", "plain": "sql.gz"}
MANIFEST_SUFFIX = ".manifest.json"
DR_REPORT_SUFFIX = ".dr_report.json"
GLOBALS_SUFFIX = ".globals.sql"  # the roles, their memberships and settings (pg_dumpall --globals-only)
RESTORE_REPORT_SUFFIX = ".restore_report.json"
SIDECAR_SUFFIXES = (MANIFEST_SUFFIX, DR_REPORT_SUFFIX, GLOBALS_SUFFIX, RESTORE_REPORT_SUFFIX)
# Where earlier versions staged a forced re-run's upload before copying it over the slot's backup.
# Nothing is staged any more (every backup has a key of its own); leftovers there are listed as
# unfinished uploads and removed by retention, and the bucket's write probe goes there too.
INCOMING_DIR = ".incoming/"

# Timestamp spellings: ours first, then what the old cron scripts wrote.
_TS_PATTERNS = (
    (re.compile(r"\d{8}T\d{6}Z"), TIMESTAMP_FORMAT),
    (re.compile(r"\d{8}_\d{6}"), "%Y%m%d_%H%M%S"),
    (re.compile(r"\d{14}"), "%Y%m%d%H%M%S"),
    (re.compile(r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}"), "%Y-%m-%d_%H-%M-%S"),
    (re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z?"), "%Y-%m-%dT%H-%M-%S"),
    (re.compile(r"\d{8}"), "%Y%m%d"),
)
_NAME = re.compile(rf"^{BASENAME}_(?P<ts>[0-9TZ_\-]+)\.(?P<ext>dump\.zst|sql\.gz)$")


@dataclass(frozen=True, order=True)
class BackupName:
    """A parsed backup object name."""

    timestamp: datetime
    key: str
    dump_format: DumpFormat

    @property
    def manifest_key(self) -> str:
        return self.key + MANIFEST_SUFFIX

    @property
    def dr_report_key(self) -> str:
        return self.key + DR_REPORT_SUFFIX

    @property
    def globals_key(self) -> str:
        return self.key + GLOBALS_SUFFIX

    @property
    def filename(self) -> str:
        return self.key.rsplit("/", 1)[-1]


def key_timestamp(moment: datetime) -> str:
    """``moment`` as a key's timestamp: UTC, to the second (the fraction is cut, never rounded up)."""
    if moment.tzinfo is None:
        raise ValueError(f"time {moment!r} must be timezone-aware")
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def backup_key(prefix: str, snapshot_at: datetime, dump_format: DumpFormat) -> str:
    """The key of a backup whose dump's snapshot was taken at ``snapshot_at``."""
    return f"{prefix}{BASENAME}_{key_timestamp(snapshot_at)}.{EXTENSIONS[dump_format]}"


def parse_timestamp(text: str) -> datetime | None:
    for pattern, fmt in _TS_PATTERNS:
        if pattern.fullmatch(text):
            try:
                return datetime.strptime(text.rstrip("Z"), fmt.rstrip("Z")).replace(tzinfo=UTC)
            except ValueError:
                return None
    return None


def parse_backup_key(key: str, prefix: str) -> BackupName | None:
    """The backup named by ``key`` directly under ``prefix``; None for sidecars and other objects."""
    if not key.startswith(prefix):
        return None
    name = key[len(prefix) :]
    if "/" in name:
        return None
    match = _NAME.match(name)
    if not match:
        return None
    timestamp = parse_timestamp(match["ts"])
    if timestamp is None:
        return None
    dump_format: DumpFormat = "custom" if match["ext"] == "dump.zst" else "plain"
    return BackupName(timestamp=timestamp, key=key, dump_format=dump_format)


def format_of_path(path: str) -> DumpFormat:
    """The dump format of a file or key, from its extension."""
    if path.endswith(".dump.zst"):
        return "custom"
    if path.endswith(".sql.gz"):
        return "plain"
    raise ValueError(f"{path!r} is neither a .dump.zst nor a .sql.gz backup")
