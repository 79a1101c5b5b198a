"""Restore a backup into a scratch server, and observe what came back.

The observation (exact row counts, schema, sanity-query results) is plain data, so the DR test's
verdicts can be reached anywhere, after the scratch server is gone.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import hashlib
import itertools
import logging
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from stellar_ops.catalogue import verify
from stellar_ops.catalogue.manifest import Manifest
from stellar_ops.catalogue.source import ResolvedBackup, file_chunks, read_chunks, source_label
from stellar_ops.core.errors import RestoreError, VerificationError
from stellar_ops.dr.engine import parallel_load, post_data, staging
from stellar_ops.dr.engine.post_data_runner import PostDataRunner
from stellar_ops.dr.engine.roles import PreparedRoles, main_owner, prepare, referenced_roles
from stellar_ops.postgres import catalog
from stellar_ops.postgres.binaries import PgBinaries
from stellar_ops.postgres.target import PgTarget, connect, quote_ident, tls_failure
from stellar_ops.storage.compression import decompress
from stellar_ops.storage.s3 import S3Store

log = logging.getLogger(__name__)

RESTORED_DB = "stellar_escrow"


@dataclass(frozen=True)
class NewDatabase:
    """The database a restore creates: a drill's scratch one (dropped first if it is there), or a
    recovery's, which must not exist (whatever was there was renamed aside before)."""

    name: str = RESTORED_DB
    drop_existing: bool = True


SCRATCH = NewDatabase()
_POST_DATA = "pg_restore (indexes and constraints)"


def fetch_plain(store: S3Store | None, backup: ResolvedBackup, manifest: Manifest | None, dest: Path) -> Path:
    """Download a plain-SQL backup into ``dest``, checking size and sha256: a file or an error.

    It stays gzip-compressed on disk and is decompressed again into psql.
    """
    source = source_label(store, backup)
    path = dest / "backup.sql.gz"
    with open(path, "wb") as sink:
        result = verify.scan(
            read_chunks(store, backup), "plain", source=source, check_archive=False, compressed_sink=sink
        )
    try:
        verify.judge(
            result,
            source=source,
            expected_size=manifest.size_bytes if manifest else None,
            expected_sha256=manifest.sha256 if manifest else None,
        )
    except VerificationError:
        path.unlink(missing_ok=True)
        raise
    return path


# -- restore ----------------------------------------------------------------------------------------


def _roles_in_plain(path: Path) -> set[str]:
    """The roles a plain SQL dump names, read through once."""
    roles: set[str] = set()
    carry = b""
    for data in decompress(file_chunks(path), "plain", source=str(path)):
        text = carry + data
        cut = text.rfind(b"\n") + 1
        roles |= referenced_roles(text[:cut].decode(errors="replace"))
        carry = text[cut:]
    return roles | referenced_roles(carry.decode(errors="replace"))


@dataclass(frozen=True)
class RestoreResult:
    seconds: float
    roles_created: list[str]  # named by the archive but missing: created NOLOGIN
    roles_from_globals: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _with_roles(
    server: PgTarget,
    referenced: set[str],
    globals_sql: bytes | None,
    alter_existing: bool,
    *,
    database: str | None = None,
    owner: str | None = None,
) -> PreparedRoles:
    """The backup's roles; for a restoring role that is no superuser, the new database then belongs
    to the role that owns the backup's objects, as the source database did: since PostgreSQL 15 only
    the database's owner may create in its ``public`` schema, which ``ALTER ... OWNER TO`` needs."""
    with connect(server.with_dbname("postgres")) as conn:
        prepared = prepare(conn, referenced, globals_sql, alter_existing=alter_existing)
        superuser = conn.execute("SELECT usesuper FROM pg_user WHERE usename = current_user").fetchone()[0]
        if database and owner and not superuser:
            conn.execute(f"ALTER DATABASE {quote_ident(database)} OWNER TO {quote_ident(owner)}")
        return prepared


def restore_plain(
    server: PgTarget,
    path: Path,
    *,
    binaries: PgBinaries,
    globals_sql: bytes | None = None,
    alter_existing_roles: bool = True,
    database: NewDatabase = SCRATCH,
    say: Callable[[str], None] = log.info,
) -> RestoreResult:
    """Restore a gzip-compressed SQL file into a new database on ``server``."""
    started = time.monotonic()
    _fresh_database(server, database)
    roles = _with_roles(server, _roles_in_plain(path), globals_sql, alter_existing_roles)
    _psql_restore(server.with_dbname(database.name), path, binaries, say)
    return _result(started, roles)


