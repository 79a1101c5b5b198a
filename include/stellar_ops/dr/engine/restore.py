"""Restore a backup into a scratch server, and observe what came back.

The observation (exact row counts, schema, sanity-query results) is plain data, so the DR test's
verdicts can be reached anywhere, after the scratch server is gone.
"""

from __future__ import annotations

import logging
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from stellar_ops.catalogue import verify
from stellar_ops.catalogue.manifest import Manifest
from stellar_ops.catalogue.source import ResolvedBackup, file_chunks, read_chunks, source_label
from stellar_ops.core.errors import RestoreError, VerificationError
from stellar_ops.dr.engine import staging
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


@dataclass(frozen=True)
class RestoreJob:
    """One restore: a backup (from the bucket, or a local file when ``store`` is None) into a new
    database on ``server``, with ``pg_restore -j jobs`` or psql."""

    backup: ResolvedBackup
    store: S3Store | None
    manifest: Manifest | None  # None: a legacy backup, checked by its archive alone
    server: PgTarget
    binaries: PgBinaries
    jobs: int = 2
    database: NewDatabase = SCRATCH
    globals_sql: bytes | None = None  # the backup's roles (its .globals.sql), created first
    # a drill updates the roles it finds on its scratch server; a recovery leaves the target's alone
    alter_existing_roles: bool = True
    memory_dir: Path | None = staging.MEMORY_DIR  # where the downloaded archive is staged when it fits


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


def restore_plain(job: RestoreJob, path: Path, say: Callable[[str], None] = log.info) -> RestoreResult:
    """Restore a gzip-compressed SQL file into a new database on the job's server."""
    started = time.monotonic()
    _fresh_database(job.server, job.database)
    roles = _with_roles(job.server, _roles_in_plain(path), job.globals_sql, job.alter_existing_roles)
    _psql_restore(job.server.with_dbname(job.database.name), path, job.binaries, say)
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
        listing.write_text("".join(f"{line}\n" for line in entries))
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


def restore_downloaded(job: RestoreJob, path: Path, say: Callable[[str], None] = log.info) -> RestoreResult:
    """Restore a downloaded custom-format archive with ``pg_restore -j`` into a new database.

    Section by section, so every trigger is created after all the data is in: in one
    ``pg_restore -j`` run, a trigger on a partitioned table (whose data is its partitions') may be
    created while its partitions still load, and fire on the restored rows.
    """
    started = time.monotonic()
    server, database, binaries = job.server, job.database, job.binaries
    _fresh_database(server, database)
    referenced, owner = _archive_roles(path, binaries)
    roles = _with_roles(
        server, referenced, job.globals_sql, job.alter_existing_roles, database=database.name, owner=owner
    )
    target = server.with_dbname(database.name)
    say(f"pg_restore -j {job.jobs} into {target.describe()}")
    _pg_restore(target, path, 1, binaries, sections=("pre-data",), what="pg_restore (tables)")
    _pg_restore(target, path, job.jobs, binaries, sections=("data",), what="pg_restore (data)")
    _pg_restore(target, path, job.jobs, binaries, sections=("post-data",), what=_POST_DATA)
    return _result(started, roles)


def recover(job: RestoreJob, work_dir: Path, say: Callable[[str], None] = log.info) -> RestoreResult:
    """Everything from "the backup is in S3" to "the database is usable": the RTO.

    The backup's roles (``job.globals_sql``) are created first. A custom-format backup is
    downloaded and checked against its manifest (decompressed, into ``job.memory_dir`` when it
    surely fits, see :mod:`stellar_ops.dr.engine.staging`), then restored with ``pg_restore -j``;
    plain SQL is downloaded and checked first, then decompressed into psql.
    """
    started = time.monotonic()
    label = source_label(job.store, job.backup)
    with tempfile.TemporaryDirectory(prefix="stellar-dr-fetch-", dir=work_dir) as work:
        if job.backup.dump_format == "custom":
            expected = job.manifest.uncompressed_bytes if job.manifest else None
            with staging.staging_dir(Path(work), expected, job.memory_dir) as staged:
                path = fetch_custom(job.store, job.backup, job.manifest, staged)
                say(f"downloaded and checked {label} in {time.monotonic() - started:.1f}s")
                result = restore_downloaded(job, path, say)
        else:
            path = fetch_plain(job.store, job.backup, job.manifest, Path(work))
            say(f"downloaded and checked {label} in {time.monotonic() - started:.1f}s")
            result = restore_plain(job, path, say)
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
