"""PostgreSQL targets and connections.

Passwords reach client programs only through ``PGPASSWORD`` in the child's environment, never
through argv, and ``PgTarget``'s repr hides them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from stellar_ops.core.errors import ConfigError, PrerequisiteError


@dataclass(frozen=True)
class PgTarget:
    """Where a database is and how to log in to it."""

    host: str
    port: int
    user: str
    dbname: str
    password: str | None = field(default=None, repr=False)
    sslmode: str | None = None
    passfile: str | None = None  # a libpq password file, when the password is not given

    @classmethod
    def from_url(cls, url: str, *, source: str = "DATABASE_URL") -> PgTarget:
        parts = urlsplit(url)
        if parts.scheme.split("+")[0] not in ("postgres", "postgresql"):
            raise ConfigError(f"{source} must be a postgresql:// URL, got scheme {parts.scheme!r}")
        dbname = unquote(parts.path.lstrip("/"))
        if not parts.hostname or not dbname or not parts.username:
            raise ConfigError(f"{source} must name a host, a user and a database (postgresql://user@host/db)")
        try:
            port = 5432 if parts.port is None else parts.port
        except ValueError:
            raise ConfigError(f"{source} has an invalid port") from None
        if not 0 < port < 65536:
            raise ConfigError(f"{source} has an invalid port: {port}")
        query = parse_qs(parts.query)
        return cls(
            host=parts.hostname,
            port=port,
            user=unquote(parts.username),
            dbname=dbname,
            password=unquote(parts.password) if parts.password is not None else None,
            sslmode=query.get("sslmode", [None])[0],
        )

    def with_dbname(self, dbname: str) -> PgTarget:
        return PgTarget(self.host, self.port, self.user, dbname, self.password, self.sslmode, self.passfile)

    def describe(self) -> str:
        """Where, without the secret: safe for logs and error messages."""
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"

    def client_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for libpq programs: the password travels here, not in argv."""
        env = dict(os.environ if base is None else base)
        for name in ("PGPASSWORD", "PGSERVICE", "PGPASSFILE", "PGDATABASE", "PGOPTIONS"):
            env.pop(name, None)
        env.update({"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user})
        env["PGDATABASE"] = self.dbname
        env["PGCONNECT_TIMEOUT"] = env.get("PGCONNECT_TIMEOUT", "10")
        env["PGAPPNAME"] = "stellar-ops"
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        elif self.passfile:
            env["PGPASSFILE"] = self.passfile
        if self.sslmode:
            env["PGSSLMODE"] = self.sslmode
        return env

    def connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.dbname,
            "connect_timeout": 10,
            "application_name": "stellar-ops",
        }
        if self.password is not None:
            kwargs["password"] = self.password
        elif self.passfile:
            kwargs["passfile"] = self.passfile
        if self.sslmode:
            kwargs["sslmode"] = self.sslmode
        return kwargs


def _clean_error(exc: Exception, target: PgTarget) -> str:
    text = " ".join(str(exc).split())
    if target.password:
        text = text.replace(target.password, "***")
    return text


@contextmanager
def connect(target: PgTarget, *, autocommit: bool = True) -> Iterator[Any]:
    """A psycopg connection; connection failures become one clear line naming the target."""
    import psycopg

    try:
        conn = psycopg.connect(autocommit=autocommit, **target.connect_kwargs())
    except psycopg.OperationalError as exc:
        raise PrerequisiteError(
            f"cannot connect to PostgreSQL {target.describe()}: {_clean_error(exc, target)}"
        ) from None
    try:
        yield conn
    finally:
        conn.close()


def server_version_num(conn: Any) -> int:
    """``server_version_num``, for example 150018."""
    return int(conn.info.server_version)


def major_of(version_num: int) -> int:
    return version_num // 10000


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, table: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}"
