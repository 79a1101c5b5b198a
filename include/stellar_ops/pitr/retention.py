"""Retention of the point-in-time archive: base backups by age and count, and the WAL only they need.

Decided purely (:func:`plan`), then applied with every key logged (:func:`apply`):

- a complete base backup is kept when it is among the newest ``pitr.base_backup_min_count`` (never
  fewer than one: the only base backup is never deleted), or younger than
  ``pitr.base_backup_keep_days``; the others are deleted, ``backup.json`` first so that a
  half-deleted one is never listed as restorable;
- WAL is kept from the oldest kept base backup's ``start_wal`` on: a segment (``.partial``,
  ``.backup``) positioned before it, by (log, seg) whatever its timeline, is one no kept base backup
  can replay and is deleted; ``.history`` files are always kept (a recovery follows timelines by
  them). With no complete base backup, no WAL is deleted;
- a base backup without its ``backup.json`` (a failed upload) older than
  ``pitr.unfinished_base_backup_hours`` is deleted, and its multipart uploads aborted; one whose
  ``backup.json`` cannot be read is reported and left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from stellar_ops.core.errors import BackupError
from stellar_ops.pitr import layout
from stellar_ops.pitr.catalog import BaseBackups, list_base_backups, list_wal
from stellar_ops.pitr.layout import BaseBackupRecord, WalFile
from stellar_ops.postgres.pitr import PitrConfig
from stellar_ops.storage.s3 import S3Store, describe_error

log = logging.getLogger(__name__)

DELETE_BATCH = 1000  # S3's DeleteObjects limit


@dataclass
class PitrRetentionPlan:
    kept_backups: list[str] = field(default_factory=list)  # backup ids
    deleted_backups: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # backup id -> why
    delete_keys: list[str] = field(default_factory=list)  # every key to delete, records before tars
    abort_uploads: list[tuple[str, str]] = field(default_factory=list)
    wal_kept_from: str | None = None  # the oldest kept base backup's start_wal
    wal_deleted: int = 0
    wal_kept: int = 0
    unreadable: list[str] = field(default_factory=list)

    def as_dict(self, *, dry_run: bool, shown: int | None = None) -> dict[str, Any]:
        keys = self.delete_keys if shown is None else self.delete_keys[:shown]
        return {
            "dry_run": dry_run,
            "kept_backups": self.kept_backups,
            "deleted_backups": self.deleted_backups,
            "reasons": self.reasons,
            "wal_kept_from": self.wal_kept_from,
            "wal_deleted": self.wal_deleted,
            "wal_kept": self.wal_kept,
            "deleted_keys": keys,
            "deleted_keys_count": len(self.delete_keys),
            "aborted_uploads": [key for key, _upload in self.abort_uploads],
            "unreadable": self.unreadable,
        }


def plan(
    backups: BaseBackups,
    wal: list[WalFile],
    *,
    now: datetime,
    keep_days: int,
    min_count: int,
    unfinished_hours: float,
    prefix: str,
    server: str,
    unfinished_uploads: list[dict[str, Any]] | None = None,
) -> PitrRetentionPlan:
    """What to keep and delete; pure. ``backups.complete`` and ``wal`` as the catalogue lists them."""
    result = PitrRetentionPlan(unreadable=list(backups.unreadable))
    min_count = max(1, min_count)  # never the only one: whatever the configuration says
    cutoff = now - timedelta(days=keep_days)
    newest_first = sorted(backups.complete, key=lambda r: (r.stop_time, r.backup_id), reverse=True)
    kept: list[BaseBackupRecord] = []
    for rank, record in enumerate(newest_first):
        if rank < min_count:
            why = f"keep: among the newest {min_count}"
        elif record.stop_time > now:
            why = "keep: newer than this run"
        elif record.stop_time >= cutoff:
            why = f"keep: younger than {keep_days} days"
        else:
            why = f"delete: older than {keep_days} days and {min_count} newer ones are kept"
        result.reasons[record.backup_id] = why
        if why.startswith("keep"):
            kept.append(record)
            result.kept_backups.append(record.backup_id)
        else:
            result.deleted_backups.append(record.backup_id)
            record_key = layout.record_key(prefix, server, record.backup_id)
            # the record first: a deletion cut short leaves an unfinished backup, never a broken complete one
            others = [k for k in backups.keys.get(record.backup_id, []) if k != record_key]
            result.delete_keys += [record_key, *others]
    stale_before = now - timedelta(hours=unfinished_hours)
    for unfinished in backups.unfinished:
        if unfinished.last_modified < stale_before:
            result.reasons[unfinished.backup_id] = "delete: unfinished (no backup.json)"
            result.delete_keys += list(unfinished.keys)
        else:
            result.reasons[unfinished.backup_id] = "keep: unfinished, may still be uploading"
    for upload in unfinished_uploads or []:
        initiated = upload.get("Initiated")
        if isinstance(initiated, datetime) and initiated < stale_before:
            result.abort_uploads.append((str(upload["Key"]), str(upload["UploadId"])))
    if kept:
        oldest = min(kept, key=lambda r: r.start_position)
        result.wal_kept_from = oldest.start_wal
        floor = oldest.start_position
        for item in wal:
            if item.kind != "history" and item.position is not None and item.position < floor:
                result.delete_keys.append(item.key)
                result.wal_deleted += 1
            else:
                result.wal_kept += 1
    else:
        result.wal_kept = len(wal)
    return result


def apply_retention(
    store: S3Store,
    config: PitrConfig,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    say: Callable[[str], None] = log.info,
) -> PitrRetentionPlan:
    """Plan from the bucket's listing and, unless ``dry_run``, delete; every key deleted is logged."""
    now = now or datetime.now(UTC)
    backups = list_base_backups(store, config.prefix, config.server_name, say=say)
    wal = list_wal(store, config.prefix, config.server_name)
    uploads = store.unfinished_uploads(layout.base_root(config.prefix, config.server_name))
    decided = plan(
        backups,
        wal,
        now=now,
        keep_days=config.base_backup_keep_days,
        min_count=config.base_backup_min_count,
        unfinished_hours=config.unfinished_base_backup_hours,
        prefix=config.prefix,
        server=config.server_name,
        unfinished_uploads=uploads,
    )
    verb = "would delete" if dry_run else "deleting"
    for backup_id, why in sorted(decided.reasons.items()):
        say(f"base backup {backup_id}: {why}")
    say(
        f"WAL: keeping {decided.wal_kept} file(s) from {decided.wal_kept_from or 'the start (no base backup)'}, "
        f"{verb} {decided.wal_deleted} older"
    )
    for key in decided.delete_keys:
        say(f"{verb} {store.url(key)}")
    if dry_run:
        return decided
    for key, upload_id in decided.abort_uploads:
        say(f"aborting the unfinished upload {upload_id} of {store.url(key)}")
        store.abort_upload(key, upload_id)
    # every record before any tar: one DeleteObjects call deletes its keys in no promised order
    records = [k for k in decided.delete_keys if k.endswith(f"/{layout.RECORD_NAME}")]
    delete_keys(store, records)
    first = set(records)
    delete_keys(store, [k for k in decided.delete_keys if k not in first])
    return decided


def delete_keys(store: S3Store, keys: list[str]) -> None:
    """Delete ``keys`` in order, in batches; :class:`BackupError` naming the first key refused."""
    for start in range(0, len(keys), DELETE_BATCH):
        batch = keys[start : start + DELETE_BATCH]
        try:
            response = store.client.delete_objects(
                Bucket=store.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
        except Exception as exc:
            raise BackupError(
                f"S3 delete of {len(batch)} objects from {store.url(batch[0])} failed: {describe_error(exc)}"
            ) from None
        errors = response.get("Errors") or []
        if errors:
            first = errors[0]
            raise BackupError(
                f"S3 refused to delete {len(errors)} object(s), the first {store.url(str(first.get('Key')))}: "
                f"{first.get('Code')}: {first.get('Message')}"
            )
