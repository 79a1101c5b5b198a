"""Where the archive keeps things, and what a base backup's record says.

barman-cloud's layout under ``s3://<bucket>/<prefix>/<server>/``: ``wals/<timeline+log>/<segment>.zst``
(and ``.history``, ``.partial``, ``.backup`` files); our base backups beside it under
``base/<backup_id>/``: ``base.tar.zst``, then ``backup.json`` written last. A base backup without
its ``backup.json`` is unfinished and never listed as restorable.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

from stellar_ops.core.errors import BackupError

FORMAT_VERSION = 1
BASE_DIR = "base"
WALS_DIR = "wals"
TAR_NAME = "base.tar.zst"
RECORD_NAME = "backup.json"
BACKUP_ID_FORMAT = "%Y%m%dT%H%M%SZ"

_SEGMENT = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
_HISTORY = re.compile(r"^([0-9A-F]{8})\.history$")
# a segment's name, then what barman puts after it: .partial, .<offset>.backup, and .zst/.gz/...
_WAL_FILE = re.compile(r"^([0-9A-F]{24})((?:\.partial)|(?:\.[0-9A-F]{8}\.backup))?(?:\.[a-z0-9]+)?$")
_HISTORY_FILE = re.compile(r"^([0-9A-F]{8})\.history(?:\.[a-z0-9]+)?$")
_BACKUP_ID = re.compile(r"^\d{8}T\d{6}Z$")


def server_root(prefix: str, server: str) -> str:
    """``<prefix>/<server>/``: barman's directory of one server."""
    return f"{prefix.strip('/')}/{server.strip('/')}/"


def base_root(prefix: str, server: str) -> str:
    return f"{server_root(prefix, server)}{BASE_DIR}/"


def wal_root(prefix: str, server: str) -> str:
    return f"{server_root(prefix, server)}{WALS_DIR}/"