def _result(started: float, roles: PreparedRoles) -> RestoreResult:
    return RestoreResult(
        seconds=round(time.monotonic() - started, 3),
        roles_created=roles.assumed,
        roles_from_globals=roles.from_globals,
        warnings=roles.warnings,
    )


def _pg_restore(
    target: PgTarget,
    path: Path,
    jobs: int,
    binaries: PgBinaries,
    *,
    sections: tuple[str, ...],
    what: str,
    entries: list[str] | None = None,
) -> None:
    """``pg_restore -j`` of an archive file, stopping at the first error (one transaction if ``jobs`` is 1).

    ``entries``: only these lines of its ``pg_restore -l`` listing.
    """
    if entries is None and "pre-data" in sections:
        entries = _entries_a_non_superuser_may_restore(target, path, binaries)
    argv = [binaries.path("pg_restore"), "--exit-on-error", "--no-password"]
    argv.append("--single-transaction" if jobs == 1 else f"--jobs={jobs}")
    argv += [f"--section={section}" for section in sections]
    if entries is not None:
        if not entries:
            return
        listing = path.parent / f"{path.stem}-{len(entries)}-{time.monotonic_ns()}.list"
        listing.write_text(post_data.list_file_text(entries))
        argv.append(f"--use-list={listing}")
    with target.client_session() as env:
        result = subprocess.run(
            [*argv, "-d", target.dbname, str(path)], capture_output=True, text=True, env=env
        )
    if result.returncode != 0:
        raise tls_failure(result.stderr, target) or RestoreError(
            f"{what} failed: {_first_error(result.stderr)}"
        )


_EXTENSION_COMMENT = re.compile(r"^\d+; \d+ \d+ COMMENT - EXTENSION ")


def _entries_a_non_superuser_may_restore(
    target: PgTarget, path: Path, binaries: PgBinaries
) -> list[str] | None:
    """For a restoring role that is no superuser, the archive's entries without the comments on
    extensions: only an extension's owner may set its comment, and the extension (created from
    ``template1`` or by its trusted script) is not the restoring role's. None for a superuser."""
    with connect(target) as conn:
        if conn.execute("SELECT usesuper FROM pg_user WHERE usename = current_user").fetchone()[0]:
            return None
    with target.client_session() as env:
        result = subprocess.run(
            [binaries.path("pg_restore"), "--list", str(path)], capture_output=True, text=True, env=env
        )
    if result.returncode != 0:
        raise RestoreError(f"pg_restore --list cannot read the archive: {_first_error(result.stderr)}")
    return [
        line
        for line in result.stdout.splitlines()
        if line.strip() and not line.startswith(";") and not _EXTENSION_COMMENT.match(line)
    ]


def _psql_restore(target: PgTarget, path: Path, binaries: PgBinaries, say: Callable[[str], None]) -> None:
    say(f"psql -v ON_ERROR_STOP=1 into {target.describe()}")
    argv = [
        binaries.path("psql"),
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "--echo-errors",
        "--no-password",
        "-f",
        "-",
    ]
    sql = decompress(file_chunks(path), "plain", source=str(path))
    with target.client_session() as env:
        code, stderr = _run_fed(argv, sql, env)
    if code != 0:
        raise tls_failure(stderr, target) or RestoreError(
            f"psql stopped at the first failing statement: {_first_error(stderr)}"
        )


def _run_fed(argv: list[str], chunks: Iterable[bytes], env: dict[str, str]) -> tuple[int, str]:
    """Run a client program fed ``chunks`` on stdin: its exit code and stderr.

    A program that stops reading at its first error is left to say so through its exit code and
    stderr. If producing the chunks fails, the program is killed and the error raised.
    """
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors, env=env
        )
        assert process.stdin is not None
        try:
            _write_all(process.stdin, chunks)
        except BaseException:
            process.kill()
            process.wait()
            raise
        code = process.wait()
        errors.seek(0)
        return code, errors.read().decode(errors="replace")


