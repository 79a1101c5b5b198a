"""Take a physical base backup: ``pg_basebackup`` over a replication connection, streamed through
zstd into an S3 multipart upload, the way ``db_backup`` streams pg_dump.

``pg_basebackup -D - -Ft -X none --checkpoint=fast --no-manifest -v`` writes the default
tablespace as one tar on its stdout and needs no access to the data directory: it works wherever a
replication connection reaches. ``-X none`` leaves the WAL out of the tar; the server then waits
until the backup's last segment is archived before pg_basebackup exits 0, so a base backup that
completes is restorable from the WAL archive.

``base.tar.zst`` is uploaded first, ``backup.json`` last: its presence makes the backup complete.
A failure anywhere aborts the upload (or deletes a completed tar) and writes no ``backup.json``.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import logging
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from stellar_ops.core.errors import BackupError, ConfigError, PrerequisiteError
from stellar_ops.pitr import layout
from stellar_ops.pitr.layout import BaseBackupRecord
from stellar_ops.postgres.binaries import PgBinaries, find_binaries
from stellar_ops.postgres.pitr import PitrConfig
from stellar_ops.postgres.streaming import CHUNK, start_streaming
from stellar_ops.postgres.target import PgTarget, clean_error, connect, major_of, tls_failure
from stellar_ops.storage.compression import compressor
from stellar_ops.storage.s3 import MIB, S3Store

log = logging.getLogger(__name__)

MAX_PARTS = 9_000
TAR_END = bytes(1024)  # a tar ends with two zero blocks
HEAD_BYTES = 256 * 1024  # the server sends backup_label first in the main tar
HISTORY_WAIT_SECONDS = 20.0
ID_ATTEMPTS = 5


@dataclass(frozen=True)
class UploadOptions:
    """How the tar goes up: the ``backup`` section's choices."""

    part_size_mb: int = 8
    max_parts_in_flight: int = 2
    compression_threads: int = 0
    progress_interval_seconds: float = 5.0


@dataclass(frozen=True)
class ServerFacts:
    version_num: int
    version: str
    system_identifier: str
    wal_segment_size: int
    database_bytes: int


