"""The base backup procedure's steps, defined once.

``db_base_backup`` runs one step per task (the task ids are the step names) and ``stellar-ops pitr``
runs them in order, with the same :class:`~stellar_ops.runtime.Runtime`. ``pitr`` is a shared
package (the DR drill and the restore use its recovery): it states what it uses of a runtime as a
protocol, :class:`PitrRuntime`, instead of importing the runtime above it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from stellar_ops.core import alerts
from stellar_ops.core.durations import humanize_duration
from stellar_ops.core.errors import BackupError, StellarOpsError, VerificationError
from stellar_ops.core.metrics import Metric
from stellar_ops.core.taxonomy import Severity
from stellar_ops.pitr import layout
from stellar_ops.pitr.base_backup import UploadOptions, check_server, take_base_backup
from stellar_ops.pitr.catalog import Window, window
from stellar_ops.pitr.layout import BaseBackupRecord
from stellar_ops.pitr.retention import PitrRetentionPlan
from stellar_ops.pitr.retention import apply_retention as apply_pitr_retention
from stellar_ops.postgres.binaries import PgBinaries
from stellar_ops.postgres.pitr import PitrConfig
from stellar_ops.postgres.target import PgTarget, connect
from stellar_ops.storage.compression import decompress
from stellar_ops.storage.s3 import S3Store

DAG_ID = "db_base_backup"


class UploadSettings(Protocol):
    """What base backups share with db_backup's ``backup`` section: the bucket's upload settings."""

    @property
    def part_size_mb(self) -> int: ...
    @property
    def max_parts_in_flight(self) -> int: ...
    @property
    def compression_threads(self) -> int: ...
    @property
    def progress_interval_seconds(self) -> float: ...
    @property
    def notify_on_success(self) -> bool: ...


class PitrSections(Protocol):
    """The sections db_base_backup reads: ``pitr``, and ``backup`` (bucket, encryption, upload)."""

    @property
    def pitr(self) -> PitrConfig: ...
    @property
    def backup(self) -> UploadSettings: ...


class PitrRuntime(Protocol):
    """What the steps use of :class:`stellar_ops.runtime.Runtime`."""

    @property
    def say(self) -> Callable[[str], None]: ...
    @property
    def warn(self) -> Callable[[str], None]: ...
    @property
    def config(self) -> PitrSections: ...
    @property
    def binaries(self) -> PgBinaries: ...
    def database(self) -> PgTarget: ...
    def store(self) -> S3Store: ...
    def notify(self, payload: dict[str, Any], severity: Severity | None = None) -> None: ...
    def publish_metrics(
        self, procedure: str, points: list[Metric], grouping: dict[str, str] | None = None
    ) -> None: ...


def check_prerequisites(rt: PitrRuntime) -> dict[str, Any]:
    """The server archives its WAL, has no other tablespace, the role may replicate, pg_basebackup is
    new enough; the bucket exists and is writable."""
    target = rt.database()
    facts = check_server(target, rt.binaries)
    store = rt.store()
    store.check_bucket()
    pitr = rt.config.pitr
    store.check_writable(f"{layout.base_root(pitr.prefix, pitr.server_name)}.write-probe-{os.getpid()}")
    rt.say(
        f"PostgreSQL {facts.version} at {target.describe()} archives its WAL; base backups go to "
        f"{store.url(layout.base_root(pitr.prefix, pitr.server_name))}"
    )
    return {"server_version": facts.version, "server_version_num": facts.version_num}


def take(rt: PitrRuntime) -> BaseBackupRecord:
    backup = rt.config.backup
    options = UploadOptions(
        part_size_mb=backup.part_size_mb,
        max_parts_in_flight=backup.max_parts_in_flight,
        compression_threads=backup.compression_threads,
        progress_interval_seconds=backup.progress_interval_seconds,
    )
    return take_base_backup(
        rt.database(), rt.store(), rt.config.pitr, binaries=rt.binaries, options=options, say=rt.say
    )


def load_record(rt: PitrRuntime, backup_id: str) -> BaseBackupRecord:
    pitr = rt.config.pitr
    store = rt.store()
    key = layout.record_key(pitr.prefix, pitr.server_name, backup_id)
    if not store.exists(key):
        raise BackupError(f"{store.url(key)} is missing: base backup {backup_id} is not complete")
    return BaseBackupRecord.from_json(store.get_json(key), source=store.url(key))


def verify(rt: PitrRuntime, backup_id: str) -> dict[str, Any]:
    """Read the stored tar back whole: its size and sha256 are the record's, it decompresses to the
    record's raw size and ends as a tar ends."""
    record = load_record(rt, backup_id)
    pitr = rt.config.pitr
    store = rt.store()
    key = layout.tar_key(pitr.prefix, pitr.server_name, backup_id)
    source = store.url(key)
    digest = hashlib.sha256()
    stored = 0

    def chunks() -> Any:
        nonlocal stored
        for chunk in store.iter_chunks(key):
            stored += len(chunk)
            digest.update(chunk)
            yield chunk

    raw = 0
    tail = b""
    for piece in decompress(chunks(), "custom", source=source):
        raw += len(piece)
        tail = (tail + piece[-1024:])[-1024:]
    if stored != record.stored_bytes or digest.hexdigest() != record.sha256:
        raise VerificationError(
            f"{source} holds {stored} bytes with sha256 {digest.hexdigest()}, its backup.json says "
            f"{record.stored_bytes} bytes with sha256 {record.sha256}"
        )
    if raw != record.raw_bytes or tail != bytes(1024):
        raise VerificationError(
            f"{source} decompresses to {raw} bytes, not a whole tar of {record.raw_bytes}"
        )
    rt.say(f"verified {source}: {stored} bytes, sha256 {record.sha256}, a whole tar of {raw} bytes")
    return {"backup_id": backup_id, "checks": ["size", "sha256", "zstd", "tar end"], "stored_bytes": stored}


