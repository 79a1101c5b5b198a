"""What a backup run reports, whoever ran it: its summary, its metrics and its success message."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from stellar_ops.catalogue.keys import MANIFEST_SUFFIX
from stellar_ops.catalogue.manifest import Manifest
from stellar_ops.core import alerts
from stellar_ops.core.durations import humanize_duration
from stellar_ops.core.metrics import Metric


@dataclass(frozen=True)
class Published:
    """A published backup, small enough for XCom and an Asset event."""

    key: str
    manifest_key: str
    bucket: str
    size_bytes: int
    sha256: str
    duration_seconds: float
    finished_at: str
    slot: str
    dump_format: str
    snapshot_at: str | None = None  # when the data is from (None in what an earlier version published)
    note: str | None = None  # set when the run's slot was in the past

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> Published:
        return cls(
            key=manifest.key,
            manifest_key=manifest.key + MANIFEST_SUFFIX,
            bucket=manifest.bucket,
            size_bytes=manifest.size_bytes,
            sha256=manifest.sha256,
            duration_seconds=manifest.duration_seconds,
            finished_at=manifest.finished_at.isoformat(),
            slot=manifest.slot.isoformat(),
            dump_format=manifest.dump_format,
            snapshot_at=manifest.snapshot_time.isoformat(),
            note=manifest.note,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Published:
        return cls(**data)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def data_time(self) -> datetime:
        """When the backup's data is from: its snapshot's time (the slot for an earlier version's)."""
        return datetime.fromisoformat(self.snapshot_at or self.slot)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def asset_event_extra(self, manifest: Manifest) -> dict[str, Any]:
        """The ``stellar_escrow_backup`` Asset event's extra: this reference, and what the manifest
        says in a few numbers. Its per-table sections (row counts, sequences, schema) grow with the
        database and stay in the manifest, which ``manifest_key`` names."""
        return {
            **self.as_dict(),
            "server_version_num": manifest.server_version_num,
            "uncompressed_bytes": manifest.uncompressed_bytes,
            "schema_fingerprint": manifest.schema_fingerprint,
            "tables": len(manifest.row_counts),
            "rows": sum(manifest.row_counts.values()),
        }


def backup_metrics(published: Published | None) -> list[Metric]:
    """``stellar_backup_*`` for a run: success with its size and duration, or ``success=0``."""
    metrics = [Metric("stellar_backup_success", 1.0 if published else 0.0, "1 if the last backup succeeded")]
    if published is not None:
        metrics += [
            Metric(
                "stellar_backup_last_success_timestamp_seconds",
                datetime.fromisoformat(published.finished_at).astimezone(UTC).timestamp(),
                "Unix time the last successful backup finished",
            ),
            Metric(
                "stellar_backup_size_bytes", float(published.size_bytes), "Compressed size of the last backup"
            ),
            Metric(
                "stellar_backup_duration_seconds",
                published.duration_seconds,
                "Duration of the last backup's dump",
            ),
        ]
    return metrics


def success_message(published: Published) -> dict[str, Any]:
    text = (
        f":white_check_mark: Backup OK: {published.url} "
        f"({alerts.human_bytes(published.size_bytes)}, {humanize_duration(published.duration_seconds)})"
    )
    if published.note:
        text += f"\n:warning: {published.note}"
    return alerts.info_message(text)
