"""Take a backup: pg_dump streamed through a compressor into an S3 multipart upload.

One pass, no full-size temporary file and no second one: pg_dump's output is compressed, hashed
(sha256), copied to the optional local directory and uploaded in parts as it is produced, and
the compressed stream is verified on its way (:class:`~stellar_ops.catalogue.verify.InFlightScan`:
decompressed into ``pg_restore --list`` and a full ``pg_restore`` read, or the SQL trailer).
The backup is named by the time of its snapshot, read on the database server in the statement
that exports it, before pg_dump starts, so the upload goes straight to the backup's final key. It
is completed only after pg_dump exited 0, the in-flight checks passed and the server's part list
matched what was sent (each part with its Content-MD5, which the server checks). Nothing is
copied afterwards. The backup becomes *verified* when its manifest is written, last
(:func:`publish`); until then it is listed as unverified, and retention's ``min_keep`` and
``latest`` ignore it.

Every backup has a key of its own, so no backup is ever written over another: a key already in
use (a backup whose snapshot fell in the same second, finished or still uploading) makes the dump
take its snapshot again in the next second, and a rival upload that starts into the same key at
the same moment makes it stop before writing anything. A failure anywhere aborts the multipart
upload and removes the partial local copy: a failed run never leaves something that looks like a
backup, and never replaces or deletes a good one. ``backup.verify_read_back`` adds a full download
and read of the object before the manifest.

The exact row count of every table and the schema are read inside the snapshot that pg_dump
dumps (``pg_export_snapshot`` + ``pg_dump --snapshot``), so the manifest describes exactly what
the dump holds.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from stellar_ops.backup.config import BackupConfig
from stellar_ops.backup.slots import Cover, find_cover, late_note
from stellar_ops.catalogue import verify
from stellar_ops.catalogue.inventory import OURS_METADATA
from stellar_ops.catalogue.keys import GLOBALS_SUFFIX, INCOMING_DIR, MANIFEST_SUFFIX, DumpFormat, backup_key
from stellar_ops.catalogue.manifest import Manifest, Verification
from stellar_ops.core.errors import BackupError, ConfigError, PrerequisiteError, VerificationError
from stellar_ops.postgres import catalog
from stellar_ops.postgres.binaries import PgBinaries
from stellar_ops.postgres.streaming import CHUNK, start_streaming
from stellar_ops.postgres.target import PgTarget, connect, major_of, server_version_num, tls_failure
from stellar_ops.storage.compression import compression_name, compressor
from stellar_ops.storage.s3 import MIB, S3Store

log = logging.getLogger(__name__)

MAX_PARTS = 9_000  # S3 allows 10,000; the margin absorbs a dump larger than the estimate
KEY_ATTEMPTS = 5  # snapshots taken, a second apart, before a dump refuses a key already in use


@dataclass(frozen=True)
class Prerequisites:
    server_version: str
    server_version_num: int
    pg_dump_version: str
    cover: Cover | None  # the verified backup that covers the run's slot, if any


@dataclass
class _Progress:
    say: Callable[[str], None]
    interval: float
    started: float
    raw: int = 0
    compressed: int = 0
    last: float = 0.0

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-6)
        self.say(
            f"dumped {self.raw / MIB:,.1f} MiB, uploaded {self.compressed / MIB:,.1f} MiB compressed, "
            f"{self.raw / MIB / elapsed:,.1f} MiB/s"
        )


class BackupJob:
    """The backup procedure for one database, bucket and configuration."""

    def __init__(self, target: PgTarget, store: S3Store, config: BackupConfig, binaries: PgBinaries) -> None:
        self.target = target
        self.store = store
        self.config = config
        self.binaries = binaries

    def key_for(self, snapshot_at: datetime) -> str:
        return backup_key(self.config.prefix, snapshot_at, self.config.format)

    # -- prerequisites ---------------------------------------------------------------------------

    def check_prerequisites(self, slot: datetime, say: Callable[[str], None] = log.info) -> Prerequisites:
        """The database answers, pg_dump is new enough, the bucket is writable, local dir too; and
        the verified backup that covers ``slot``, if there is one."""
        with connect(self.target) as conn:
            version_num = server_version_num(conn)
            version = str(conn.execute("SHOW server_version").fetchone()[0])
        dump_version = self._check_pg_dump(version_num, version)
        self.store.check_bucket()
        self.store.check_writable(f"{self.config.prefix}{INCOMING_DIR}.write-probe-{os.getpid()}")
        if self.config.local_dir:
            _check_local_dir(Path(self.config.local_dir))
        return Prerequisites(
            server_version=version,
            server_version_num=version_num,
            pg_dump_version=dump_version,
            cover=find_cover(self.store, self.config.prefix, slot, say=say),
        )

    def _check_pg_dump(self, version_num: int, version: str) -> str:
        """The server's major is supported and pg_dump is at least that major; its version text."""
        supported = self.config.supported_server_majors
        if major_of(version_num) not in supported:
            raise PrerequisiteError(
                f"the server runs PostgreSQL {version}, whose major {major_of(version_num)} is not in "
                f"backup.supported_server_majors {supported}: add it there and install its client programs"
            )
        dump_major, dump_version = self.binaries.version("pg_dump")
        if dump_major < major_of(version_num):
            raise PrerequisiteError(
                f"pg_dump {dump_major} ({self.binaries.path('pg_dump')}) is older than the server "
                f"({version}): install postgresql-client-{major_of(version_num)} or set backup.pg_bin_dir"
            )
        return dump_version

    # -- dump ------------------------------------------------------------------------------------

    def dump(
        self, slot: datetime, *, run_id: str | None, token: str, say: Callable[[str], None] = log.info
    ) -> dict[str, Any]:
        """Stream a dump to the key of its snapshot's time, verified in flight; the draft manifest
        (not yet published). ``slot`` is the run's: recorded, and noted when it is in the past."""
        import psycopg

        cfg = self.config
        if cfg.local_dir:
            _check_local_dir(Path(cfg.local_dir))  # this may be another worker than the prerequisites ran on
        started_at = datetime.now(UTC)
        clock = time.monotonic()

        with connect(self.target, autocommit=False) as conn:
            # One REPEATABLE READ snapshot, exported to pg_dump and shared by the inventory.
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            snapshot, snapshot_at, key = self._export_snapshot(conn, say)
            say(
                f"dumping {self.target.describe()} to {self.store.url(key)} ({cfg.format}, level "
                f"{cfg.compression_level}), its snapshot taken at {snapshot_at.isoformat()}"
            )
            note = late_note(slot, snapshot_at)
            if note is not None:
                say(note)
            local_final = Path(cfg.local_dir) / key.rsplit("/", 1)[-1] if cfg.local_dir else None
            local_partial = (
                local_final.with_name(f"{local_final.name}.partial-{token}") if local_final else None
            )
            version_num = server_version_num(conn)
            version = str(conn.execute("SHOW server_version").fetchone()[0])
            # again here: this task may run on another worker than the prerequisites did
            dump_version = self._check_pg_dump(version_num, version)
            # before pg_dump reads them: sequences only move on, so a restore holds at least these
            sequences = catalog.sequence_values(conn)
            system_identifier = str(
                conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0]
            )
            inventory = _InventoryThread(conn)
            database_bytes = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])
            upload = self.store.multipart(
                key,
                part_size=part_size_for(database_bytes, cfg.part_size_mb),
                max_in_flight=cfg.max_parts_in_flight,
                metadata={OURS_METADATA: "1"},  # ours even before its manifest: never taken for a legacy dump
            )
            pg_dump: _PgDump | None = None
            local = None
            globals_written: str | None = None
            inflight: verify.InFlightScan | None = None
            try:
                self._refuse_rival_uploads(key, upload.upload_id)
                inflight = verify.InFlightScan(cfg.format, source=self.store.url(key), binaries=self.binaries)
                pg_dump = _PgDump.start(self._pg_dump_argv(snapshot), self.target)
                inventory.start()
                local = open(local_partial, "wb") if local_partial else None  # noqa: SIM115 - closed below
                raw_bytes = self._stream(pg_dump.process, upload, local, inflight, say, clock)
                try:
                    pg_dump.check_exit()
                except BackupError:
                    # A failed count ends the exported snapshot, and pg_dump then fails to import
                    # it: the count's own error is the one that explains.
                    inventory.raise_if_failed()
                    raise
                scanned = inflight.finish()
                inflight = None
                verification = _judge_in_flight(scanned, self.store.url(key), upload, raw_bytes, cfg.format)
                counts, schema = inventory.result()
                roles = self._dump_globals() if cfg.include_globals else None
                self._refuse_taken(key)
                if roles is not None:
                    globals_written = key + GLOBALS_SUFFIX
                    self.store.put_bytes(globals_written, roles, "application/sql")
                upload.complete()
                if local is not None and local_partial is not None and local_final is not None:
                    local.flush()
                    os.fsync(local.fileno())
                    local.close()
                    local = None
                    if roles is not None:
                        _write_durably(local_final.with_name(local_final.name + GLOBALS_SUFFIX), roles)
                    os.replace(local_partial, local_final)
            except BaseException as exc:
                if inflight is not None:
                    inflight.abort()
                self._clean_up_failure(pg_dump, upload, local, local_partial, say)
                if globals_written is not None:
                    with contextlib.suppress(BackupError):
                        self.store.delete(globals_written)
                if isinstance(exc, BackupError | PrerequisiteError | ConfigError) or not isinstance(
                    exc, Exception
                ):
                    raise
                raise BackupError(f"backup to {self.store.url(key)} failed: {exc}") from exc
            finally:
                conn.rollback()
        finished_at = datetime.now(UTC)
        say(
            f"dump finished: {raw_bytes / MIB:,.1f} MiB -> {upload.bytes_written / MIB:,.1f} MiB in "
            f"{time.monotonic() - clock:,.1f}s"
        )
        return {
            "key": key,
            "bucket": self.store.bucket,
            "slot": slot.isoformat(),
            "snapshot_at": snapshot_at.isoformat(),
            "note": note,
            "database": self.target.dbname,
            "system_identifier": system_identifier,
            "server_version": version,
            "server_version_num": version_num,
            "pg_dump_version": dump_version,
            "dump_format": cfg.format,
            "compression": compression_name(cfg.format),
            "compression_level": cfg.compression_level,
            "encryption": cfg.server_side_encryption,
            "started_at": started_at.isoformat(),
            "finished_at": finished_at.isoformat(),
            "duration_seconds": round((finished_at - started_at).total_seconds(), 3),
            "dag_run_id": run_id,
            "size_bytes": upload.bytes_written,
            "sha256": scanned.sha256,  # of every byte sent, hashed once, on the scan's thread
            "uncompressed_bytes": raw_bytes,
            "snapshot": snapshot,
            "row_counts": counts,
            "schema": schema,
            "schema_fingerprint": catalog.fingerprint(schema),
            "sequence_values": sequences,
            "globals_key": globals_written,
            "verification": verification,
            "globals_sha256": hashlib.sha256(roles).hexdigest() if roles is not None else None,
            "globals_size_bytes": len(roles) if roles is not None else None,
            "local_copy": str(local_final) if local_final else None,
        }

    def _dump_globals(self) -> bytes:
        """The roles, their memberships and settings (``pg_dumpall --globals-only``)."""
        argv = [
            self.binaries.path("pg_dumpall"),
            "--globals-only",
            "--no-password",
            f"--database={self.target.dbname}",
        ]
        if not self.config.globals_with_passwords:
            argv.append("--no-role-passwords")
        with self.target.client_session() as env:
            result = subprocess.run(argv, capture_output=True, env=env, timeout=600)
        if result.returncode != 0:
            stderr = result.stderr.decode(errors="replace")
            detail = " | ".join(stderr.strip().splitlines()[-3:])
            raise tls_failure(stderr, self.target) or BackupError(
                f"pg_dumpall --globals-only exited with code {result.returncode}: {detail} "
                "(set backup.include_globals to false to back up without the roles)"
            )
        return bytes(result.stdout)

    def _export_snapshot(self, conn: Any, say: Callable[[str], None]) -> tuple[str, datetime, str]:
        """Export the dump's snapshot: its id, its time and the backup key that time names.

        The time is the server's clock read in the statement that takes the snapshot, after it is
        taken: every change the dump holds was committed before it. A key already in use (a backup
        whose snapshot fell in the same second, published or still uploading) is never written
        over: the snapshot is released and taken again in the next second, and after
        ``KEY_ATTEMPTS`` tries the dump refuses.
        """
        for _ in range(KEY_ATTEMPTS):
            snapshot, taken_at = conn.execute("SELECT pg_export_snapshot(), clock_timestamp()").fetchone()
            snapshot_at = cast(datetime, taken_at).astimezone(UTC)
            key = self.key_for(snapshot_at)
            in_use = self._key_in_use(key)
            if in_use is None:
                return str(snapshot), snapshot_at, key
            conn.rollback()
            say(f"{self.store.url(key)} is in use ({in_use}): taking the snapshot again in the next second")
            time.sleep(1.05 - snapshot_at.microsecond / 1_000_000)
        raise BackupError(
            f"refusing to write over {self.store.url(key)}, which is in use ({in_use}): {KEY_ATTEMPTS} snapshots in "
            "a row named a key that another backup holds; nothing was written (check the clocks and for "
            "backups started in a loop, then retry)"
        )

    def _key_in_use(self, key: str) -> str | None:
        """What holds ``key`` already (an object, a sidecar, an upload under way); None if it is free."""
        held = next(iter(self.store.list_objects(key)), None)  # the key itself and its sidecars
        if held is not None:
            return f"{self.store.url(held.key)} exists"
        for upload in self.store.unfinished_uploads(key):
            if upload["Key"] == key:
                return f"upload {upload['UploadId']} into it is under way"
        return None

    def _refuse_rival_uploads(self, key: str, ours: str) -> None:
        """Stop when another upload into ``key`` started beside ours (a backup in the same second).

        Whichever of two such uploads looks second sees the other one, so at most one goes on.
        """
        for upload in self.store.unfinished_uploads(key):
            if upload["Key"] == key and upload["UploadId"] != ours:
                raise BackupError(
                    f"another upload into {self.store.url(key)} ({upload['UploadId']}) started in the same second "
                    "as this backup's: this one stops without writing anything; retry it for a key of its own"
                )

    def _refuse_taken(self, key: str) -> None:
        """The last look before anything becomes visible at ``key``: never complete over another backup."""
        held = next(iter(self.store.list_objects(key)), None)
        if held is not None:
            raise BackupError(
                f"{self.store.url(held.key)} appeared while this backup was uploading: refusing to write over it; "
                "retry for a key of its own"
            )

    def _pg_dump_argv(self, snapshot: str) -> list[str]:
        argv = [
            self.binaries.path("pg_dump"),
            f"--format={'custom' if self.config.format == 'custom' else 'plain'}",
            f"--snapshot={snapshot}",
            "--no-password",
            "--lock-wait-timeout=120000",
        ]
        if self.config.format == "custom":
            argv.append("--compress=0")  # zstd does it better, outside pg_dump
        return argv

    def _stream(
        self,
        process: subprocess.Popen[bytes],
        upload: Any,
        local: Any,
        inflight: verify.InFlightScan,
        say: Callable[[str], None],
        clock: float,
    ) -> int:
        """Compress pg_dump's output into the upload, the local copy and the in-flight scan; the
        number of bytes pg_dump wrote."""
        assert process.stdout is not None
        reader = cast(io.RawIOBase, process.stdout)  # unbuffered (bufsize=0): a FileIO
        packer = compressor(
            self.config.format, self.config.compression_level, self.config.compression_threads
        )
        progress = _Progress(say, self.config.progress_interval_seconds, clock, last=clock)

        def emit(data: bytes) -> None:
            if not data:
                return
            if local is not None:
                local.write(data)
            upload.write(data)
            inflight.feed(data)
            progress.compressed += len(data)

        buffer = bytearray(CHUNK)  # one input buffer for the whole dump: no per-chunk allocation
        view = memoryview(buffer)
        while count := reader.readinto(buffer):
            progress.raw += count
            packer.push(view[:count], emit)
            progress.tick()
        packer.finish(emit)
        progress.tick(force=True)
        return progress.raw

    def _clean_up_failure(
        self,
        pg_dump: _PgDump | None,
        upload: Any,
        local: Any,
        local_partial: Path | None,
        say: Callable[[str], None],
    ) -> None:
        if pg_dump is not None:
            pg_dump.kill()
        problem = upload.abort()
        say(problem or f"aborted the multipart upload of {self.store.url(upload.key)}")
        if local is not None:
            local.close()
        if local_partial is not None:
            local_partial.unlink(missing_ok=True)

    # -- publish ---------------------------------------------------------------------------------

    def publish(self, draft: dict[str, Any], verification: dict[str, Any]) -> Manifest:
        """Make a verified upload a backup: its manifest, written last, beside it at its own key.

        A manifest already there is left alone unless it is this backup's own (a retry of this
        step after it was written).
        """
        require_current_draft(draft)
        fields = {k: v for k, v in draft.items() if k not in ("temp_key", "globals_temp_key", "verification")}
        fields["verification"] = Verification(**verification)
        manifest = Manifest.model_validate(fields)
        key = manifest.key
        head = self.store.head(key)
        if head is None:
            raise BackupError(f"{self.store.url(key)} is gone: re-run dump_to_s3 (clear the task in the UI)")
        if int(head["ContentLength"]) != manifest.size_bytes:
            raise BackupError(f"{self.store.url(key)} is not the object that was verified: its size differs")
        manifest_key = key + MANIFEST_SUFFIX
        if self.store.exists(manifest_key):
            current = self.store.get_json(manifest_key)
            if not isinstance(current, dict) or current.get("sha256") != manifest.sha256:
                raise BackupError(
                    f"{self.store.url(manifest_key)} already describes another backup: refusing to write over it"
                )
        self.store.put_json(manifest_key, manifest.to_document())
        return manifest