def apply_retention(rt: PitrRuntime, *, dry_run: bool) -> PitrRetentionPlan:
    return apply_pitr_retention(rt.store(), rt.config.pitr, dry_run=dry_run, say=rt.say)


def last_archived_time(rt: PitrRuntime) -> datetime | None:
    """``pg_stat_archiver.last_archived_time``; None when the server cannot be asked."""
    try:
        with connect(rt.database()) as conn:
            value = conn.execute("SELECT last_archived_time FROM pg_stat_archiver").fetchone()[0]
    except StellarOpsError as exc:
        rt.warn(f"pg_stat_archiver cannot be read ({exc}): the window ends at the newest archived segment")
        return None
    return value if isinstance(value, datetime) else None


def current_window(rt: PitrRuntime) -> Window:
    pitr = rt.config.pitr
    found = window(rt.store(), pitr.prefix, pitr.server_name, last_archived_time(rt))
    rt.say(
        f"recoverable window: {found.oldest.isoformat() if found.oldest else '-'} to "
        f"{found.newest.isoformat() if found.newest else '-'} ({humanize_duration(found.seconds)}, "
        f"{found.base_backups} base backup(s))"
    )
    return found


def metrics_of(record: BaseBackupRecord | None, found: Window | None, duration: float | None) -> list[Metric]:
    """``stellar_pitr_*`` of a run: the base backup's success, size and time, and the window."""
    points = [
        Metric(
            "stellar_pitr_base_backup_success", 1.0 if record else 0.0, "1 if the last base backup succeeded"
        )
    ]
    if record is not None:
        points += [
            Metric(
                "stellar_pitr_base_backup_last_success_timestamp_seconds",
                record.stop_time.astimezone(UTC).timestamp(),
                "Unix time the last successful base backup stopped",
            ),
            Metric(
                "stellar_pitr_base_backup_size_bytes",
                float(record.stored_bytes),
                "Stored size of the last base backup",
            ),
        ]
        if duration is not None:
            points.append(
                Metric(
                    "stellar_pitr_base_backup_duration_seconds", duration, "Duration of the last base backup"
                )
            )
    if found is not None:
        points.append(
            Metric(
                "stellar_pitr_window_seconds",
                found.seconds,
                "Span of point-in-time recovery: oldest complete base backup's stop to the newest archived WAL",
            )
        )
    return points


def publish_metrics(
    rt: PitrRuntime, record: BaseBackupRecord | None, duration: float | None = None
) -> list[Metric]:
    found: Window | None
    try:
        found = current_window(rt)
    except StellarOpsError as exc:
        rt.warn(f"the window cannot be computed: {exc}")
        found = None
    points = metrics_of(record, found, duration)
    rt.publish_metrics(DAG_ID, points)
    return points


def success_message(record: BaseBackupRecord, url: str) -> dict[str, Any]:
    return alerts.info_message(
        f":white_check_mark: Base backup OK: {url} ({alerts.human_bytes(record.stored_bytes)}), "
        f"recoverable from {record.stop_time.isoformat()}"
    )


def notify_success(rt: PitrRuntime, record: BaseBackupRecord) -> None:
    if not rt.config.backup.notify_on_success:
        rt.say("success notifications are off (backup.notify_on_success)")
        return
    pitr = rt.config.pitr
    rt.notify(
        success_message(
            record, rt.store().url(layout.tar_key(pitr.prefix, pitr.server_name, record.backup_id))
        )
    )


def record_summary(record: BaseBackupRecord) -> dict[str, Any]:
    """What XCom carries of a base backup: its record, a few hundred bytes."""
    return record.to_json()
