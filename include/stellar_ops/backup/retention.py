"""Backup retention: which backups to delete, decided purely, then applied with every key logged.

Rules, relative to the reference: the snapshot time of the backup the run has just taken (so a
re-run of the step decides the same way):

- a backup is eligible when it is older than ``retention_days``;
- the newest ``min_keep`` restorable backups (verified, or legacy ``.sql.gz``) are always kept,
  whatever their age, so retention can never delete the last good backups;
- backups newer than the reference are never touched (another run's, taken meanwhile);
- the old scripts' legacy backups (under the prefix or the legacy prefix) count towards
  ``min_keep`` but are never deleted, unless ``retention.include_legacy`` is set;
- a backup's sidecars (manifest, DR report) go with it; orphaned sidecars and uploads that never
  finished (older than ``stale_upload_hours``) are cleaned up too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stellar_ops.backup.config import BackupConfig
from stellar_ops.catalogue.inventory import BackupEntry, Listing, list_backups
from stellar_ops.catalogue.keys import BASENAME, MANIFEST_SUFFIX, parse_timestamp
from stellar_ops.core.errors import BackupError
from stellar_ops.storage.s3 import S3Store

log = logging.getLogger(__name__)


@dataclass
class RetentionPlan:
    keep: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    abort_uploads: list[tuple[str, str]] = field(default_factory=list)


def plan_s3(
    listing: Listing,
    *,
    reference: datetime,
    retention_days: int,
    min_keep: int,
    stale_before: datetime,
    unfinished_uploads: list[dict[str, object]] | None = None,
    include_legacy: bool = False,
) -> RetentionPlan:
    plan = RetentionPlan()
    cutoff = reference - timedelta(days=retention_days)
    restorable = [e for e in listing.backups if e.restorable and e.name.timestamp <= reference]
    protected = {e.key for e in sorted(restorable, key=lambda e: e.name, reverse=True)[:min_keep]}
    for entry in listing.backups:
        reason = _verdict(entry, reference, cutoff, protected, include_legacy)
        plan.reasons[entry.key] = reason
        if reason.startswith("delete"):
            plan.delete.append(entry.key)
            plan.delete.extend(entry.sidecars)
        else:
            plan.keep.append(entry.key)
    for orphan in listing.orphan_sidecars:
        if orphan.last_modified < stale_before:
            plan.delete.append(orphan.key)
            plan.reasons[orphan.key] = "delete: sidecar without its backup"
    for upload in listing.incoming:
        if upload.last_modified < stale_before:
            plan.delete.append(upload.key)
            plan.reasons[upload.key] = "delete: upload that was never published"
    for unfinished in unfinished_uploads or []:
        initiated = unfinished.get("Initiated")
        if isinstance(initiated, datetime) and initiated < stale_before:
            plan.abort_uploads.append((str(unfinished["Key"]), str(unfinished["UploadId"])))
    return plan


def _verdict(
    entry: BackupEntry, reference: datetime, cutoff: datetime, protected: set[str], include_legacy: bool
) -> str:
    if entry.name.timestamp > reference:
        return "keep: newer than this run's backup"
    if entry.key in protected:
        return "keep: among the newest restorable backups (min_keep)"
    if entry.name.timestamp >= cutoff:
        return "keep: within retention_days"
    if entry.state == "legacy" and not include_legacy:
        return "keep: a legacy backup of the old scripts (retention.include_legacy is off)"
    return f"delete: {entry.state} backup older than the retention cutoff {cutoff.isoformat()}"


def apply_s3(
    store: S3Store, plan: RetentionPlan, *, dry_run: bool, say: Callable[[str], None] = log.info
) -> None:
    verb = "would delete" if dry_run else "deleting"
    for key in plan.delete:
        say(f"{verb} {store.url(key)} ({plan.reasons.get(key, 'sidecar of a deleted backup')})")
        if not dry_run:
            store.delete(key)
    for key, upload_id in plan.abort_uploads:
        say(f"{'would abort' if dry_run else 'aborting'} unfinished upload {upload_id} of {store.url(key)}")
        if not dry_run:
            store.abort_upload(key, upload_id)
    say(
        f"retention: keeping {len(plan.keep)} backups; {len(plan.delete)} objects {'to delete (dry run)' if dry_run else 'deleted'}"
    )


def require_this_run_verified(store: S3Store, key: str) -> None:
    """Retention runs only after this run's backup exists and is verified."""
    if not (store.exists(key) and store.exists(key + MANIFEST_SUFFIX)):
        raise BackupError(
            f"refusing to apply retention: this run's backup {store.url(key)} is missing or unverified"
        )


_LOCAL = re.compile(rf"^{BASENAME}_(?P<ts>[0-9TZ_\-]+)\.(dump\.zst|sql\.gz)(?P<partial>\.partial-.+)?$")


def plan_local(
    directory: Path, *, reference: datetime, retention_days: int, stale_before: datetime
) -> list[Path]:
    """Local copies older than ``retention_days`` (the newest one is always kept) and stale partials."""
    if not directory.is_dir():
        return []
    cutoff = reference - timedelta(days=retention_days)
    dated: list[tuple[datetime, Path]] = []
    doomed: list[Path] = []
    for path in directory.iterdir():
        match = _LOCAL.match(path.name)
        if not match or not path.is_file():
            continue
        if match["partial"]:
            if datetime.fromtimestamp(path.stat().st_mtime, tz=reference.tzinfo) < stale_before:
                doomed.append(path)
            continue
        timestamp = parse_timestamp(match["ts"])
        if timestamp is not None:
            dated.append((timestamp, path))
    dated.sort(reverse=True)
    doomed.extend(path for ts, path in dated[1:] if ts < cutoff)
    return sorted(doomed)


def apply_local(paths: list[Path], *, dry_run: bool, say: Callable[[str], None] = log.info) -> None:
    for path in paths:
        say(f"{'would delete' if dry_run else 'deleting'} local copy {path}")
        if not dry_run:
            path.unlink(missing_ok=True)


@dataclass(frozen=True)
class RetentionOutcome:
    kept: list[str]
    deleted: list[str]
    local_deleted: list[str]
    dry_run: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "kept": self.kept,
            "deleted": self.deleted,
            "local_deleted": self.local_deleted,
        }


def apply_policy(
    store: S3Store,
    config: BackupConfig,
    *,
    include_legacy: bool = False,
    reference: datetime,
    dry_run: bool,
    say: Callable[[str], None] = log.info,
) -> RetentionOutcome:
    """The whole policy of ``config`` for a run whose backup was taken at ``reference``: S3, then
    local copies."""
    stale_before = datetime.now(UTC) - timedelta(hours=config.stale_upload_hours)
    plan = plan_s3(
        list_backups(store, config.prefix, config.legacy_prefix),
        reference=reference,
        retention_days=config.retention_days,
        min_keep=config.min_keep,
        stale_before=stale_before,
        unfinished_uploads=store.unfinished_uploads(config.prefix),
        include_legacy=include_legacy,
    )
    apply_s3(store, plan, dry_run=dry_run, say=say)
    doomed: list[Path] = []
    if config.local_dir:
        doomed = plan_local(
            Path(config.local_dir),
            reference=reference,
            retention_days=config.local_retention_days,
            stale_before=stale_before,
        )
        apply_local(doomed, dry_run=dry_run, say=say)
    return RetentionOutcome(plan.keep, plan.delete, [str(p) for p in doomed], dry_run)
