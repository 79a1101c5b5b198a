"""The ``pitr`` section: what point-in-time recovery needs of the database server, WAL archiving.

Whatever archives the WAL (barman-cloud, pgBackRest, WAL-G, a plain ``cp``), the server's own
``pg_stat_archiver`` tells whether it works; the morning health check reads it over the ordinary
connection (``health``'s ``wal_archive`` check). :func:`barman_archive_command` writes the
``archive_command`` the local stack runs and docs/deployment.md describes.
"""

from __future__ import annotations

import shlex

from pydantic import Field

from stellar_ops.core.config import Section


class PitrConfig(Section):
    required: bool = Field(
        False,
        description="Whether WAL must be archived: true makes archive_mode off a P2 (no point-in-time "
        "recovery); false reports it and stays green.",
    )
    max_archive_lag_seconds: float = Field(
        300.0,
        gt=0,
        description="A complete WAL segment waiting to be archived with no success for longer than this "
        "is P2 WalArchiveLagging (an idle server with nothing to archive is not lagging).",
    )
    prefix: str = Field(
        "pitr",
        min_length=1,
        description="Key prefix of the WAL archive and the base backups in backup.bucket (barman-cloud's "
        "destination s3://<bucket>/<prefix>).",
    )
    server_name: str = Field(
        "stellar",
        min_length=1,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="barman-cloud's server name: WAL under <prefix>/<server_name>/wals/, base backups "
        "under <prefix>/<server_name>/base/.",
    )
    tools_dir: str | None = Field(
        None,
        description="Directory of the barman-cloud-* programs (barman-cloud-wal-restore for recovery); "
        "null finds them on PATH.",
    )
    base_backup_keep_days: int = Field(
        14,
        ge=1,
        description="Base backups older than this may be deleted (with the WAL only they needed); the "
        "window of point-in-time recovery reaches back about this far.",
    )
    base_backup_min_count: int = Field(
        2,
        ge=1,
        description="The newest N complete base backups are always kept, whatever their age (never fewer "
        "than one: the only base backup is never deleted).",
    )
    base_backup_compression_level: int = Field(3, ge=1, le=19, description="zstd level of base backups.")
    base_backup_timeout_seconds: float = Field(
        6 * 3600.0,
        gt=0,
        description="A base backup still running after this long is stopped and fails (pg_basebackup "
        "waits for its last WAL segment to be archived: a broken archive would hold it forever).",
    )
    unfinished_base_backup_hours: float = Field(
        24.0,
        gt=0,
        description="A base backup without its backup.json (an upload that failed) older than this is "
        "deleted by retention.",
    )
    recovery_timeout_seconds: float = Field(
        6 * 3600.0,
        gt=0,
        description="A point-in-time recovery (db_restore with target_time, stellar-ops restore "
        "--target-time) still replaying WAL after this long is stopped and fails.",
    )


def barman_archive_command(
    program: str,
    destination: str,
    server_name: str,
    *,
    endpoint_url: str | None = None,
    compression: str | None = "zstd",
    encryption: str | None = "AES256",
) -> str:
    """The shell command line of an ``archive_command`` running ``barman-cloud-wal-archive``.

    ``destination`` is ``s3://bucket/prefix``; barman puts each segment under
    ``<prefix>/<server_name>/wals/``. The command names no credential: barman's boto3 reads them
    from the postmaster's environment (``AWS_ACCESS_KEY_ID``...) or its shared credentials file,
    so no secret sits in postgresql.conf or in an argv that ``ps`` shows.
    """
    argv = [program]
    if endpoint_url:
        argv += ["--endpoint-url", endpoint_url]
    if compression:
        argv.append(f"--{compression}")
    if encryption:
        argv += ["-e", encryption]
    argv += [destination, server_name, "%p"]
    # %p is PostgreSQL's placeholder, replaced before the shell sees the line: left unquoted
    return " ".join(part if part == "%p" else shlex.quote(part) for part in argv)


def conf_string(value: str) -> str:
    """``value`` as a quoted string of postgresql.conf (a single quote doubled)."""
    return "'" + value.replace("'", "''") + "'"