def _write_all(stdin: IO[bytes], chunks: Iterable[bytes]) -> None:
    """Write ``chunks`` to a program's stdin and close it; a program that stopped reading (it
    reports why itself) ends the writing without an error."""
    try:
        for data in chunks:
            stdin.write(data)
        stdin.close()
    except BrokenPipeError:
        pass


def _fresh_database(server: PgTarget, database: NewDatabase) -> None:
    with connect(server.with_dbname("postgres")) as conn:
        if database.drop_existing:
            conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(database.name)}")
        try:
            conn.execute(f"CREATE DATABASE {quote_ident(database.name)}")
        except Exception as exc:
            message = " ".join(str(exc).split())
            raise RestoreError(
                f"cannot create database {database.name!r} on {server.describe()}: {message}"
            ) from None


class _TocReader:
    """Tells when an archive's table of contents, which pg_dump writes first, has been read whole."""

    def __init__(self, binaries: PgBinaries) -> None:
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - closed in finish()
        self.process = subprocess.Popen(
            [binaries.path("pg_restore"), "--list"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=self._err,
        )

    def feed(self, data: bytes) -> bool:
        """Feed the head of the archive; False once pg_restore has the whole table of contents."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(data)
            self.process.stdin.flush()
        except BrokenPipeError:
            return False
        return self.process.poll() is None

    def finish(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        code = self.process.wait(timeout=300)
        self._err.seek(0)
        errors = self._err.read().decode(errors="replace")
        self._err.close()
        if code != 0:
            raise RestoreError(f"pg_restore --list cannot read the archive: {_first_error(errors)}")


def _archive_roles(archive: Path, binaries: PgBinaries) -> tuple[set[str], str | None]:
    """The roles an archive's schema names (owners, grantees, default privileges), and its main owner."""
    result = subprocess.run(
        [binaries.path("pg_restore"), "--schema-only", "--file=-", str(archive)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RestoreError(f"pg_restore cannot read the archive's schema: {_first_error(result.stderr)}")
    return referenced_roles(result.stdout), main_owner(result.stdout)


def restore_streaming(
    server: PgTarget,
    store: S3Store | None,
    backup: ResolvedBackup,
    manifest: Manifest | None,
    dest: Path,
    *,
    jobs: int,
    binaries: PgBinaries,
    memory_dir: Path | None = staging.MEMORY_DIR,
    globals_sql: bytes | None = None,
    alter_existing_roles: bool = True,
    database: NewDatabase = SCRATCH,
    say: Callable[[str], None] = log.info,
) -> RestoreResult:
    """Restore a custom-format backup while it downloads, over ``jobs`` sessions.

    The archive's head (its table of contents) creates the tables. The object then streams through
    ``zstd -d`` and ``pg_restore --section=data`` into a script file (the decompressed bytes never
    pass through Python; staged in ``memory_dir`` when it fits, see :mod:`stellar_ops.staging`),
    which :mod:`stellar_ops.parallel_load` loads as it grows over ``jobs`` sessions (a table in
    the transaction that empties it: no WAL on the scratch server's ``wal_level=minimal``; the
    tables after a big one beside it; a big one shared out in pieces once a session falls idle
    with nothing else to load). Each table's indexes and constraints are built as soon as it is
    loaded, over ``jobs`` sessions of their own (:mod:`stellar_ops.post_data_runner`); entries
    that cannot be placed for sure follow with ``pg_restore -j`` at the end. The stream's size
    and sha256 are checked against the manifest at its end; a mismatch is reported before any
    loading error it may have caused.
    """
    started = time.monotonic()
    source = source_label(store, backup)
    digest = hashlib.sha256()
    size = 0

    def counted() -> Iterator[bytes]:
        nonlocal size
        for chunk in read_chunks(store, backup):
            digest.update(chunk)
            size += len(chunk)
            yield chunk

    compressed = counted()
    read_so_far: list[bytes] = []

    def kept() -> Iterator[bytes]:
        for chunk in compressed:
            read_so_far.append(chunk)
            yield chunk

    head: list[bytes] = []
    failure: Exception | None = None
    runner: PostDataRunner | None = None
    try:
        beside = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="stellar-restore-beside"
        )
        try:
            created = beside.submit(_fresh_database, server, database)  # while the head downloads
            toc = _TocReader(binaries)
            for data in decompress(kept(), "custom", source=source):
                head.append(data)
                if not toc.feed(data):
                    break
            toc.finish()
            toc_path = dest / "toc.dump"  # enough of the archive for pg_restore's schema sections
            toc_path.write_bytes(b"".join(head))
            created.result()
            referenced, owner = _archive_roles(toc_path, binaries)
            roles = _with_roles(
                server, referenced, globals_sql, alter_existing_roles, database=database.name, owner=owner
            )
            target = server.with_dbname(database.name)
            say(
                f"creating the tables of {source} on {target.describe()}, streaming its data over {jobs} sessions"
            )
            # the tables are created while the data starts to stream and the sessions connect;
            # the indexes are planned once the tables exist (one worker: in that order)
            tables = beside.submit(
                _pg_restore, target, toc_path, 1, binaries, sections=("pre-data",), what="pg_restore (tables)"
            )
            runner = PostDataRunner(target, jobs)
            planning = beside.submit(_plan_post_data, runner, target, toc_path, binaries)
            archive = itertools.chain(read_so_far, compressed)  # from the start again, still compressed
            expected = manifest.uncompressed_bytes if manifest else None
            with staging.script_dir(dest, expected, memory_dir) as script_dir:
                stats = _load_data(
                    target, archive, source, jobs, binaries, script_dir, runner.table_loaded, tables.result
                )
        except (RestoreError, VerificationError) as exc:
            failure = exc
        finally:
            beside.shutdown(wait=failure is None, cancel_futures=True)
        # Whatever stopped the load, the object's identity is judged first: a changed object
        # explains a broken frame or a loader's error (say, "out of memory" on a garbled length),
        # not the other way round. So the rest of the download is hashed before anything is reported.
        for _ in compressed:
            pass
        expected_size = manifest.size_bytes if manifest else None
        if expected_size is not None and size != expected_size:
            raise VerificationError(
                f"size mismatch for {source}: manifest says {expected_size} bytes, object has {size}"
            )
        if manifest is not None and digest.hexdigest() != manifest.sha256:
            raise VerificationError(
                f"checksum mismatch for {source}: manifest says sha256 {manifest.sha256}, object has {digest.hexdigest()}"
            )
        if failure is not None:
            raise failure
        assert runner is not None
        loaded = time.monotonic() - started
        spread = ", ".join(
            f"{table} on session{'s' if len(indexes) > 1 else ''} {', '.join(str(i + 1) for i in indexes)}"
            for table, indexes in stats.sessions.items()
        )
        say(f"data loaded in {loaded:.1f}s ({spread}); finishing the indexes and constraints")
        plan = planning.result()
        built = runner.finish()
    except BaseException:
        if runner is not None:
            runner.stop()  # its sessions, and whatever they were building
        raise
    rest = plan.rest(built)
    if rest:
        say(f"{len(rest)} more post-data entries with pg_restore -j {jobs}")
    _pg_restore(target, toc_path, jobs, binaries, sections=("post-data",), what=_POST_DATA, entries=rest)
    return _result(started, roles)


def _load_data(
    target: PgTarget,
    compressed: Iterator[bytes],
    source: str,
    jobs: int,
    binaries: PgBinaries,
    work_dir: Path,
    on_loaded: Callable[[str], None],
    tables_created: Callable[[], object],
) -> parallel_load.LoadStats:
    """Feed the compressed archive to ``zstd -d | pg_restore --section=data``; load the script.

    pg_restore writes the script to a file in ``work_dir``, which the loaders read as it grows,
    once ``tables_created()`` returns (it raises if the tables could not be created). Raises the
    first cause: a broken compressed stream, then pg_restore's own error, then a loading
    session's (or the tables').
    """
    unzstd_program = shutil.which("zstd")
    if unzstd_program is None:
        raise RestoreError("zstd is not installed on this worker: install the zstd package")
    script_path = work_dir / "data.sql"
    script_path.write_bytes(b"")  # opened before pg_restore starts; pg_restore truncates the same file
    with tempfile.TemporaryFile() as unzstd_errors, tempfile.TemporaryFile() as errors:
        unzstd = subprocess.Popen(
            [unzstd_program, "-d", "-c", "-q"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=unzstd_errors,
        )
        assert unzstd.stdin is not None
        assert unzstd.stdout is not None
        _widen_pipe(unzstd.stdout.fileno())
        process = subprocess.Popen(
            [binaries.path("pg_restore"), "--section=data", f"--file={script_path}"],
            stdin=unzstd.stdout,
            stderr=errors,
        )
        unzstd.stdout.close()
        script = parallel_load.ScriptFile(script_path, writing=lambda: process.poll() is None)
        feed_error: list[BaseException] = []
        stopped = threading.Event()

        def stop() -> None:
            stopped.set()
            process.kill()
            unzstd.kill()

        def feed() -> None:
            assert unzstd.stdin is not None
            try:
                _write_all(unzstd.stdin, compressed)
            except BaseException as exc:  # noqa: BLE001 - raised by the caller's thread
                feed_error.append(exc)
                stop()

        feeder = threading.Thread(target=feed, name="stellar-restore-feed", daemon=True)
        feeder.start()
        load_error: RestoreError | None = None
        try:
            stats = parallel_load.load(
                script, target, connections=jobs, stop=stop, on_loaded=on_loaded, ready=tables_created
            )
        except RestoreError as exc:
            load_error = exc
        except BaseException:
            stop()
            raise
        finally:
            feeder.join()
            code = process.wait()
            unzstd_code = unzstd.wait()
            script.close()
            script_path.unlink(missing_ok=True)
        if feed_error:
            raise feed_error[0]
        unzstd_errors.seek(0)
        problem = " ".join(unzstd_errors.read().decode(errors="replace").split())[-300:]
        # zstd also fails when pg_restore stops reading first: then pg_restore has the cause
        reader_gone = "write error" in problem.lower() or "broken pipe" in problem.lower()
        if unzstd_code > 0 and not reader_gone and not stopped.is_set():
            raise VerificationError(f"{source} is not a valid zstd stream: {problem}")
        if code != 0 and not stopped.is_set():
            errors.seek(0)
            raise RestoreError(f"pg_restore failed: {_first_error(errors.read().decode(errors='replace'))}")
        if load_error is not None:
            raise load_error
        return stats


def _plan_post_data(
    runner: PostDataRunner, target: PgTarget, toc_path: Path, binaries: PgBinaries
) -> post_data.Plan:
    """Read the archive's indexes, constraints and triggers, and start building them as tables load."""
    with connect(target) as conn:
        ordinary = frozenset(catalog.ordinary_tables(conn))

    def post_data_section(option: str) -> str:
        result = subprocess.run(
            [binaries.path("pg_restore"), "--section=post-data", option, str(toc_path)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            raise RestoreError(f"pg_restore cannot list the archive's indexes: {_first_error(result.stderr)}")
        return result.stdout

    plan = post_data.plan(
        post_data_section("--list"), post_data_section("--file=-"), ordinary_tables=ordinary
    )
    runner.start(plan)
    return plan


def _widen_pipe(fd: int) -> None:
    """Ask for a 1 MiB pipe buffer (fewer wake-ups per MiB); the default 64 KiB still works."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)


def fetch_custom(
    store: S3Store | None, backup: ResolvedBackup, manifest: Manifest | None, dest: Path
) -> Path:
    """Download a custom-format backup into ``dest``, decompressed, checking size and sha256."""
    source = source_label(store, backup)
    path = dest / "backup.dump"
    with open(path, "wb") as sink:
        result = verify.scan(
            read_chunks(store, backup), "custom", source=source, check_archive=False, decompressed_sink=sink
        )
    try:
        verify.judge(
            result,
            source=source,
            expected_size=manifest.size_bytes if manifest else None,
            expected_sha256=manifest.sha256 if manifest else None,
        )
    except VerificationError:
        path.unlink(missing_ok=True)
        raise
    return path


def restore_downloaded(
    server: PgTarget,
    path: Path,
    *,
    jobs: int,
    binaries: PgBinaries,
    globals_sql: bytes | None = None,
    alter_existing_roles: bool = True,
    database: NewDatabase = SCRATCH,
    say: Callable[[str], None] = log.info,
) -> RestoreResult:
    """Restore a downloaded custom-format archive with ``pg_restore -j jobs`` into a fresh database.

    Section by section, so every trigger is created after all the data is in: in one
    ``pg_restore -j`` run, a trigger on a partitioned table (whose data is its partitions') may be
    created while its partitions still load, and fire on the restored rows.
    """
    started = time.monotonic()
    _fresh_database(server, database)
    referenced, owner = _archive_roles(path, binaries)
    roles = _with_roles(
        server, referenced, globals_sql, alter_existing_roles, database=database.name, owner=owner
    )
    target = server.with_dbname(database.name)
    say(f"pg_restore -j {jobs} into {target.describe()}")
    _pg_restore(target, path, 1, binaries, sections=("pre-data",), what="pg_restore (tables)")
    _pg_restore(target, path, jobs, binaries, sections=("data",), what="pg_restore (data)")
    _pg_restore(target, path, jobs, binaries, sections=("post-data",), what=_POST_DATA)
    return _result(started, roles)


ENGINES = ("streaming", "pg_restore")


def recover(
    server: PgTarget,
    store: S3Store | None,
    backup: ResolvedBackup,
    manifest: Manifest | None,
    work_dir: Path,
    *,
    jobs: int,
    binaries: PgBinaries,
    engine: str = "streaming",
    globals_sql: bytes | None = None,
    alter_existing_roles: bool = True,
    database: NewDatabase = SCRATCH,
    memory_dir: Path | None = staging.MEMORY_DIR,
    say: Callable[[str], None] = log.info,
) -> RestoreResult:
    """Everything from "the backup is in S3" to "the database is usable": the RTO.

    The backup's roles (``globals_sql``) are created first. A custom-format backup restores while
    it downloads (engine ``streaming``, :func:`restore_streaming`), or is downloaded whole and
    restored with ``pg_restore -j`` (engine ``pg_restore``); plain SQL is downloaded and checked
    first, then decompressed into psql.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="stellar-dr-fetch-", dir=work_dir) as work:
        if backup.dump_format == "custom" and engine == "streaming":
            result = restore_streaming(
                server,
                store,
                backup,
                manifest,
                Path(work),
                jobs=jobs,
                binaries=binaries,
                memory_dir=memory_dir,
                globals_sql=globals_sql,
                alter_existing_roles=alter_existing_roles,
                database=database,
                say=say,
            )
        else:
            fetch = fetch_custom if backup.dump_format == "custom" else fetch_plain
            path = fetch(store, backup, manifest, Path(work))
            say(f"downloaded and checked {source_label(store, backup)} in {time.monotonic() - started:.1f}s")
            if backup.dump_format == "custom":
                result = restore_downloaded(
                    server,
                    path,
                    jobs=jobs,
                    binaries=binaries,
                    globals_sql=globals_sql,
                    alter_existing_roles=alter_existing_roles,
                    database=database,
                    say=say,
                )
            else:
                result = restore_plain(
                    server,
                    path,
                    binaries=binaries,
                    globals_sql=globals_sql,
                    alter_existing_roles=alter_existing_roles,
                    database=database,
                    say=say,
                )
    return replace(result, seconds=round(time.monotonic() - started, 3))


def _first_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if "ERROR" in line or "error:" in line:
            context = lines[index : index + 3]
            return " | ".join(context)[:800]
    return " | ".join(lines[-3:])[:800] or "no error output"


# -- observe ----------------------------------------------------------------------------------------


def observe(
    server: PgTarget,
    sanity_queries: list[str],
    *,
    statement_timeout_seconds: int = 300,
    database: str = RESTORED_DB,
) -> dict[str, Any]:
    """What the restored database holds: exact row counts, schema, and each sanity query's outcome."""
    target = server.with_dbname(database)
    with connect(target) as conn:
        tables = catalog.list_tables(conn)
        counts = catalog.count_rows(conn, tables)
        schema = catalog.schema_of(conn)
        sequences = catalog.sequence_values(conn)
        conn.execute(f"SET statement_timeout = '{int(statement_timeout_seconds)}s'")
        sanity = []
        for query in sanity_queries:
            try:
                with conn.transaction():
                    conn.execute("SET TRANSACTION READ ONLY")
                    rows = conn.execute(query).fetchall()
                sanity.append({"query": query, "ok": True, "rows": len(rows), "first": _jsonable(rows[:1])})
            except Exception as exc:  # noqa: BLE001 - the verdict reports it
                sanity.append({"query": query, "ok": False, "error": " ".join(str(exc).split())[:300]})
    return {
        "tables": tables,
        "row_counts": counts,
        "schema": schema,
        "sequence_values": sequences,
        "schema_fingerprint": catalog.fingerprint(schema),
        "sanity": sanity,
    }


def _jsonable(rows: list[Any]) -> list[list[str]]:
    return [[str(value) for value in row] for row in rows]
