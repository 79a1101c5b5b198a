"""Where a DR test's backup comes from: which one to take, how to read it, whether it is intact.

``latest`` in a scheduled or backfilled run for month M is the newest restorable backup taken
before the end of M; a named key that does not exist fails with the nearest existing keys.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from stellar_ops.catalogue import verify
from stellar_ops.catalogue.inventory import BackupEntry, Listing, entry_at, list_backups, nearest_keys_hint
from stellar_ops.catalogue.keys import (
    GLOBALS_SUFFIX,
    MANIFEST_SUFFIX,
    DumpFormat,
    format_of_path,
    parse_backup_key,
)
from stellar_ops.catalogue.manifest import Manifest
from stellar_ops.core.errors import BackupNotFoundError, VerificationError
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
    store: S3Store | None,
    prefix: str,
    choice: str,
    *,
    reference: datetime,
    month_scoped: bool,
    legacy_prefix: str | None = None,
) -> ResolvedBackup:
    """``choice`` is 'latest', an S3 key (or a file name), or an absolute local path.

    'latest' in a scheduled or backfilled run for month M is the newest restorable backup taken
    before the end of M; in a manual run it is the newest restorable backup. Both look under
    ``prefix`` and ``legacy_prefix``. A key is used as it is wherever it is in the bucket; a file
    name is looked for under ``prefix``, then ``legacy_prefix``.
    """
    if choice.startswith("/"):
        return _resolve_local(Path(choice))
    if store is None:
        raise BackupNotFoundError("no S3 store is configured: give a local path to a backup")
    listing = list_backups(store, prefix, legacy_prefix)
    if choice == "latest":
        bound = month_end(reference) if month_scoped else None
        for entry in listing.backups:  # newest first
            if entry.restorable and (bound is None or entry.name.timestamp < bound):
                return _from_entry(entry)
        scope = f" taken before {bound.isoformat()}" if bound else ""
        places = " or ".join(f"s3://{store.bucket}/{p}" for p in _places(prefix, legacy_prefix))
        raise BackupNotFoundError(f"no restorable backup{scope} under {places}")
    entry = find_backup(store, listing, choice, prefix, legacy_prefix)
    if not entry.restorable:
        raise BackupNotFoundError(
            f"backup {entry.key!r} has no manifest and is not a legacy .sql.gz: its publication never finished"
        )
    return _from_entry(entry)


def _places(prefix: str, legacy_prefix: str | None) -> list[str]:
    return [prefix] + ([legacy_prefix] if legacy_prefix is not None and legacy_prefix != prefix else [])


def find_backup(
    store: S3Store, listing: Listing, choice: str, prefix: str, legacy_prefix: str | None
) -> BackupEntry:
    """The backup ``choice`` names: that exact key, else that name under each place searched."""
    candidates = [choice] + [place + choice for place in _places(prefix, legacy_prefix) if place]
    for key in dict.fromkeys(candidates):
        for entry in listing.backups:
            if entry.key == key:
                return entry
    for key in dict.fromkeys(candidates):  # a backup outside the places listed, named exactly
        found = entry_at(store, key)
        if found is not None:
            return found
    raise BackupNotFoundError(
        f"backup {choice!r} does not exist (looked for {', '.join(dict.fromkeys(candidates))}); "
        f"{nearest_keys_hint(listing, choice)}"
    )


def _from_entry(entry: BackupEntry) -> ResolvedBackup:
    return ResolvedBackup(
        "s3", entry.key, entry.name.dump_format, entry.name.timestamp.isoformat(), entry.state
    )


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
    """When the backup's data is from: its snapshot's time (the dump's start in a manifest from
    before it was recorded), else, for a legacy backup, the key's timestamp."""
    if manifest is not None:
        return manifest.snapshot_time
    parsed = datetime.fromisoformat(backup.timestamp)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def verify_published(
    store: S3Store, prefix: str, legacy_prefix: str | None, key: str, binaries: PgBinaries
) -> dict[str, Any]:
    """``stellar-ops backups verify``: re-check one backup end to end against its manifest."""
    entry = find_backup(store, list_backups(store, prefix, legacy_prefix), key, prefix, legacy_prefix)
    backup = _from_entry(entry)
    manifest = load_manifest(store, backup)
    outcome = check_backup(store, backup, manifest, binaries)
    if manifest is not None and manifest.globals_key:
        load_globals(store, backup, manifest)
    return {"key": entry.key, "state": entry.state, "verified": True, **outcome}


def load_globals(store: S3Store | None, backup: ResolvedBackup, manifest: Manifest | None) -> bytes | None:
    """The backup's roles (``pg_dumpall --globals-only``), checked against the manifest; None if
    the backup was made without them (a legacy backup, an older manifest, globals switched off)."""
    if manifest is None or not manifest.globals_key:
        return None
    if backup.source == "local":
        location = backup.location + GLOBALS_SUFFIX
        try:
            data = Path(location).read_bytes()
        except OSError as exc:
            raise VerificationError(f"the backup's roles {location} cannot be read: {exc.strerror}") from None
    else:
        assert store is not None
        location = store.url(manifest.globals_key)
        data = store.get_bytes(manifest.globals_key)
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != manifest.globals_size_bytes or digest != manifest.globals_sha256:
        raise VerificationError(
            f"checksum mismatch for {location}: manifest says {manifest.globals_size_bytes} bytes with sha256 "
            f"{manifest.globals_sha256}, it has {len(data)} bytes with sha256 {digest}"
        )
    return data
