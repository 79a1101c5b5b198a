"""Recovery to a moment: a base backup fetched into a new data directory, the archived WAL replayed
up to a target time (or to the end of the archive, ``latest``), then promoted.

:func:`recover` leaves a promoted, running server on a private Unix socket and returns a
:class:`RecoveredServer`: its :class:`RecoveryReport` says which base backup, the target, the time
actually reached (the last replayed commit, ``pg_last_xact_replay_timestamp()``), the WAL segments
replayed and how long each part took. The caller then either copies a database out of it and removes
it (:meth:`RecoveredServer.remove`), or keeps it as a whole server (:meth:`RecoveredServer.keep`:
stopped cleanly, its own configuration put back). :func:`recovered` is the scratch-server form.

How it is made safe:

- the base backup is the newest complete one (its ``backup.json`` is there) that ends at or before
  the target; a target before the oldest one's ``stop_time`` or after the newest archived WAL is
  refused naming the window, before anything is downloaded;
- the archive is checked for a missing segment between the base backup's first and the one the
  target needs before the download; PostgreSQL's own "recovery ended before configured recovery
  target was reached" is the backstop: both name the missing segment. Recovery never stops short of
  the target silently;
- the WAL comes through ``barman-cloud-wal-restore`` (the tool that archives it), whose S3
  credentials are only in the postmaster's environment, never in its configuration or an argv;
- the recovering server archives nothing (``archive_mode = off``: its new timeline must not mix into
  the archive it reads), listens on no TCP port, and takes connections only on a socket directory
  that only PostgreSQL's user (and root) may enter: the source's passwords are unknown here, so it
  trusts who reaches that socket, and no one else can.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import shlex
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stellar_ops.core.errors import (
    BackupNotFoundError,
    ConfigError,
    PrerequisiteError,
    RestoreError,
    ScratchServerError,
    VerificationError,
)
from stellar_ops.core.processes import chown_tree
from stellar_ops.pitr import catalog, layout
from stellar_ops.pitr.layout import BaseBackupRecord, WalFile
from stellar_ops.postgres.binaries import PgBinaries
from stellar_ops.postgres.pitr import PitrConfig, conf_string
from stellar_ops.postgres.server import LocalPgServer
from stellar_ops.postgres.target import PgTarget, connect, major_of
from stellar_ops.storage.compression import decompress
from stellar_ops.storage.s3 import S3Store

log = logging.getLogger(__name__)

LATEST = "latest"
RESTORE_PROGRAM = "barman-cloud-wal-restore"
SUPERUSER = "postgres"
SEGMENTS_PER_LOG = 0x100000000 // (16 * 1024 * 1024)  # with the default 16 MiB WAL segments
DEFAULT_TIMEOUT = 6 * 3600.0
# the files of the data directory recovery overrides; put back by RecoveredServer.keep()
OVERRIDDEN = ("postgresql.auto.conf", "pg_hba.conf")
SAVED_SUFFIX = ".stellar-ops-saved"
_RESTORED = re.compile(r'restored log file "([0-9A-F]{24})" from archive')
_STOPPING = re.compile(r"recovery stopping (?:before|after) [^\n]*")
_NOT_REACHED = "recovery ended before configured recovery target was reached"
_NO_CHECKPOINT = ("could not locate required checkpoint record", "could not find redo location")
_TROUBLE = re.compile(r"^.*\b(?:FATAL|PANIC):\s+.*$", re.MULTILINE)


# -- the target ----------------------------------------------------------------------------------


def parse_target_time(text: str | None, *, what: str = "target_time") -> datetime | None:
    """``latest`` (None: the end of the archive), or an ISO-8601 time; one without a zone is UTC."""
    value = (text or "").strip()
    if not value:
        raise ConfigError(f"{what} is empty: give an ISO-8601 time (2026-12-07T06:30:00Z) or 'latest'")
    if value.lower() == LATEST:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{what} {value!r} is neither 'latest' nor an ISO-8601 time such as 2026-12-07T06:30:00Z"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def describe_target(target: datetime | None) -> str:
    return LATEST if target is None else iso(target)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- the archive ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WalArchive:
    """barman-cloud's archive of one server, ``s3://<bucket>/<prefix>/<server>/``, and how PostgreSQL
    fetches from it: ``restore_program`` (barman-cloud-wal-restore's path), with ``environment``
    (the S3 credentials) given to the postmaster alone."""

    store: S3Store
    prefix: str
    server: str
    restore_program: str = RESTORE_PROGRAM
    endpoint_url: str | None = None
    environment: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def destination(self) -> str:
        return f"s3://{self.store.bucket}/{self.prefix.strip('/')}"

    def where(self, what: str = "") -> str:
        return f"{self.destination}/{self.server}/{what}"

    def restore_command(self) -> str:
        """PostgreSQL's ``restore_command``: %f and %p are its placeholders, left unquoted."""
        argv = [self.restore_program]
        if self.endpoint_url:
            argv += ["--endpoint-url", self.endpoint_url]
        argv += [self.destination, self.server, "%f", "%p"]
        return " ".join(part if part in ("%f", "%p") else shlex.quote(part) for part in argv)


def wal_archive(store: S3Store, pitr: PitrConfig) -> WalArchive:
    """The archive the ``pitr`` section names in ``store``'s bucket, read the way ``store`` reads."""
    endpoint, environment = s3_access(store.client)
    return WalArchive(
        store,
        pitr.prefix,
        pitr.server_name,
        restore_program=restore_program(pitr.tools_dir),
        endpoint_url=endpoint,
        environment=environment,
    )


def restore_program(tools_dir: str | None) -> str:
    """barman-cloud-wal-restore in ``tools_dir`` (``pitr.tools_dir``), else on PATH."""
    if tools_dir:
        program = Path(tools_dir) / RESTORE_PROGRAM
        if not program.exists():
            raise PrerequisiteError(
                f"{program} is missing: pitr.tools_dir must name the bin directory of a venv with "
                "barman[cloud] (scripts/pitr_venv.sh builds one)"
            )
        return str(program)
    found = shutil.which(RESTORE_PROGRAM)
    if not found:
        raise PrerequisiteError(
            f"{RESTORE_PROGRAM} is not on PATH: install barman[cloud] (scripts/pitr_venv.sh) and set "
            "pitr.tools_dir to its bin directory"
        )
    return found


def s3_access(client: Any) -> tuple[str | None, dict[str, str]]:
    """The endpoint (None for AWS itself) and the credentials environment of a boto3 S3 client,
    for barman-cloud in the postmaster: the same bucket, reached the way this process reaches it."""
    endpoint = getattr(client.meta, "endpoint_url", None)
    if endpoint and ".amazonaws.com" in endpoint:
        endpoint = None
    env: dict[str, str] = {}
    # botocore keeps the credentials it resolved (connection, environment, profile) on the signer
    credentials = getattr(getattr(client, "_request_signer", None), "_credentials", None)
    if credentials is not None:
        frozen = credentials.get_frozen_credentials()
        env["AWS_ACCESS_KEY_ID"] = frozen.access_key
        env["AWS_SECRET_ACCESS_KEY"] = frozen.secret_key
        if frozen.token:
            env["AWS_SESSION_TOKEN"] = frozen.token
    region = getattr(client.meta, "region_name", None)
    if region:
        env["AWS_DEFAULT_REGION"] = region
    return endpoint, env


def newest_archived(wals: Iterable[WalFile]) -> datetime | None:
    times = [w.last_modified for w in wals if w.kind == "segment" and w.last_modified is not None]
    return max(times) if times else None


def window_text(records: list[BaseBackupRecord], newest: datetime | None) -> str:
    oldest = iso(records[0].stop_time) if records else "no base backup"
    return f"the recoverable window is {oldest} to {iso(newest) if newest else 'no archived WAL'}"


def choose_base_backup(
    records: list[BaseBackupRecord], target: datetime | None, newest: datetime | None, *, where: str
) -> BaseBackupRecord:
    """The newest complete base backup that ends at or before ``target`` (``latest``: the newest)."""
    if not records:
        raise BackupNotFoundError(
            f"no complete base backup under {where}: run db_base_backup (stellar-ops pitr base-backup) first"
        )
    if newest is None:
        raise BackupNotFoundError(f"no archived WAL under {where}: is WAL archiving on?")
    if target is None:
        return max(records, key=lambda r: r.stop_time)
    if target < records[0].stop_time:
        raise ConfigError(
            f"target {iso(target)} is before the oldest base backup ends ({records[0].backup_id}, "
            f"{iso(records[0].stop_time)}): {window_text(records, newest)}"
        )
    if target > newest:
        raise ConfigError(
            f"target {iso(target)} is after the newest archived WAL ({iso(newest)}): "
            f"{window_text(records, newest)}"
        )
    return max((r for r in records if r.stop_time <= target), key=lambda r: r.stop_time)


def next_segment(name: str) -> str:
    position = layout.parse_segment(name)
    seg = position.seg + 1
    log_id = position.log + seg // SEGMENTS_PER_LOG
    return layout.SegmentPosition(position.timeline, log_id, seg % SEGMENTS_PER_LOG).name


def first_gap(
    wals: list[WalFile], record: BaseBackupRecord, target: datetime | None
) -> tuple[str, str] | None:
    """(missing segment, a later one that is there) between the base backup's first segment and the
    one ``target`` needs (``latest``: the newest), on its timeline; None when none is missing.

    A segment archived at or after the target holds the target's WAL; with no later timeline in the
    archive (a server recovered and archiving again), whose segments this does not follow."""
    if any(w.timeline > record.timeline for w in wals):
        return None
    present = sorted(
        (w for w in wals if w.kind == "segment" and w.segment is not None and w.timeline == record.timeline),
        key=lambda w: w.position or (0, 0),
    )
    start = layout.parse_segment(record.start_wal).position
    needed = [w for w in present if (w.position or (0, 0)) >= start]
    if not needed:
        return None
    if target is not None:
        reaching = [w for w in needed if w.last_modified is not None and w.last_modified >= target]
        end = reaching[0] if reaching else needed[-1]
    else:
        end = needed[-1]
    names = {w.name for w in needed}
    expected = record.start_wal
    while True:
        if expected not in names:
            return expected, end.name
        if expected == end.name:
            return None
        expected = next_segment(expected)


# -- what the server's log says ------------------------------------------------------------------


def restored_segments(log_text: str) -> list[str]:
    """The segments recovery fetched from the archive, in order (each once)."""
    seen: dict[str, None] = {}
    for name in _RESTORED.findall(log_text):
        seen.setdefault(name, None)
    return list(seen)


def stop_reason(log_text: str) -> str | None:
    """PostgreSQL's own "recovery stopping before commit of transaction N, time T", if it said it."""
    found = _STOPPING.findall(log_text)
    return found[-1].strip() if found else None


def failure(log_text: str, record: BaseBackupRecord, target: datetime | None, archive: WalArchive) -> str:
    """Why a recovering server stopped, naming the missing segment where that is the cause."""
    restored = restored_segments(log_text)
    last = restored[-1] if restored else None
    missing = next_segment(last) if last else record.start_wal
    where = archive.where(layout.WALS_DIR + "/")
    after = f"after {last}" if last else f"the base backup's first, {record.start_wal}"
    if _NOT_REACHED in log_text:
        return (
            f"recovery to {describe_target(target)} failed: WAL segment {missing} ({after}) is missing "
            f"from {where}; PostgreSQL stopped before the target rather than end short of it. A target "
            f"before the last transaction of {last or record.start_wal} can still be recovered; if "
            f"{missing} is simply not archived yet, no commit after the target is archived either: "
            "try again after the next archive_timeout"
        )
    if any(text in log_text for text in _NO_CHECKPOINT):
        return (
            f"recovery from base backup {record.backup_id} failed: its first WAL segment "
            f"{record.start_wal} cannot be read from {where}"
        )
    trouble = [line.strip() for line in _TROUBLE.findall(log_text)][-5:]
    return (
        f"the recovering server stopped (last segment restored: {last or 'none'}, so {missing} is the next "
        "one it needs): " + (" | ".join(trouble) if trouble else "no FATAL line in its log")
    )


# -- fetching the base backup --------------------------------------------------------------------


class _ChunkReader(io.RawIOBase):
    """A readable file over an iterator of bytes (tarfile's stream mode reads from it)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._view = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._view:
            try:
                self._view = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._view))
        buffer[:size] = self._view[:size]
        self._view = self._view[size:]
        return size


def fetch_base_backup(
    store: S3Store, key: str, record: BaseBackupRecord, data_dir: Path, run_as: str | None
) -> int:
    """Download, decompress and untar ``key`` into ``data_dir`` (new or empty) in one pass; the
    stored bytes' sha256 and size must match the record, else the directory is emptied and it
    fails naming the object. The raw bytes written."""
    digest = hashlib.sha256()
    stored = 0

    def counted() -> Iterator[bytes]:
        nonlocal stored
        for chunk in store.iter_chunks(key):
            digest.update(chunk)
            stored += len(chunk)
            yield chunk

    source = store.url(key)
    raw = 0
    try:
        reader = io.BufferedReader(_ChunkReader(decompress(counted(), "custom", source=source)), 1 << 20)
        with tarfile.open(fileobj=reader, mode="r|") as archive:
            for member in archive:
                raw += member.size
                archive.extract(member, data_dir, filter="data")
            for _ in iter(lambda: reader.read(1 << 20), b""):
                pass  # the rest of the stream (the tar's padding): every stored byte is hashed
    except tarfile.TarError as exc:
        _empty(data_dir)
        raise VerificationError(f"{source} is not a readable tar archive: {exc}") from None
    except BaseException:
        _empty(data_dir)
        raise
    if digest.hexdigest() != record.sha256 or stored != record.stored_bytes:
        _empty(data_dir)
        raise VerificationError(
            f"{source} does not match its backup.json: sha256 {digest.hexdigest()} and {stored} bytes, "
            f"expected {record.sha256} and {record.stored_bytes} bytes"
        )
    for needed in ("pg_wal/archive_status",):  # -X none: the archive may hold them empty, or not
        (data_dir / needed).mkdir(parents=True, exist_ok=True)
    for missing_ok in ("postgresql.conf", "pg_ident.conf"):  # Debian keeps them in /etc
        (data_dir / missing_ok).touch(exist_ok=True)
    os.chmod(data_dir, 0o700)
    chown_tree(data_dir, run_as)
    return raw


def _empty(data_dir: Path) -> None:
    for child in data_dir.iterdir() if data_dir.exists() else []:
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


# -- the recovering server -----------------------------------------------------------------------


@dataclass
class RecoveringServer(LocalPgServer):
    """A :class:`LocalPgServer` over a data directory recovery made (no initdb), on a socket only."""

    data_path: Path = field(default_factory=Path)
    socket_dir: Path = field(default_factory=Path)

    @property
    def data_dir(self) -> Path:
        return self.data_path

    def target(self, dbname: str = "postgres") -> PgTarget:
        return PgTarget(str(self.socket_dir), self.port, self.superuser, dbname)


def recovery_settings(
    archive: WalArchive, target: datetime | None, *, port: int, socket_dir: Path
) -> dict[str, str]:
    """What ``postgresql.auto.conf`` gets (after the source's own lines, so these win)."""
    settings = {
        "restore_command": conf_string(archive.restore_command()),
        "recovery_target_action": "'promote'",
        "recovery_target_timeline": "'latest'",
        # its new timeline must never reach the archive it recovers from
        "archive_mode": "'off'",
        "port": str(port),
        "listen_addresses": "''",
        "unix_socket_directories": conf_string(str(socket_dir)),
        "unix_socket_permissions": "0700",
        "ssl": "'off'",  # socket only; the source's certificate files may not be here
        # no session before the promotion, which spares the hot standby's demand that
        # max_connections & co. be at least the source's (whose postgresql.conf may not be here)
        "hot_standby": "'off'",
        "primary_conninfo": "''",
        "synchronous_standby_names": "''",  # the source's standbys are not this server's
        "logging_collector": "'off'",
        "log_destination": "'stderr'",
        "log_min_messages": "'warning'",  # "restored log file" is LOG: shown
    }
    if target is not None:
        settings["recovery_target_time"] = conf_string(target.isoformat())
        settings["recovery_target_inclusive"] = "'on'"
    return settings


@dataclass(frozen=True)
class RecoveryReport:
    """What a recovery did; nothing in it is a secret."""

    base_backup_id: str
    base_backup_stop_time: str
    target: str  # ISO-8601 UTC, or 'latest'
    reached: str | None  # the last replayed commit's time; None: no transaction since the base backup
    stop_reason: str | None  # PostgreSQL's "recovery stopping before commit of transaction N, time T"
    wal_segments_replayed: int
    first_segment: str | None
    last_segment: str | None
    timeline: int  # the recovered server's new timeline
    data_dir: str
    fetch_seconds: float
    replay_seconds: float
    total_seconds: float
    base_backup_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        reached = self.reached or f"no transaction after the base backup ({self.base_backup_stop_time})"
        return (
            f"recovered base backup {self.base_backup_id} to {self.target}: reached {reached}, "
            f"{self.wal_segments_replayed} WAL segment(s) replayed ({self.first_segment or '-'} to "
            f"{self.last_segment or '-'}), timeline {self.timeline}; fetch {self.fetch_seconds:.1f}s, "
            f"replay {self.replay_seconds:.1f}s, total {self.total_seconds:.1f}s"
        )


@dataclass
class RecoveredServer:
    """A promoted, running server; :meth:`target` reaches it (its socket, no password)."""

    server: RecoveringServer
    report: RecoveryReport

    @property
    def data_dir(self) -> Path:
        return self.server.data_dir

    @property
    def log_path(self) -> Path:
        return self.server.log_path

    def target(self, dbname: str = "postgres") -> PgTarget:
        return self.server.target(dbname)

    def stop(self) -> None:
        """A clean (fast) shutdown: a checkpoint, then exit."""
        self.server.stop()

    def keep(self) -> Path:
        """Stop cleanly and leave the data directory as the source configured it (its own
        ``postgresql.auto.conf`` and ``pg_hba.conf`` back): a whole server for the database host."""
        self.stop()
        restore_saved(self.data_dir)
        shutil.rmtree(self.server.socket_dir, ignore_errors=True)
        return self.data_dir

    def remove(self) -> None:
        """Stop it and delete its data directory, socket directory and log; safe to call twice."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        shutil.rmtree(self.server.socket_dir, ignore_errors=True)
        self.server.log_path.unlink(missing_ok=True)


def save_and_override(data_dir: Path, settings: dict[str, str], run_as: str | None) -> None:
    """Keep the source's files aside, then: its settings plus ``settings``; our pg_hba.conf (the
    socket, trusted: only PostgreSQL's user and root enter its directory); recovery.signal."""
    for name in OVERRIDDEN:
        path = data_dir / name
        saved = data_dir / (name + SAVED_SUFFIX)
        if path.exists():
            shutil.copy2(path, saved)
    auto = data_dir / "postgresql.auto.conf"
    own = auto.read_text() if auto.exists() else ""
    lines = [own.rstrip("\n"), "# stellar-ops point-in-time recovery (put back when it ends)"]
    lines += [f"{key} = {value}" for key, value in settings.items()]
    auto.write_text("\n".join(line for line in lines if line) + "\n")
    (data_dir / "pg_hba.conf").write_text("# stellar-ops point-in-time recovery\nlocal all all trust\n")
    (data_dir / "recovery.signal").touch()
    chown_tree(data_dir, run_as)


def restore_saved(data_dir: Path) -> None:
    for name in OVERRIDDEN:
        saved = data_dir / (name + SAVED_SUFFIX)
        if saved.exists():
            os.replace(saved, data_dir / name)
        elif name == "postgresql.auto.conf":
            (data_dir / name).unlink(missing_ok=True)


def _socket_dir(run_as: str | None) -> Path:
    # short, under /tmp: a socket's path is limited to 107 bytes
    path = Path(tempfile.mkdtemp(prefix="stellar-pitr-"))
    os.chmod(path, 0o700)
    chown_tree(path, run_as)
    return path


def _check_binaries(binaries: PgBinaries, record: BaseBackupRecord) -> None:
    major, text = binaries.version("pg_dump")
    needed = major_of(record.pg_version_num)
    if major != needed:
        raise PrerequisiteError(
            f"base backup {record.backup_id} is of PostgreSQL {needed}, and the server binaries here "
            f"({binaries.bin_dir}) are {text}: a physical backup needs the same major (backup.pg_bin_dir)"
        )


def _wait_promoted(
    server: RecoveringServer, timeout: float, why_stopped: Callable[[], str]
) -> tuple[datetime | None, int]:
    """Until recovery ends and the server is promoted: (last replayed commit time, timeline)."""
    deadline = time.monotonic() + timeout
    while True:
        if server.pid is None:
            raise RestoreError(why_stopped())
        try:
            with connect(server.target()) as conn:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    # the new timeline is in the name of the segment it writes now (the control
                    # file has it only after the end-of-recovery checkpoint)
                    reached, segment = conn.execute(
                        "SELECT pg_last_xact_replay_timestamp(), pg_walfile_name(pg_current_wal_lsn())"
                    ).fetchone()
                    return reached, int(str(segment)[:8], 16)
        except Exception:  # noqa: BLE001 - starting up, or promoting under the query: asked again (an
            pass  # exited server is caught above, at the next turn)
        if time.monotonic() > deadline:
            raise RestoreError(
                f"recovery did not end within {timeout:.0f}s (pitr.recovery_timeout_seconds): "
                f"see {server.log_path}"
            )
        time.sleep(0.5)


def recover(
    archive: WalArchive,
    target: datetime | None,
    data_dir: Path,
    *,
    binaries: PgBinaries,
    run_as: str | None,
    superuser: str = SUPERUSER,
    timeout: float = DEFAULT_TIMEOUT,
    log_file: Path | None = None,
    check_archive: bool = True,
    say: Callable[[str], None] = log.info,
) -> RecoveredServer:
    """Recover ``archive`` to ``target`` (None: ``latest``) into ``data_dir`` (new, or empty) and
    leave it running, promoted. On failure the server is stopped and the error names the cause;
    the data directory is left as it is (for :func:`recovered`, removed) and the log kept.

    ``run_as``: PostgreSQL's user when this runs as root (None otherwise). ``superuser``: a
    superuser of the source cluster, whom the socket trusts. ``check_archive`` off skips the
    look for a missing segment before the download, leaving PostgreSQL to find it."""
    started = time.monotonic()
    records = catalog.complete_base_backups(archive.store, archive.prefix, archive.server)
    wals = catalog.list_wal(archive.store, archive.prefix, archive.server)
    record = choose_base_backup(records, target, newest_archived(wals), where=archive.where())
    if check_archive:
        gap = first_gap(wals, record, target)
        if gap is not None:
            raise RestoreError(
                f"recovery to {describe_target(target)} cannot succeed: WAL segment {gap[0]} is missing "
                f"from {archive.where(layout.WALS_DIR + '/')} (base backup {record.backup_id} needs every "
                f"segment from {record.start_wal} to {gap[1]})"
            )
    _check_binaries(binaries, record)
    data_dir = Path(data_dir)
    if data_dir.exists() and any(data_dir.iterdir()):
        raise ConfigError(f"{data_dir} is not empty: recovery makes a new data directory")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = layout.tar_key(archive.prefix, archive.server, record.backup_id)
    say(
        f"recovering to {describe_target(target)} from base backup {record.backup_id} ({archive.store.url(key)})"
    )
    raw = fetch_base_backup(archive.store, key, record, data_dir, run_as)
    fetched = time.monotonic()
    say(f"fetched and checked {archive.store.url(key)} into {data_dir} in {fetched - started:.1f}s")
    socket_dir = _socket_dir(run_as)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PG"))}
    env.update(archive.environment)
    server = RecoveringServer(
        data_dir.parent,
        binaries=binaries,
        run_as=run_as,
        env=env,
        superuser=superuser,
        log_file=log_file or data_dir.parent / f"{data_dir.name}.recovery.log",
        data_path=data_dir,
        socket_dir=socket_dir,
    )
    server.log_path.unlink(missing_ok=True)
    save_and_override(
        data_dir, recovery_settings(archive, target, port=server.port, socket_dir=socket_dir), run_as
    )

    def why_stopped() -> str:
        return failure(_log_text(server), record, target, archive) + f" (log: {server.log_path})"

    try:
        try:  # it answers once promoted: the whole replay is this wait
            server.start(timeout=timeout)
        except ScratchServerError as exc:
            if "timed out" in str(exc):
                raise RestoreError(
                    f"recovery did not end within {timeout:.0f}s (pitr.recovery_timeout_seconds); last "
                    f"segment restored: {(restored_segments(_log_text(server)) or ['none'])[-1]} "
                    f"(log: {server.log_path})"
                ) from None
            raise RestoreError(why_stopped()) from None
        reached, timeline = _wait_promoted(
            server, max(1.0, timeout - (time.monotonic() - fetched)), why_stopped
        )
        text = _log_text(server)
        restored = restored_segments(text)
        if target is None and check_archive:
            _check_reached_the_end(restored, wals, record, archive)
    except BaseException:
        server.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)
        raise
    finished = time.monotonic()
    report = RecoveryReport(
        base_backup_id=record.backup_id,
        base_backup_stop_time=iso(record.stop_time),
        target=describe_target(target),
        reached=iso(reached) if reached is not None else None,
        stop_reason=stop_reason(text),
        wal_segments_replayed=len(restored),
        first_segment=restored[0] if restored else None,
        last_segment=restored[-1] if restored else None,
        timeline=timeline,
        data_dir=str(data_dir),
        fetch_seconds=round(fetched - started, 3),
        replay_seconds=round(finished - fetched, 3),
        total_seconds=round(finished - started, 3),
        base_backup_bytes=raw,
    )
    say(report.summary())
    return RecoveredServer(server, report)


def _check_reached_the_end(
    restored: list[str], wals: list[WalFile], record: BaseBackupRecord, archive: WalArchive
) -> None:
    """``latest`` ends where the archive has no next segment: that must be the archive's end (as it
    was listed before recovery), not a hole with later segments beyond it."""
    if not restored:
        return
    last = layout.parse_segment(restored[-1])
    later = sorted(
        w.name
        for w in wals
        if w.kind == "segment" and w.timeline == last.timeline and (w.position or (0, 0)) > last.position
    )
    if later:
        raise RestoreError(
            f"recovery to latest stopped at {restored[-1]}: WAL segment {next_segment(restored[-1])} is "
            f"missing from {archive.where(layout.WALS_DIR + '/')}, though later ones are there "
            f"({later[0]} to {later[-1]}); base backup {record.backup_id} cannot reach past the hole"
        )


def _log_text(server: LocalPgServer) -> str:
    try:
        return server.log_path.read_text(errors="replace")
    except OSError:
        return ""


@contextmanager
def recovered(
    archive: WalArchive,
    target: datetime | None,
    work_dir: Path,
    name: str,
    *,
    binaries: PgBinaries,
    run_as: str | None,
    superuser: str = SUPERUSER,
    timeout: float = DEFAULT_TIMEOUT,
    say: Callable[[str], None] = log.info,
) -> Iterator[RecoveredServer]:
    """A recovered scratch server in ``work_dir/name/data`` for the block; removed after it. Its
    log (``work_dir/name.recovery.log``) goes with it, unless the recovery failed: then it stays
    for the error's reader, and only the data directory goes."""
    base = Path(work_dir) / name
    if base.exists():
        raise ScratchServerError(f"scratch directory {base} already exists: another recovery is using it")
    base.mkdir(parents=True)
    os.chmod(base, 0o755)
    try:
        server = recover(
            archive,
            target,
            base / "data",
            binaries=binaries,
            run_as=run_as,
            superuser=superuser,
            timeout=timeout,
            log_file=Path(work_dir) / f"{name}.recovery.log",
            say=say,
        )
        try:
            yield server
        finally:
            server.remove()
    finally:
        shutil.rmtree(base, ignore_errors=True)
