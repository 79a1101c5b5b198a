"""Backup manifests as tests publish them beside objects they put in S3."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any


def manifest_document(
    key: str, *, finished_at: datetime, size_bytes: int, snapshot_at: datetime | None = None
) -> dict[str, Any]:
    """A valid manifest for a backup at ``key``: format 3 with its snapshot's time, else format 2."""
    return {
        "format_version": 2 if snapshot_at is None else 3,
        **({} if snapshot_at is None else {"snapshot_at": snapshot_at.isoformat()}),
        "key": key,
        "bucket": "stellar-backups",
        "slot": finished_at.isoformat(),
        "database": "stellar_escrow",
        "server_version": "15.8",
        "server_version_num": 150008,
        "pg_dump_version": "pg_dump (PostgreSQL) 15.8",
        "dump_format": "custom",
        "compression": "zstd",
        "compression_level": 2,
        "encryption": "AES256",
        "started_at": (finished_at - timedelta(minutes=3)).isoformat(),
        "finished_at": finished_at.isoformat(),
        "duration_seconds": 180.0,
        "dag_run_id": "scheduled__test",
        "size_bytes": size_bytes,
        "sha256": "ab" * 32,
        "uncompressed_bytes": size_bytes * 4,
        "snapshot": None,
        "row_counts": {"public.trades": 10},
        "schema": {},
        "schema_fingerprint": "0" * 16,
    }


def publish_verified_backup(stack: Any, prefix: str, *, age: timedelta) -> str:
    """A small verified backup ``age`` old under ``prefix``, with a passed DR report; its key."""
    from stellar_ops.catalogue.keys import backup_key
    from stellar_ops.storage.s3 import S3Store

    store = S3Store(stack.s3_client(), "stellar-backups", encryption="AES256")
    finished = datetime.now(UTC) - age
    key = backup_key(prefix, finished.replace(microsecond=0), "custom")
    store.put_bytes(key, b"\0" * 1024)
    store.put_json(key + ".manifest.json", manifest_document(key, finished_at=finished, size_bytes=1024))
    store.put_json(
        key + ".dr_report.json",
        {"success": True, "checks": [], "failed_steps": [], "finished_at": datetime.now(UTC).isoformat()},
    )
    return key
