"""Where a DR test's backup comes from: which one to take, how to read it, whether it is intact.

``latest`` in a scheduled or backfilled run for month M is the newest restorable backup taken
before the end of M; a named key that does not exist fails with the nearest existing keys.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from stellar_ops.backups import verify
from stellar_ops.backups.inventory import Listing, find, list_backups, nearest_keys_hint
from stellar_ops.backups.keys import MANIFEST_SUFFIX, DumpFormat, format_of_path, parse_backup_key
from stellar_ops.backups.manifest import Manifest
from stellar_ops.core.errors import BackupNotFoundError
from stellar_ops.postgres.binaries import PgBinaries
from stellar_ops.storage.s3 import MIB, S3Store


@dataclass(frozen=True)
class ResolvedBackup:
    """Where the backup to test is; small and secret-free, so it travels through XCom."""

    source: Literal["s3", "local"]
    location: str
    dump_format: DumpFormat
    timestamp: str
    state: str

    @property
    def legacy(self) -> bool:
        return self.state == "legacy"

    @property
    def manifest_location(self) -> str:
        return self.location + MANIFEST_SUFFIX

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResolvedBackup:
        return cls(**data)


def month_end(moment: datetime) -> datetime:
    """The first instant of the month after ``moment``'s (UTC)."""
    moment = moment.astimezone(UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def resolve(
    store: S3Store | None, prefix: str, choice: str, *, reference: datetime, month_scoped: bool
) -> ResolvedBackup:
    """``choice`` is 'latest', an S3 key (or a file name under ``prefix``), or an absolute local path.

    'latest' in a scheduled or backfilled run for month M is the newest restorable backup taken
    before the end of M; in a manual run it is the newest restorable backup.
    """
    if choice.startswith("/"):
        return _resolve_local(Path(choice))
    if store is None:
        raise BackupNotFoundError("no S3 store is configured: give a local path to a backup")
    listing = list_backups(store, prefix)
    if choice == "latest":
        bound = month_end(reference) if month_scoped else None
        for entry in listing.backups:  # newest first
            if entry.restorable and (bound is None or entry.name.timestamp < bound):
                return _from_entry(entry.key, entry.name.dump_format, entry.name.timestamp, entry.state)
        scope = f" taken before {bound.isoformat()}" if bound else ""
        raise BackupNotFoundError(f"no restorable backup{scope} under s3://{store.bucket}/{prefix}")
    key = choice if choice.startswith(prefix) else prefix + choice
    entry = _find_key(listing, key)
    if not entry.restorable:
        raise BackupNotFoundError(
            f"backup {key!r} has no manifest and is not a legacy .sql.gz: its publication never finished"
        )
    return _from_entry(entry.key, entry.name.dump_format, entry.name.timestamp, entry.state)


def _find_key(listing: Listing, key: str) -> Any:
    try:
        return find(listing, key)
    except BackupNotFoundError:
        raise BackupNotFoundError(
            f"backup {key!r} does not exist; {nearest_keys_hint(listing, key)}"
        ) from None


def _from_entry(key: str, dump_format: DumpFormat, timestamp: datetime, state: str) -> ResolvedBackup:
    return ResolvedBackup("s3", key, dump_format, timestamp.isoformat(), state)


def _resolve_local(path: Path) -> ResolvedBackup:
    if not path.is_file():
        siblings = (
            sorted(p.name for p in path.parent.glob("stellar_escrow_*")) if path.parent.is_dir() else []
        )
        hint = f"; files there: {', '.join(siblings[-3:])}" if siblings else ""
        raise BackupNotFoundError(f"local backup {str(path)!r} does not exist{hint}")
    try:
        dump_format = format_of_path(path.name)
    except ValueError as exc:
        raise BackupNotFoundError(str(exc)) from None
    name = parse_backup_key(path.name, "")
    timestamp = name.timestamp if name else datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    has_manifest = Path(str(path) + MANIFEST_SUFFIX).is_file()
    state = "verified" if has_manifest else ("legacy" if dump_format == "plain" else "unverified")
    return ResolvedBackup("local", str(path), dump_format, timestamp.isoformat(), state)


def load_manifest(store: S3Store | None, backup: ResolvedBackup) -> Manifest | None:
    """The backup's manifest, or None for a legacy backup (which has none)."""
    if backup.state != "verified":
        return None
    if backup.source == "local":
        document = json.loads(Path(backup.manifest_location).read_text())
    else:
        assert store is not None
        document = store.get_json(backup.manifest_location)
    return Manifest.from_document(document, source=backup.manifest_location)


def file_chunks(path: str | Path) -> Iterator[bytes]:
    """A local file in 4 MiB chunks."""
    with open(path, "rb") as handle:
        while chunk := handle.read(4 * MIB):
            yield chunk


def read_chunks(store: S3Store | None, backup: ResolvedBackup) -> Iterator[bytes]:
    if backup.source == "local":
        yield from file_chunks(backup.location)
    else:
        assert store is not None
        yield from store.iter_chunks(backup.location)


def source_label(store: S3Store | None, backup: ResolvedBackup) -> str:
    return store.url(backup.location) if backup.source == "s3" and store else backup.location


def check_backup(
    store: S3Store | None, backup: ResolvedBackup, manifest: Manifest | None, binaries: PgBinaries
) -> dict[str, Any]:
    """Stream the backup once: size and sha256 against the manifest, frames, and the archive itself."""
    source = source_label(store, backup)
    result = verify.scan(read_chunks(store, backup), backup.dump_format, source=source, binaries=binaries)
    verify.judge(
        result,
        source=source,
        expected_size=manifest.size_bytes if manifest else None,
        expected_sha256=manifest.sha256 if manifest else None,
    )
    warnings = []
    if manifest is None:
        warnings.append(
            f"{source} is a legacy backup without a manifest: exact verification is impossible; only its gzip "
            "integrity and dump trailer were checked, and restore checks only that key tables have rows"
        )
    return {
        "size_bytes": result.size,
        "sha256": result.sha256,
        "uncompressed_bytes": result.uncompressed_bytes,
        "archive_entries": result.archive_entries,
        "warnings": warnings,
    }


def backup_time(backup: ResolvedBackup, manifest: Manifest | None) -> datetime:
    """When the backup's data is from: the dump's start (its snapshot), else the key's timestamp."""
    if manifest is not None:
        return manifest.started_at
    parsed = datetime.fromisoformat(backup.timestamp)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def verify_published(store: S3Store, listing: Listing, key: str, binaries: PgBinaries) -> dict[str, Any]:
    """``stellar-ops backups verify``: re-check one backup end to end against its manifest."""
    entry = _find_key(listing, key)
    backup = _from_entry(entry.key, entry.name.dump_format, entry.name.timestamp, entry.state)
    manifest = load_manifest(store, backup)
    outcome = check_backup(store, backup, manifest, binaries)
    return {"key": key, "state": entry.state, "verified": True, **outcome}