def backup_id_for(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(BACKUP_ID_FORMAT)


def is_backup_id(text: str) -> bool:
    return bool(_BACKUP_ID.match(text))


def backup_time(backup_id: str) -> datetime:
    return datetime.strptime(backup_id, BACKUP_ID_FORMAT).replace(tzinfo=UTC)


def tar_key(prefix: str, server: str, backup_id: str) -> str:
    return f"{base_root(prefix, server)}{backup_id}/{TAR_NAME}"


def record_key(prefix: str, server: str, backup_id: str) -> str:
    return f"{base_root(prefix, server)}{backup_id}/{RECORD_NAME}"


def backup_id_of_key(key: str, prefix: str, server: str) -> str | None:
    """The backup id of a key under ``base/``; None for anything else."""
    root = base_root(prefix, server)
    if not key.startswith(root):
        return None
    head = key[len(root) :].split("/", 1)[0]
    return head if is_backup_id(head) else None


# -- WAL names ---------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class SegmentPosition:
    """A WAL segment's place: (timeline, log, seg). Ordering by :meth:`position` ignores the timeline."""

    timeline: int
    log: int
    seg: int

    @property
    def position(self) -> tuple[int, int]:
        return (self.log, self.seg)

    @property
    def name(self) -> str:
        return f"{self.timeline:08X}{self.log:08X}{self.seg:08X}"


def parse_segment(name: str) -> SegmentPosition:
    """``000000010000000A000000FF`` -> (1, 0xA, 0xFF); ValueError for anything else."""
    match = _SEGMENT.match(name)
    if not match:
        raise ValueError(f"{name!r} is not a WAL segment name (24 hex digits)")
    return SegmentPosition(*(int(part, 16) for part in match.groups()))


@dataclass(frozen=True)
class WalFile:
    """One object of the WAL archive, by what its name says."""

    key: str
    name: str  # the file name without the compression suffix
    kind: str  # "segment", "partial", "backup" (a .backup label), "history"
    timeline: int
    segment: SegmentPosition | None  # None for a .history file
    size: int = 0
    last_modified: datetime | None = None

    @property
    def position(self) -> tuple[int, int] | None:
        return None if self.segment is None else self.segment.position


def parse_wal_key(key: str, size: int = 0, last_modified: datetime | None = None) -> WalFile | None:
    """What an object under ``wals/`` is; None for something that is none of barman's files."""
    base = key.rsplit("/", 1)[-1]
    history = _HISTORY_FILE.match(base)
    if history:
        return WalFile(
            key,
            f"{history.group(1)}.history",
            "history",
            int(history.group(1), 16),
            None,
            size,
            last_modified,
        )
    match = _WAL_FILE.match(base)
    if not match:
        return None
    segment = parse_segment(match.group(1))
    suffix = match.group(2) or ""
    kind = "partial" if suffix == ".partial" else "backup" if suffix.endswith(".backup") else "segment"
    return WalFile(key, match.group(1) + suffix, kind, segment.timeline, segment, size, last_modified)


def lsn_to_int(lsn: str) -> int:
    """``16/B374D848`` as an integer."""
    try:
        high, low = lsn.split("/")
        return (int(high, 16) << 32) | int(low, 16)
    except ValueError:
        raise ValueError(f"{lsn!r} is not an LSN (like 16/B374D848)") from None


def segment_of_lsn(
    lsn: str, timeline: int, wal_segment_size: int = 16 * 1024 * 1024, *, end: bool = False
) -> str:
    """The segment holding ``lsn``. With ``end``, ``lsn`` is an end point: one on a segment's first
    byte belongs to the previous segment (PostgreSQL's ``pg_walfile_name``, the segment a backup's
    stop waits to be archived)."""
    position = lsn_to_int(lsn)
    if end and position > 0:
        position -= 1
    number = position // wal_segment_size
    per_log = 0x100000000 // wal_segment_size
    return f"{timeline:08X}{number // per_log:08X}{number % per_log:08X}"


def history_file_name(start_lsn: str, timeline: int, wal_segment_size: int = 16 * 1024 * 1024) -> str:
    """The backup history file PostgreSQL archives for a backup that started at ``start_lsn``:
    ``<start segment>.<offset in it, 8 hex>.backup``."""
    segment = segment_of_lsn(start_lsn, timeline, wal_segment_size)
    return f"{segment}.{lsn_to_int(start_lsn) % wal_segment_size:08X}.backup"


def parse_label(text: str) -> dict[str, str]:
    """A ``backup_label`` or backup history file as its ``NAME: value`` lines."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(": ")
        if sep:
            fields[name.strip()] = value.strip()
    return fields


def label_lsn(fields: dict[str, str], name: str, *, source: str) -> tuple[str, str | None]:
    """(LSN, file) of a ``START WAL LOCATION: 0/2000028 (file 000000010000000000000002)`` line."""
    match = re.match(r"^([0-9A-F]+/[0-9A-F]+)(?: \(file ([0-9A-F]{24})\))?$", fields.get(name, ""))
    if not match:
        raise BackupError(f"{source} has no valid {name} line ({fields.get(name)!r})")
    return match.group(1), match.group(2)


def decompress_wal_object(name: str, data: bytes) -> bytes:
    """A small archived file's bytes, by barman-cloud's compression suffix."""
    if name.endswith(".zst"):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(data).read()
    if name.endswith(".gz"):
        import gzip

        return gzip.decompress(data)
    if name.endswith(".bz2"):
        import bz2

        return bz2.decompress(data)
    if name.endswith((".backup", ".history")):
        return data
    raise BackupError(f"cannot read {name}: its compression is not zstd, gzip or bzip2")


# -- the record --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaseBackupRecord:
    """``backup.json``: one complete base backup. ``stop_time`` is the earliest moment it recovers to."""

    backup_id: str
    server: str
    system_identifier: str
    timeline: int
    pg_version_num: int
    start_lsn: str
    start_wal: str
    start_time: datetime
    stop_lsn: str
    stop_wal: str
    stop_time: datetime
    raw_bytes: int
    stored_bytes: int
    sha256: str
    compression: str = "zstd"
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        parse_segment(self.start_wal)
        parse_segment(self.stop_wal)
        for name in ("start_time", "stop_time"):
            value = getattr(self, name)
            if value.tzinfo is None:
                raise ValueError(f"{name} {value.isoformat()} has no time zone")

    @property
    def start_position(self) -> tuple[int, int]:
        return parse_segment(self.start_wal).position

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        for name in ("start_time", "stop_time"):
            document[name] = getattr(self, name).astimezone(UTC).isoformat().replace("+00:00", "Z")
        return document

    def dumps(self) -> bytes:
        return json.dumps(self.to_json(), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, document: Any, *, source: str = "backup.json") -> BaseBackupRecord:
        """A record from its JSON document; :class:`BackupError` naming ``source`` and the field."""
        if not isinstance(document, dict):
            raise BackupError(f"{source} is not a JSON object")
        version = document.get("format_version")
        if version != FORMAT_VERSION:
            raise BackupError(f"{source} has format_version {version!r}; this version reads {FORMAT_VERSION}")
        names = {f.name for f in fields(cls)}
        missing = sorted(names - set(document) - {"compression"})
        if missing:
            raise BackupError(f"{source} lacks {', '.join(missing)}")
        values = {name: document[name] for name in names if name in document}
        try:
            for name in ("start_time", "stop_time"):
                values[name] = datetime.fromisoformat(str(values[name]).replace("Z", "+00:00"))
            for name in ("timeline", "pg_version_num", "raw_bytes", "stored_bytes", "format_version"):
                values[name] = int(values[name])
            values["system_identifier"] = str(values["system_identifier"])
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise BackupError(f"{source} is not a valid base backup record: {exc}") from None