class _PgDump:
    """A running pg_dump whose stderr is drained in the background (the last lines kept).

    Its libpq service file (the settings without an environment variable) lives until it exits."""

    def __init__(
        self, process: subprocess.Popen[bytes], target: PgTarget, session: contextlib.ExitStack
    ) -> None:
        self.process = process
        self.target = target
        self._session = session
        self._tail: collections.deque[str] = collections.deque(maxlen=20)
        self._reader = threading.Thread(target=self._drain, name="pg_dump-stderr", daemon=True)
        self._reader.start()

    @classmethod
    def start(cls, argv: list[str], target: PgTarget) -> _PgDump:
        process, session = start_streaming(argv, target)
        return cls(process, target, session)

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in iter(self.process.stderr.readline, b""):
            self._tail.append(line.decode(errors="replace").rstrip())

    def check_exit(self) -> None:
        code = self.process.wait()
        self._session.close()
        if code != 0:
            self._reader.join(timeout=5)
            tail = "\n".join(self._tail)
            raise tls_failure(tail, self.target) or BackupError(_pg_dump_failure(code, tail))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._session.close()


class _InventoryThread:
    """Counts rows and reads the schema on the snapshot connection while pg_dump streams."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._thread = threading.Thread(target=self._run, name="inventory", daemon=True)
        self._counts: dict[str, int] = {}
        self._schema: dict[str, Any] = {}
        self._error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            tables = catalog.list_tables(self.conn)
            self._counts = catalog.count_rows(self.conn, tables)
            self._schema = catalog.schema_of(self.conn)
        except BaseException as exc:  # reported by result()
            self._error = exc

    def result(self) -> tuple[dict[str, int], dict[str, Any]]:
        self._thread.join()
        self.raise_if_failed()
        return self._counts, self._schema

    def raise_if_failed(self, wait: float = 2.0) -> None:
        """Raise the inventory's error if it has failed (or fails within ``wait`` seconds)."""
        self._thread.join(timeout=wait)
        if self._error is not None:
            raise BackupError(f"counting rows in the dump's snapshot failed: {self._error}")


