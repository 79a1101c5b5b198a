"""What an operator asks of the real recovery (``db_restore``, ``stellar-ops restore``), checked once.

The DAG builds a :class:`RestoreRequest` from its trigger params (:meth:`RestoreRequest.from_params`),
the CLI from its options; both hand it to :func:`stellar_ops.dr.recovery.check_target`. It names
the server to restore into (an Airflow connection id, or a URL without its password) but holds no
password: how that name becomes a :class:`~stellar_ops.postgres.target.PgTarget` is the caller's.
How the restore runs (its sessions, where it stages) is configuration (``dr.*``), not part of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stellar_ops.core.errors import ConfigError
from stellar_ops.pitr.recovery import parse_target_time

MAX_IDENTIFIER = 63  # PostgreSQL's limit on a name, in bytes

# each field as the operator gives it: db_restore's trigger param, then stellar-ops restore's option
ASKED_AS = {
    "backup": ("backup", "--backup"),
    "target": ("target_conn_id", "--target"),
    "database": ("target_database", "--database"),
    "replace": ("replace", "--replace"),
    "target_time": ("target_time", "--target-time"),
}


def _named(field: str) -> str:
    param, option = ASKED_AS[field]
    return f"{param} (or {option})"


@dataclass(frozen=True)
class RestoreRequest:
    """Which backup (a logical one, or a moment of the WAL archive), into which server and database,
    and whether to restore over what is there."""

    backup: str  # 'latest', an S3 key, or an absolute local path (unused with target_time)
    target: str  # the server: an Airflow postgres connection id, or a postgresql:// URL without password
    database: str | None = None  # None (or empty): a new database named after the backup
    replace: bool = False  # an existing database (or the backup's source) is renamed aside, never dropped
    # None (or empty): from a logical backup; 'latest' or an ISO-8601 time: point-in-time recovery
    target_time: str | None = None

    def __post_init__(self) -> None:
        if self.target_time is not None and not isinstance(self.target_time, str):
            raise ConfigError(
                f"{_named('target_time')} must be an ISO-8601 time or 'latest', got {self.target_time!r}"
            )
        moment = (self.target_time or "").strip()
        if moment:
            parse_target_time(moment, what=_named("target_time"))  # refused here if it is no time
        object.__setattr__(self, "target_time", moment or None)
        required = [("target", "the postgres server to restore into")]
        if self.target_time is None:
            required.insert(0, ("backup", "'latest', an S3 key, or an absolute local path"))
        for field, what in required:
            value = getattr(self, field)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{_named(field)} is empty: name {what}")
        if self.database is not None and not isinstance(self.database, str):
            raise ConfigError(f"{_named('database')} must be a database name, got {self.database!r}")
        if not self.database:
            object.__setattr__(self, "database", None)  # empty: the default name
        elif len(self.database.encode()) > MAX_IDENTIFIER:
            raise ConfigError(
                f"{_named('database')}: database name {self.database!r} is longer than PostgreSQL's "
                f"{MAX_IDENTIFIER} bytes"
            )
        if not isinstance(self.replace, bool):
            raise ConfigError(f"{_named('replace')} must be true or false, got {self.replace!r}")

    @property
    def point_in_time(self) -> bool:
        """Whether this is a recovery to a moment of the WAL archive (``target_time`` given)."""
        return self.target_time is not None

    def moment(self) -> datetime | None:
        """The target time (UTC); None for ``latest``. Only for a point-in-time request."""
        return parse_target_time(self.target_time, what=_named("target_time"))

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RestoreRequest:
        """From ``db_restore``'s trigger params (``backup``, ``target_conn_id``, ``target_database``,
        ``replace``, ``target_time``)."""
        replace = params.get("replace")
        return cls(
            backup=params.get("backup") or "",  # each is checked in __post_init__
            target=params.get("target_conn_id", ""),
            database=params.get("target_database"),
            replace=False if replace is None else replace,
            target_time=params.get("target_time"),
        )
