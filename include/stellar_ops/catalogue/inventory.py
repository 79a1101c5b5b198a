"""Every backup in the bucket, with its age, size, format and verification state.

- ``verified``: a manifest sidecar exists (it is written only after a successful verification);
- ``legacy``: a ``.sql.gz`` of the old scripts, without a manifest: restorable, not verifiable exactly;
- ``unverified``: anything else named like a backup (an object whose publication did not finish).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from stellar_ops.catalogue.keys import MANIFEST_SUFFIX, SIDECAR_SUFFIXES, BackupName, parse_backup_key
from stellar_ops.core.errors import BackupNotFoundError
from stellar_ops.storage.s3 import ObjectInfo, S3Store

State = Literal["verified", "legacy", "unverified"]
OURS_METADATA = "stellar-ops-manifest"


@dataclass(frozen=True)
class BackupEntry:
    name: BackupName
    size: int
    last_modified: datetime
    state: State
    sidecars: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return self.name.key

    @property
    def restorable(self) -> bool:
        return self.state in ("verified", "legacy")

    def age_seconds(self, reference: datetime) -> float:
        return (reference - self.name.timestamp).total_seconds()

    def as_dict(self, reference: datetime) -> dict[str, Any]:
        return {
            "key": self.key,
            "timestamp": self.name.timestamp.isoformat(),
            "age_hours": round(self.age_seconds(reference) / 3600, 1),
            "size_bytes": self.size,
            "format": self.name.dump_format,
            "state": self.state,
        }


@dataclass(frozen=True)
class Listing:
    backups: list[BackupEntry]
    orphan_sidecars: list[ObjectInfo]
    incoming: list[ObjectInfo]


def list_backups(store: S3Store, prefix: str, legacy_prefix: str | None = None) -> Listing:
    """One LIST over the prefix (and one over the legacy prefix's own objects, when it is another
    place); a HEAD only for manifest-less ``.sql.gz`` objects."""
    places = [(prefix, list(store.list_objects(prefix)))]
    if legacy_prefix is not None and legacy_prefix != prefix:
        places.append((legacy_prefix, list(store.list_objects(legacy_prefix, recursive=False))))
    backups: list[BackupEntry] = []
    orphans: list[ObjectInfo] = []
    incoming: list[ObjectInfo] = []
    for place, objects in places:
        found, lost, uploads = _backups_in(store, place, objects)
        backups += found
        orphans += lost
        incoming += uploads
    backups.sort(key=lambda entry: entry.name, reverse=True)
    return Listing(backups=backups, orphan_sidecars=orphans, incoming=incoming)


def _backups_in(
    store: S3Store, prefix: str, objects: list[ObjectInfo]
) -> tuple[list[BackupEntry], list[ObjectInfo], list[ObjectInfo]]:
    keys = {obj.key for obj in objects}
    backups: list[BackupEntry] = []
    sidecar_owners: set[str] = set()
    incoming: list[ObjectInfo] = []
    for obj in objects:
        if obj.key.startswith(prefix + ".incoming/"):
            incoming.append(obj)
            continue
        name = parse_backup_key(obj.key, prefix)
        if name is None:
            continue
        sidecar_owners.add(obj.key)
        backups.append(_entry(store, name, obj, keys))
    orphans = [
        obj
        for obj in objects
        if any(obj.key.endswith(s) for s in SIDECAR_SUFFIXES)
        and _owner(obj.key) not in sidecar_owners
        and "/.incoming/" not in obj.key
        and parse_backup_key(_owner(obj.key), prefix) is not None
    ]
    return backups, orphans, incoming


def _entry(store: S3Store, name: BackupName, obj: ObjectInfo, keys: set[str]) -> BackupEntry:
    """A backup's entry: verified with a manifest, legacy for the old scripts' .sql.gz, else unverified."""
    sidecars = tuple(obj.key + s for s in SIDECAR_SUFFIXES if obj.key + s in keys)
    if obj.key + MANIFEST_SUFFIX in keys:
        state: State = "verified"
    elif name.dump_format == "plain" and not _published_by_us(store, obj.key):
        state = "legacy"
    else:
        state = "unverified"
    return BackupEntry(name, obj.size, obj.last_modified, state, sidecars)


def entry_at(store: S3Store, key: str) -> BackupEntry | None:
    """The backup at exactly ``key``, wherever it is in the bucket (None if there is none)."""
    name = parse_backup_key(key, key.rsplit("/", 1)[0] + "/" if "/" in key else "")
    head = store.head(key) if name is not None else None
    if name is None or head is None:
        return None
    sidecars = {key + s for s in SIDECAR_SUFFIXES if store.exists(key + s)}
    info = ObjectInfo(key, int(head["ContentLength"]), head["LastModified"])
    return _entry(store, name, info, sidecars)


def _owner(sidecar_key: str) -> str:
    for suffix in SIDECAR_SUFFIXES:
        if sidecar_key.endswith(suffix):
            return sidecar_key[: -len(suffix)]
    return sidecar_key


def _published_by_us(store: S3Store, key: str) -> bool:
    head = store.head(key) or {}
    return OURS_METADATA in (head.get("Metadata") or {})


def find(listing: Listing, key: str) -> BackupEntry:
    """The entry for ``key``, or an error that lists the nearest keys."""
    for entry in listing.backups:
        if entry.key == key:
            return entry
    raise BackupNotFoundError(f"backup {key!r} does not exist; {nearest_keys_hint(listing, key)}")


def nearest_keys_hint(listing: Listing, key: str, count: int = 3) -> str:
    if not listing.backups:
        return "there are no backups under that prefix"
    target = _timestamp_hint(key)
    ranked = sorted(
        listing.backups,
        key=lambda e: abs((e.name.timestamp - target).total_seconds()) if target else 0,
    )
    return "nearest: " + ", ".join(e.key for e in ranked[:count])


def _timestamp_hint(key: str) -> datetime | None:
    import re

    from stellar_ops.catalogue.keys import parse_timestamp

    match = re.search(r"\d{8}T\d{6}Z|\d{8}_\d{6}|\d{14}|\d{8}", key)
    return parse_timestamp(match.group(0)) if match else None