def part_size_for(database_bytes: int, configured_mb: int) -> int:
    """The configured part size, raised so that S3's 10,000-part limit fits the whole database.

    The database's size bounds its dump's: pg_dump leaves the indexes out and zstd shrinks the rest.
    """
    needed_mb = -(-database_bytes // (MAX_PARTS * MIB))
    return max(configured_mb, needed_mb) * MIB


def _pg_dump_failure(code: int, stderr: str) -> str:
    detail = stderr.strip().splitlines()[-3:] if stderr.strip() else []
    cause = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
    return f"pg_dump {cause}" + (f": {' | '.join(detail)}" if detail else "")


def _write_durably(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a temporary file, fsynced, then renamed over it."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)


def _check_local_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"probe")
        probe.unlink()
    except OSError as exc:
        raise PrerequisiteError(
            f"local backup directory {str(path)!r} is not writable ({exc.strerror}): fix its permissions "
            "or set backup.local_dir to null"
        ) from None


def _judge_in_flight(
    scanned: verify.ScanResult, source: str, upload: Any, raw_bytes: int, dump_format: DumpFormat
) -> dict[str, Any]:
    """The in-flight checks' verdict on what was sent; the verification record, or VerificationError.

    The scan saw every byte the upload was given (its size must be the upload's), so its sha256 is
    the object's, and the part checks of :meth:`MultipartUpload.complete` tie the two together.
    """
    verify.judge(scanned, source=source, expected_size=upload.bytes_written, expected_sha256=None)
    if scanned.uncompressed_bytes != raw_bytes:
        raise VerificationError(
            f"{source} decompresses to {scanned.uncompressed_bytes} bytes, pg_dump wrote {raw_bytes}"
        )
    return verify.verification_record(scanned, dump_format, method="in-flight")


def verify_upload(
    store: S3Store, draft: dict[str, Any], binaries: PgBinaries, *, read_back: bool = False
) -> dict[str, Any]:
    """The upload's verification record, checked against the draft manifest.

    By default the in-flight checks of :meth:`BackupJob.dump` stand, and the object's size is
    confirmed; with ``read_back`` (or a draft without them) the object is downloaded and read
    whole. The roles' globals, a few kilobytes, are always read back.
    """
    require_current_draft(draft)
    uploaded = draft["key"]
    source = store.url(uploaded)
    if read_back or not draft.get("verification"):
        result = verify.scan(
            store.iter_chunks(uploaded), draft["dump_format"], source=source, binaries=binaries
        )
        verify.judge(
            result, source=source, expected_size=draft["size_bytes"], expected_sha256=draft["sha256"]
        )
        if result.uncompressed_bytes != draft["uncompressed_bytes"]:
            raise VerificationError(
                f"{source} decompresses to {result.uncompressed_bytes} bytes, pg_dump wrote {draft['uncompressed_bytes']}"
            )
        record = verify.verification_record(result, draft["dump_format"])
    else:
        head = store.head(uploaded)
        if head is None or int(head["ContentLength"]) != draft["size_bytes"]:
            size = None if head is None else int(head["ContentLength"])
            raise VerificationError(
                f"{source} holds {size} bytes, {draft['size_bytes']} were uploaded and verified"
            )
        record = {**draft["verification"], "checks": list(draft["verification"]["checks"])}
    globals_key = draft.get("globals_key")
    if globals_key and draft.get("globals_sha256"):
        roles = store.get_bytes(globals_key)
        if (
            len(roles) != draft["globals_size_bytes"]
            or hashlib.sha256(roles).hexdigest() != draft["globals_sha256"]
        ):
            raise VerificationError(f"{store.url(globals_key)} is not the roles pg_dumpall wrote")
        record["checks"].append("globals sha256")
    return record


def require_current_draft(draft: dict[str, Any]) -> None:
    """Refuse a draft that an earlier version staged under ``.incoming/`` to copy over a slot's
    backup: this version never copies one backup over another."""
    if draft.get("temp_key"):
        raise BackupError(
            f"the dump {draft['temp_key']!r} was staged by an earlier version of stellar-ops to replace "
            f"{draft['key']!r}: clear dump_to_s3 to take the backup again under a key of its own"
        )
