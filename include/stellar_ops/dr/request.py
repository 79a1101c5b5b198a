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
from typing import Any

from stellar_ops.core.errors import ConfigError

MAX_IDENTIFIER = 63  # PostgreSQL's limit on a name, in bytes

# each field as the operator gives it: db_restore's trigger param, then stellar-ops restore's option
ASKED_AS = {
    "backup": ("backup", "--backup"),
    "target": ("target_conn_id", "--target"),
    "database": ("target_database", "--database"),
    "replace": ("replace", "--replace"),
}


def _named(field: str) -> str:
    param, option = ASKED_AS[field]
    return f"{param} (or {option})"


@dataclass(frozen=True)
class RestoreRequest:
    """Which backup, into which server and database, and whether to restore over what is there."""

    backup: str  # 'latest', an S3 key, or an absolute local path
    target: str  # the server: an Airflow postgres connection id, or a postgresql:// URL without password
    database: str | None = None  # None (or empty): a new database named after the backup
    replace: bool = False  # an existing database (or the backup's source) is renamed aside, never dropped

    def __post_init__(self) -> None:
        for field, what in (
            ("backup", "'latest', an S3 key, or an absolute local path"),
            ("target", "the postgres server to restore into"),
        ):
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

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RestoreRequest:
        """From ``db_restore``'s trigger params (``backup``, ``target_conn_id``, ``target_database``, ``replace``)."""
        replace = params.get("replace")
        return cls(
            backup=params.get("backup", ""),  # each is checked in __post_init__
            target=params.get("target_conn_id", ""),
            database=params.get("target_database"),
            replace=False if replace is None else replace,
        )
