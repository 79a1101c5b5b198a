"""What the archive holds: complete base backups (by their ``backup.json``), unfinished ones, the
archived WAL, and the window of point-in-time recovery they give."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from stellar_ops.core.errors import BackupError
from stellar_ops.pitr import layout
from stellar_ops.pitr.layout import BaseBackupRecord, WalFile
from stellar_ops.storage.s3 import ObjectInfo, S3Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Unfinished:
    """A base backup directory without its ``backup.json``: an upload that failed or is running."""

    backup_id: str
    keys: tuple[str, ...]
    last_modified: datetime


@dataclass
class BaseBackups:
    complete: list[BaseBackupRecord] = field(default_factory=list)  # oldest first
    unfinished: list[Unfinished] = field(default_factory=list)
    keys: dict[str, list[str]] = field(default_factory=dict)  # backup_id -> every key under it
    unreadable: list[str] = field(default_factory=list)  # backup.json keys that cannot be read


def list_base_backups(
    store: S3Store, prefix: str, server: str, say: Callable[[str], None] = log.info
) -> BaseBackups:
    """Every base backup under ``<prefix>/<server>/base/``. One whose ``backup.json`` is missing is
    unfinished and never listed as complete; one whose ``backup.json`` cannot be read is reported
    (and neither used nor deleted)."""
    grouped: dict[str, list[ObjectInfo]] = {}
    for item in store.list_objects(layout.base_root(prefix, server)):
        backup_id = layout.backup_id_of_key(item.key, prefix, server)
        if backup_id is not None:
            grouped.setdefault(backup_id, []).append(item)
    found = BaseBackups()
    for backup_id in sorted(grouped):
        items = grouped[backup_id]
        found.keys[backup_id] = sorted(i.key for i in items)
        record_key = layout.record_key(prefix, server, backup_id)
        if not any(i.key == record_key for i in items):
            found.unfinished.append(
                Unfinished(
                    backup_id, tuple(sorted(i.key for i in items)), max(i.last_modified for i in items)
                )
            )
            continue
        try:
            record = BaseBackupRecord.from_json(store.get_json(record_key), source=store.url(record_key))
        except BackupError as exc:
            say(f"skipping base backup {backup_id}: {exc}")
            found.unreadable.append(record_key)
            continue
        found.complete.append(record)
    found.complete.sort(key=lambda r: (r.stop_time, r.backup_id))
    return found


def complete_base_backups(store: S3Store, prefix: str, server: str) -> list[BaseBackupRecord]:
    """The complete base backups, oldest first."""
    return list_base_backups(store, prefix, server).complete


def list_wal(store: S3Store, prefix: str, server: str) -> list[WalFile]:
    """The archive's WAL files (segments, .partial, .backup, .history), in WAL order."""
    files = []
    for item in store.list_objects(layout.wal_root(prefix, server)):
        parsed = layout.parse_wal_key(item.key, item.size, item.last_modified)
        if parsed is not None:
            files.append(parsed)
    return sorted(files, key=_wal_order)


def _wal_order(wal: WalFile) -> tuple[int, int, int, str]:
    if wal.segment is None:
        return (-1, wal.timeline, 0, wal.name)
    return (wal.segment.log, wal.segment.seg, wal.timeline, wal.name)


@dataclass(frozen=True)
class Window:
    """The span point-in-time recovery reaches: from the oldest complete base backup's stop to the
    newest archived WAL. ``oldest``/``newest`` are None when there is nothing to recover from."""

    oldest: datetime | None
    newest: datetime | None
    base_backups: int
    newest_wal: str | None

    @property
    def seconds(self) -> float:
        if self.oldest is None or self.newest is None:
            return 0.0
        return max(0.0, (self.newest - self.oldest).total_seconds())

    def as_dict(self) -> dict[str, object]:
        return {
            "oldest": self.oldest.isoformat() if self.oldest else None,
            "newest": self.newest.isoformat() if self.newest else None,
            "seconds": self.seconds,
            "base_backups": self.base_backups,
            "newest_wal": self.newest_wal,
        }


def window_of(
    records: list[BaseBackupRecord], wal: list[WalFile], last_archived_time: datetime | None = None
) -> Window:
    """The window from what is listed. The newest point is ``last_archived_time`` (the server's
    ``pg_stat_archiver``) when given, else the newest archived segment's LastModified."""
    segments = [w for w in wal if w.kind in ("segment", "partial") and w.last_modified is not None]
    newest_segment = max(segments, key=lambda w: (w.position, w.timeline), default=None)
    if not records:
        return Window(None, None, 0, newest_segment.name if newest_segment else None)
    oldest = min(r.stop_time for r in records)
    newest = last_archived_time
    if newest is None and newest_segment is not None:
        newest = newest_segment.last_modified
    if newest is not None and newest < oldest:
        newest = oldest
    return Window(oldest, newest, len(records), newest_segment.name if newest_segment else None)


def window(store: S3Store, prefix: str, server: str, last_archived_time: datetime | None = None) -> Window:
    return window_of(
        complete_base_backups(store, prefix, server), list_wal(store, prefix, server), last_archived_time
    )