def check_server(target: PgTarget, binaries: PgBinaries | None = None) -> ServerFacts:
    """What a base backup needs of the server, or :class:`PrerequisiteError` naming what is missing:
    WAL archived (``-X none`` relies on it), no tablespace but the default ones (``-D -`` writes one
    tar), a role with REPLICATION, and a pg_basebackup at least the server's major."""
    binaries = binaries or find_binaries()
    with connect(target) as conn:
        version_num = int(conn.info.server_version)
        version = str(conn.execute("SHOW server_version").fetchone()[0])
        archive_mode = str(conn.execute("SHOW archive_mode").fetchone()[0])
        wal_level = str(conn.execute("SHOW wal_level").fetchone()[0])
        system_identifier = str(
            conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0]
        )
        segment_size = int(
            conn.execute(
                "SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'"
            ).fetchone()[0]
        )
        spaces = [
            str(row[0])
            for row in conn.execute(
                "SELECT spcname FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY 1"
            ).fetchall()
        ]
        can_replicate = bool(
            conn.execute(
                "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone()[0]
        )
        size = int(
            conn.execute(
                # only to size the upload's parts: the databases this role may measure
                "SELECT coalesce(sum(pg_database_size(oid)), 0)::bigint FROM pg_database "
                "WHERE datallowconn AND has_database_privilege(oid, 'CONNECT')"
            ).fetchone()[0]
        )
    if archive_mode == "off" or wal_level == "minimal":
        raise PrerequisiteError(
            f"PostgreSQL {target.describe()} does not archive its WAL (archive_mode={archive_mode}, "
            f"wal_level={wal_level}): a base backup without the WAL archive restores nothing; set archive_mode, "
            "archive_command and wal_level=replica (docs/deployment.md)"
        )
    if spaces:
        raise PrerequisiteError(
            f"PostgreSQL {target.describe()} has tablespaces {', '.join(spaces)}: the base backup streams "
            "the default tablespace only (pg_basebackup -D - writes one tar); move them to pg_default"
        )
    if not can_replicate:
        raise PrerequisiteError(
            f"the role {target.user!r} of {target.describe()} lacks REPLICATION: ALTER ROLE {target.user} "
            "REPLICATION, and let pg_hba.conf admit it to the replication pseudo-database"
        )
    major, _text = binaries.version("pg_basebackup")
    if major < major_of(version_num):
        raise PrerequisiteError(
            f"pg_basebackup {major} ({binaries.path('pg_basebackup')}) is older than the server ({version}): "
            f"install postgresql-client-{major_of(version_num)} or set backup.pg_bin_dir"
        )
    return ServerFacts(version_num, version, system_identifier, segment_size, size)


def take_base_backup(
    target: PgTarget,
    store: S3Store,
    config: PitrConfig,
    *,
    binaries: PgBinaries | None = None,
    options: UploadOptions | None = None,
    say: Callable[[str], None] = log.info,
) -> BaseBackupRecord:
    """Stream a base backup of ``target``'s cluster to ``<prefix>/<server>/base/<id>/``; its record,
    written last as ``backup.json``. :class:`BackupError` (nothing left that looks complete) when
    anything fails, naming the cause."""
    binaries = binaries or find_binaries()
    options = options or UploadOptions()
    facts = check_server(target, binaries)
    _started_at, backup_id = _free_backup_id(target, store, config)
    tar_key = layout.tar_key(config.prefix, config.server_name, backup_id)
    record_key = layout.record_key(config.prefix, config.server_name, backup_id)
    say(
        f"base backup of {target.describe()} to {store.url(tar_key)} (zstd level {config.base_backup_compression_level})"
    )
    upload = store.multipart(
        tar_key,
        part_size=_part_size(facts.database_bytes, options.part_size_mb),
        max_in_flight=options.max_parts_in_flight,
        metadata={"stellar-ops-base-backup": backup_id},
    )
    process: _PgBaseBackup | None = None
    completed = False
    clock = time.monotonic()
    try:
        process = _PgBaseBackup.start(_argv(binaries, backup_id), target, config.base_backup_timeout_seconds)
        raw, sha256, head, tail = _stream(process.process, upload, config, options, say, clock)
        process.check_exit()
        if tail != TAR_END:
            raise BackupError(
                f"pg_basebackup exited 0 but its tar of {raw} bytes does not end with a tar's end"
            )
        start_lsn, timeline = _label_start(head)
        history = _read_history(store, config, start_lsn, timeline, facts.wal_segment_size)
        stop_lsn, _stop_file = layout.label_lsn(history.fields, "STOP WAL LOCATION", source=history.source)
        with connect(target) as conn:
            # the server reads its own log_timezone's abbreviations
            start_time, stop_time = conn.execute(
                "SELECT %s::timestamptz, %s::timestamptz",
                (history.fields.get("START TIME"), history.fields.get("STOP TIME")),
            ).fetchone()
        if start_time is None or stop_time is None:
            raise BackupError(f"{history.source} lacks START TIME or STOP TIME")
        upload.complete()
        completed = True
        record = BaseBackupRecord(
            backup_id=backup_id,
            server=config.server_name,
            system_identifier=facts.system_identifier,
            timeline=timeline,
            pg_version_num=facts.version_num,
            start_lsn=start_lsn,
            start_wal=layout.segment_of_lsn(start_lsn, timeline, facts.wal_segment_size),
            start_time=start_time,
            stop_lsn=stop_lsn,
            stop_wal=layout.segment_of_lsn(stop_lsn, timeline, facts.wal_segment_size, end=True),
            stop_time=stop_time,
            raw_bytes=raw,
            stored_bytes=upload.bytes_written,
            sha256=sha256,
            compression="zstd",
        )
        store.put_bytes(record_key, record.dumps(), "application/json")
    except BaseException as exc:
        if process is not None:
            process.kill()
        if completed:
            with contextlib.suppress(BackupError):
                store.delete(tar_key)
            say(f"deleted {store.url(tar_key)}: its backup.json was not written")
        else:
            problem = upload.abort()
            say(problem or f"aborted the multipart upload of {store.url(tar_key)}")
        if isinstance(exc, BackupError | PrerequisiteError | ConfigError) or not isinstance(exc, Exception):
            raise
        raise BackupError(
            f"base backup to {store.url(tar_key)} failed: {clean_error(str(exc), target)}"
        ) from exc
    say(
        f"base backup {backup_id} complete: {raw / MIB:,.1f} MiB -> {record.stored_bytes / MIB:,.1f} MiB in "
        f"{time.monotonic() - clock:,.1f}s, WAL {record.start_wal} to {record.stop_wal}, recoverable from "
        f"{record.stop_time.isoformat()}"
    )
    return record


def _free_backup_id(target: PgTarget, store: S3Store, config: PitrConfig) -> tuple[datetime, str]:
    """The server's clock now and the backup id of that second, one no other base backup holds."""
    for _attempt in range(ID_ATTEMPTS):
        with connect(target) as conn:
            now = cast(datetime, conn.execute("SELECT clock_timestamp()").fetchone()[0])
        backup_id = layout.backup_id_for(now)
        prefix = f"{layout.base_root(config.prefix, config.server_name)}{backup_id}/"
        if next(iter(store.list_objects(prefix)), None) is None:
            return now, backup_id
        time.sleep(1.0)
    raise BackupError(
        f"every base backup id tried is in use under {store.url(layout.base_root(config.prefix, config.server_name))}"
    )


def _argv(binaries: PgBinaries, backup_id: str) -> list[str]:
    return [
        binaries.path("pg_basebackup"),
        "-D",
        "-",
        "-Ft",
        "-X",
        "none",
        "--checkpoint=fast",
        "--no-manifest",
        "--no-password",
        "-v",
        f"--label=stellar-ops {backup_id}",
    ]


def _part_size(database_bytes: int, configured_mb: int) -> int:
    needed_mb = -(-database_bytes // (MAX_PARTS * MIB))
    return max(configured_mb, needed_mb, 5) * MIB


def _stream(
    process: subprocess.Popen[bytes],
    upload: Any,
    config: PitrConfig,
    options: UploadOptions,
    say: Callable[[str], None],
    clock: float,
) -> tuple[int, str, bytes, bytes]:
    """Compress pg_basebackup's tar into the upload; (raw bytes, sha256 of the stored bytes, the
    tar's first :data:`HEAD_BYTES` bytes, the tar's last 1024 bytes)."""
    assert process.stdout is not None
    reader = cast(io.RawIOBase, process.stdout)
    packer = compressor("custom", config.base_backup_compression_level, options.compression_threads)
    digest = hashlib.sha256()
    raw = 0
    head = bytearray()
    tail = b""
    last = clock

    def emit(data: bytes) -> None:
        if data:
            digest.update(data)
            upload.write(data)

    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    while count := reader.readinto(buffer):
        raw += count
        if len(head) < HEAD_BYTES:
            head += view[: min(count, HEAD_BYTES - len(head))]
        tail = (tail + bytes(view[max(0, count - 1024) : count]))[-1024:]
        packer.push(view[:count], emit)
        now = time.monotonic()
        if now - last >= options.progress_interval_seconds:
            last = now
            say(
                f"streamed {raw / MIB:,.1f} MiB, uploaded {upload.bytes_written / MIB:,.1f} MiB compressed, "
                f"{raw / MIB / max(now - clock, 1e-6):,.1f} MiB/s"
            )
    packer.finish(emit)
    return raw, digest.hexdigest(), bytes(head), tail


class _PgBaseBackup:
    """A running pg_basebackup whose stderr is drained in the background; stopped after ``timeout``."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        target: PgTarget,
        session: contextlib.ExitStack,
        timeout: float,
    ) -> None:
        self.process = process
        self.target = target
        self._session = session
        self._lines: collections.deque[str] = collections.deque(maxlen=200)
        self._reader = threading.Thread(target=self._drain, name="pg_basebackup-stderr", daemon=True)
        self._reader.start()
        self.timed_out = False
        self._timer = threading.Timer(timeout, self._expire)
        self._timer.daemon = True
        self._timer.start()
        self.timeout = timeout

    @classmethod
    def start(cls, argv: list[str], target: PgTarget, timeout: float) -> _PgBaseBackup:
        # its -v lines are read below: in English whatever the worker's locale
        process, session = start_streaming(argv, target, env_changes={"LC_MESSAGES": "C", "LC_ALL": None})
        return cls(process, target, session, timeout)

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in iter(self.process.stderr.readline, b""):
            self._lines.append(line.decode(errors="replace").rstrip())

    def _expire(self) -> None:
        if self.process.poll() is None:
            self.timed_out = True
            self.process.kill()

    def check_exit(self) -> None:
        code = self.process.wait()
        self._timer.cancel()
        self._session.close()
        self._reader.join(timeout=5)
        if code == 0:
            return
        text = "\n".join(self._lines)
        if self.timed_out:
            raise BackupError(
                f"pg_basebackup still ran after pitr.base_backup_timeout_seconds={self.timeout:g}s and was "
                f"stopped (is the WAL archive failing? the server waits for the last segment to be archived): "
                f"{_last_lines(text, self.target)}"
            )
        raise tls_failure(text, self.target) or BackupError(
            f"pg_basebackup {'was killed by signal ' + str(-code) if code < 0 else f'exited with code {code}'}"
            f": {_last_lines(text, self.target)}"
        )

    def kill(self) -> None:
        self._timer.cancel()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._session.close()


def _label_start(head: bytes) -> tuple[str, int]:
    """(start LSN, timeline) from the ``backup_label`` at the head of the tar."""
    import tarfile

    try:
        with tarfile.open(fileobj=io.BytesIO(head), mode="r|") as tar:
            for member in tar:
                if member.name == "backup_label":
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    fields = layout.parse_label(extracted.read().decode(errors="replace"))
                    lsn, _file = layout.label_lsn(fields, "START WAL LOCATION", source="backup_label")
                    return lsn, int(fields.get("START TIMELINE", "0"))
    except (tarfile.TarError, ValueError) as exc:
        raise BackupError(f"cannot read backup_label at the head of pg_basebackup's tar: {exc}") from None
    raise BackupError(f"pg_basebackup's tar holds no backup_label in its first {HEAD_BYTES} bytes")


@dataclass(frozen=True)
class _History:
    source: str
    fields: dict[str, str]


def _read_history(
    store: S3Store, config: PitrConfig, start_lsn: str, timeline: int, segment_size: int
) -> _History:
    """The backup history file the server archived when the backup stopped (its stop WAL
    location and time), from the WAL archive at ``pitr.prefix``/``pitr.server_name``."""
    name = layout.history_file_name(start_lsn, timeline, segment_size)
    directory = f"{layout.wal_root(config.prefix, config.server_name)}{name[:16]}/"
    deadline = time.monotonic() + HISTORY_WAIT_SECONDS
    while True:
        found = [
            o for o in store.list_objects(f"{directory}{name}") if o.key.rsplit("/", 1)[-1].startswith(name)
        ]
        if found:
            key = found[0].key
            text = layout.decompress_wal_object(key, store.get_bytes(key)).decode(errors="replace")
            return _History(store.url(key), layout.parse_label(text))
        if time.monotonic() > deadline:
            raise BackupError(
                f"the backup history file {name} is not in the WAL archive {store.url(directory)} although the "
                "server archived it: pitr.prefix and pitr.server_name must name the archive_command's "
                "destination (barman-cloud-wal-archive s3://<bucket>/<prefix> <server_name>)"
            )
        time.sleep(1.0)


def _last_lines(text: str, target: PgTarget) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()][-3:]
    return clean_error(" | ".join(lines), target) if lines else "(no output)"
